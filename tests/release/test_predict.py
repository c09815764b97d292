"""bench predict: image files prepared as MNIST's digits were, then classified."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from bench import cli
from bench.core import data, records
from bench.errors import DataError
from bench.release import predict


def photo(digit: np.ndarray, path, scale=5, margin=30, dark_ink=True, colour=True):
    """A 28x28 MNIST digit as someone's picture of it: larger, with a wide margin, dark ink on
    white paper, in colour."""
    ink = np.kron(digit.astype(np.float32) / 255.0, np.ones((scale, scale)))
    page = np.pad(ink, margin)
    grey = 1.0 - page if dark_ink else page
    image = Image.fromarray((grey * 255).round().astype(np.uint8))
    (image.convert("RGB") if colour else image).save(path)
    return path


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    weights = image.astype(np.float64) / image.sum()
    rows, cols = np.indices(image.shape)
    return float((weights * rows).sum()), float((weights * cols).sum())


@pytest.fixture(scope="module")
def digits():
    raw = data.load_raw()
    return raw.x_test[:20], raw.y_test[:20]


@pytest.mark.parametrize("dark_ink", [True, False])
def test_a_picture_of_a_digit_becomes_the_digit_again(tmp_path, digits, dark_ink):
    images, _ = digits
    for index in (0, 1, 7):
        path = photo(images[index], tmp_path / f"{index}.png", dark_ink=dark_ink)
        prepared = predict.as_mnist(predict.read_grey(path), path)
        assert prepared.shape == (28, 28) and prepared.dtype == np.uint8
        row, col = centre_of_mass(prepared)
        assert abs(row - 13.5) <= 1.0 and abs(col - 13.5) <= 1.0  # centred by its mass
        ink_rows, ink_cols = np.nonzero(prepared > 50)
        assert max(np.ptp(ink_rows), np.ptp(ink_cols)) <= 20  # fitted into 20x20
        # MNIST's own digit again, but for the centring's rounding: at most a pixel off.
        original = images[index].astype(np.float64).ravel()
        agreement = max(
            np.corrcoef(original, np.roll(prepared, (dy, dx), (0, 1)).ravel())[0, 1]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        )
        assert agreement > 0.95, agreement


def test_a_blank_image_and_a_file_that_is_not_an_image_are_named(tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("L", (40, 30), 255).save(blank)
    with pytest.raises(DataError, match="blank.png: no digit found"):
        predict.as_mnist(predict.read_grey(blank), blank)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(DataError, match="notes.png: not an image"):
        predict.read_grey(text)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, digits):
    """A small model trained on MNIST, in the folder layout `bench export` writes."""
    keras.utils.set_random_seed(0)
    raw = data.load_raw()
    x = data.with_channel(raw.x_train[:10000]).astype(np.float32) / 255.0
    layers = [keras.layers.Flatten(), keras.layers.Dense(128, "relu"), keras.layers.Dense(10)]
    model = keras.Sequential([keras.Input((28, 28, 1)), *layers, keras.layers.Softmax()])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, raw.y_train[:10000], epochs=3, batch_size=64, verbose=0)
    folder = tmp_path_factory.mktemp("best")
    model.save(folder / records.MODEL_FILE)
    (folder / "config.json").write_text(json.dumps({"dataset": {"name": "mnist"}}))
    return folder, model


def test_bench_predict_names_each_pictures_digit(tmp_path, capsys, digits, shipped):
    folder, model = shipped
    images, labels = digits
    originals = data.with_channel(images).astype(np.float32) / 255.0
    sure = model.predict(originals, verbose=0)
    right = [i for i in range(20) if sure[i].argmax() == labels[i]]
    chosen = sorted(right, key=lambda i: -sure[i].max())[:3]  # the digits it is surest of
    paths = [str(photo(images[i], tmp_path / f"d{i}.png")) for i in chosen]
    assert cli.main(["predict", str(folder), *paths, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["class"] for r in results] == [str(labels[i]) for i in chosen]
    assert all(len(r["top"]) == 3 and r["top"][0]["probability"] > 0.5 for r in results)
    assert cli.main(["predict", str(folder), paths[0]]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{paths[0]}: {labels[chosen[0]]} ({labels[chosen[0]]} 0.")


def test_bench_predict_refuses_a_bad_file_or_folder_in_one_line(tmp_path, capsys, shipped):
    folder, _ = shipped
    bad = tmp_path / "scan.jpg"
    bad.write_bytes(b"\xff\xd8 cut short")
    assert cli.main(["predict", str(folder), str(bad)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "scan.jpg: not an image" in line
    assert cli.main(["predict", str(tmp_path), str(bad)]) == 2
    assert "not an exported model" in capsys.readouterr().err
