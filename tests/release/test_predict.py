"""bench predict: image files prepared as MNIST's digits were, then classified."""

import json
import warnings

import keras
import numpy as np
import pytest
from PIL import Image, ImageFile

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


def mnist_page(digit: np.ndarray, scale=5, margin=30) -> np.ndarray:
    """A 28x28 MNIST digit enlarged on a wide margin, light ink on dark, as levels in [0, 1]."""
    return np.pad(np.kron(digit.astype(np.float64) / 255.0, np.ones((scale, scale))), margin)


def prepared(path) -> np.ndarray:
    return predict.as_mnist(predict.read_grey(path), path)


def test_a_16_bit_picture_reads_as_its_8_bit_version(tmp_path, digits):
    page = 1.0 - mnist_page(digits[0][0])  # dark ink on white paper
    Image.fromarray((page * 255).round().astype(np.uint8)).save(tmp_path / "eight.png")
    Image.fromarray((page * 65535).round().astype(np.uint16)).save(tmp_path / "sixteen.png")
    assert Image.open(tmp_path / "sixteen.png").mode == "I;16"
    np.testing.assert_array_equal(
        prepared(tmp_path / "sixteen.png"), prepared(tmp_path / "eight.png")
    )


def _in_mode(levels: np.ndarray, mode: str) -> Image.Image:
    """levels in [0, 1] as an image of the given mode, each at its own scale."""
    if mode.startswith("I;16"):
        sixteen = (levels * 65535).round().astype(">u2" if mode == "I;16B" else np.uint16)
        return Image.frombytes(mode, levels.shape[::-1], sixteen.tobytes())
    if mode == "I16 as I":  # 16-bit data in a 32-bit image, as some files hold it
        return Image.fromarray((levels * 65535).round().astype(np.int32))
    if mode == "F":
        return Image.fromarray(levels.astype(np.float32))
    if mode == "F 0-255":
        return Image.fromarray((levels * 255).astype(np.float32))
    eight = Image.fromarray((levels * 255).round().astype(np.uint8))
    if mode == "1":
        return eight.convert("1", dither=Image.Dither.NONE)
    return eight.convert(mode)


MODES = ["1", "P", "RGB", "CMYK", "YCbCr", "LAB", "I", "I16 as I", "I;16", "I;16B", "F", "F 0-255"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dark_ink", [True, False])
def test_every_mode_is_read_as_its_grey_picture_the_right_way_round(
    tmp_path, digits, mode, dark_ink
):
    page = mnist_page(digits[0][0])
    page = 1.0 - page if dark_ink else page
    path = tmp_path / "digit.tiff"  # TIFF holds every one of these modes
    _in_mode(page, mode).save(path)
    expected = predict.as_mnist(page.astype(np.float32), "grey")
    got = prepared(path)
    if mode == "1":  # two levels only: the same digit, less its grey edges
        assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.9
    else:
        assert np.abs(got.astype(int) - expected).max() <= 2, mode


def _with_alpha(ink: np.ndarray, colour: int, mode: str) -> Image.Image:
    """ink (levels in [0, 1]) drawn in one colour on a transparent canvas whose hidden colour
    is the ink's own (what drawing programs leave: (0, 0, 0, 0) under black ink)."""
    alpha = (ink * 255).round().astype(np.uint8)
    if mode == "P":  # a palette with one transparent entry, as GIF and small PNGs have it
        image = Image.fromarray(np.where(alpha > 127, 1, 0).astype(np.uint8), "P")
        image.putpalette([colour] * 3 + [255 - colour] * 3)
        image.info["transparency"] = 0
        return image
    if mode == "PA":  # (Pillow's own LA to PA conversion loses the alpha)
        image = Image.frombytes("PA", alpha.shape[::-1], np.dstack([0 * alpha, alpha]).tobytes())
        image.putpalette([colour] * 3)
        return image
    band = np.full_like(alpha, colour)
    return Image.fromarray(np.dstack([band, alpha]), "LA").convert(mode)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "P"])
@pytest.mark.parametrize("colour", [0, 255])
def test_ink_on_a_transparent_canvas_is_read_whatever_its_colour(tmp_path, digits, mode, colour):
    ink = mnist_page(digits[0][0])
    path = tmp_path / ("digit.png" if mode != "PA" else "digit.tiff")
    _with_alpha(ink, colour, mode).save(path)
    got, expected = prepared(path), predict.as_mnist(ink.astype(np.float32), "grey")
    if mode == "P":  # two levels only: the same digit, less its grey edges
        assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.9
    else:
        assert np.abs(got.astype(int) - expected).max() <= 2


def test_a_page_with_a_transparent_margin_keeps_the_page_as_ground(tmp_path, digits):
    page = 1.0 - mnist_page(digits[0][0], margin=4)  # dark ink on white paper, most of it
    alpha = np.pad(np.ones_like(page), 20)
    grey = np.pad(page, 20)  # what lies under the transparent margin: black
    levels = np.dstack([grey, alpha]) * 255
    Image.fromarray(levels.round().astype(np.uint8), "LA").save(tmp_path / "page.png")
    expected = predict.as_mnist(page.astype(np.float32), "grey")
    assert np.abs(prepared(tmp_path / "page.png").astype(int) - expected).max() <= 2


@pytest.fixture
def no_model(tmp_path):
    """A folder that looks exported: bench predict reads every image before a model loads."""
    folder = tmp_path / "best"
    folder.mkdir()
    (folder / records.MODEL_FILE).write_bytes(b"")
    (folder / "config.json").write_text(json.dumps({"dataset": {"name": "mnist"}}))
    return folder


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(
    tmp_path, monkeypatch, capsys, no_model
):
    Image.new("L", (60, 50)).save(tmp_path / "huge.png")
    monkeypatch.setattr(predict, "MAX_PIXELS", 2500)

    def decoded(*args):
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decoded)
    with pytest.raises(
        DataError, match=r"huge.png: 60x50 is 3,000 pixels, over the limit of 2,500"
    ):
        predict.read_grey(tmp_path / "huge.png")
    assert cli.main(["predict", str(no_model), str(tmp_path / "huge.png")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "huge.png" in line and "2,500 pixels" in line


def test_pillows_decompression_bomb_warning_is_never_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow warns past it, refuses past 2x
    for side in (40, 50):
        Image.new("L", (side, side), 255).save(tmp_path / f"{side}.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for side in (40, 50):  # within predict's own limit: read
            assert predict.read_grey(tmp_path / f"{side}.png").shape == (side, side)
        monkeypatch.setattr(predict, "MAX_PIXELS", 2000)
        with pytest.raises(DataError, match="50.png: 50x50"):
            predict.read_grey(tmp_path / "50.png")
    assert not caught and not capsys.readouterr().err
    assert Image.MAX_IMAGE_PIXELS == 1000  # Pillow's own limit as it was


def test_a_multi_frame_image_says_which_frame_was_read(tmp_path, capsys, digits, shipped):
    folder, model = shipped
    images, labels = digits
    sure = model.predict(data.with_channel(images).astype(np.float32) / 255.0, verbose=0)
    surest = sorted(range(20), key=lambda i: -sure[i, labels[i]])
    first = surest[0]
    others = [i for i in surest if labels[i] != labels[first]][:2]
    frames = [Image.fromarray(images[i]).resize((112, 112)) for i in (first, *others)]
    frames[0].save(tmp_path / "drawn.gif", save_all=True, append_images=frames[1:])
    still = str(photo(images[first], tmp_path / "still.png"))
    assert cli.main(["predict", str(folder), str(tmp_path / "drawn.gif"), still]) == 0
    animated, single = capsys.readouterr().out.strip().splitlines()
    assert animated.startswith(f"{tmp_path / 'drawn.gif'}: {labels[first]} (")
    assert animated.endswith("; frame 1 of 3 read") and single.endswith(")")
    assert predict.read_notes(tmp_path / "drawn.gif") == ["frame 1 of 3 read"]
    assert predict.read_notes(tmp_path / "still.png") == []  # what --json gives as notes


def test_a_multi_frame_image_cut_short_after_its_first_frame_is_still_read(tmp_path):
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (60, 60)).astype(np.uint8)) for _ in range(3)]
    frames[0].save(tmp_path / "whole.gif", save_all=True, append_images=frames[1:])
    whole = (tmp_path / "whole.gif").read_bytes()
    (tmp_path / "cut.gif").write_bytes(whole[: int(len(whole) * 0.7)])  # in its second frame
    np.testing.assert_array_equal(
        predict.read_grey(tmp_path / "cut.gif"), predict.read_grey(tmp_path / "whole.gif")
    )
    assert predict.read_notes(tmp_path / "cut.gif") == [
        "frame 1 read; the frames after it cannot be read"
    ]
