"""Serving formats and inference cost: each format read back by its own runtime on a small
cnn_plus model with augmentation, and an export that refuses a format losing accuracy."""

import keras
import numpy as np
import pytest

from bench.core import data
from bench.errors import FormatError
from bench.release import formats
from bench.train import fitting, served
from tests.conftest import TINY_MODEL_FORMAT_DROP

SMALL = {
    "conv_blocks": 1,
    "convs_per_block": 1,
    "filters": 8,
    "dense_units": 32,
    "learning_rate": 0.003,
    "rotation_degrees": 10.0,
    "shift": 0.1,
    "zoom": 0.1,
}
TRAIN, TEST = 4000, 1000


@pytest.fixture(scope="module")
def mnist():
    return data.load(val_size=100, train_limit=TRAIN, test_limit=TEST)


@pytest.fixture(scope="module")
def plain_model(mnist):
    keras.utils.set_random_seed(0)
    model = fitting.build_model("cnn_plus", SMALL)
    model.fit(mnist.x_train, mnist.y_train, epochs=4, batch_size=64, verbose=0)
    plain = served.served_model("cnn_plus", model)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"RandomRotation", "RandomTranslation", "RandomZoom"} <= kinds
    assert not any(type(layer).__name__.startswith("Random") for layer in plain.layers)
    return plain


@pytest.fixture(scope="module")
def written(plain_model, mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("written")
    probs = plain_model.predict(mnist.x_test, verbose=0)
    reference = float(np.mean(probs.argmax(1) == mnist.y_test))
    assert reference > 0.9  # trained enough that a broken conversion would show
    # The 0.1-point rule has a test of its own below: a digit near a tie may flip with int8
    # weights on another CPU.
    # A module fixture is set up before the function-scoped autouse rule of conftest, so it
    # takes the tiny models' rule itself.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(formats, "MAX_ACCURACY_DROP", TINY_MODEL_FORMAT_DROP)
        measured = formats.write_formats(plain_model, out, mnist.x_test, mnist.y_test, reference)
    return out, probs, reference, measured


def test_the_saved_model_serves_floats_and_uint8_pixels(written, mnist):
    import tensorflow as tf

    out, probs, _, measured = written
    loaded = tf.saved_model.load(str(out / formats.SAVED_MODEL_DIR))
    floats = loaded.signatures[formats.FLOAT_SIGNATURE](images=tf.constant(mnist.x_test))
    np.testing.assert_allclose(floats[formats.OUTPUT_NAME].numpy(), probs, atol=1e-5)
    pixels = np.rint(mnist.x_test * 255).astype(np.uint8)
    from_uint8 = loaded.signatures[formats.UINT8_SIGNATURE](pixels=tf.constant(pixels))
    np.testing.assert_allclose(from_uint8[formats.OUTPUT_NAME].numpy(), probs, atol=1e-5)
    assert measured["saved_model"]["bytes"] > 0


def test_tflite_files_run_in_litert_and_agree_with_the_model(written, mnist):
    from ai_edge_litert.interpreter import Interpreter

    out, probs, reference, measured = written
    for name, file in formats.TFLITE_FILES.items():
        interpreter = Interpreter(model_path=str(out / file))
        source = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(source, [TEST, 28, 28, 1])
        interpreter.allocate_tensors()
        interpreter.set_tensor(source, mnist.x_test)
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        agree = np.mean(got.argmax(1) == probs.argmax(1))
        assert agree >= (1.0 if name.endswith("float32") else 0.99), name
        accuracy = float(np.mean(got.argmax(1) == mnist.y_test))
        assert measured[name]["test_accuracy"] == pytest.approx(accuracy)
        assert measured[name]["bytes"] == (out / file).stat().st_size
    int8, float32 = (measured[n]["bytes"] for n in ("tflite_int8", "tflite_float32"))
    assert int8 < float32 / 2  # 8-bit weights against 32-bit ones


def test_every_format_is_timed_on_the_threads_it_used(written):
    for name, figures in written[3].items():
        assert figures["latency_ms"] > 0 and figures["images_per_second"] > 0, name
        assert figures["threads"] >= 1


def _accuracies(images: int, model_wrong: int, more_wrong: int) -> tuple[dict, float]:
    """A format's test accuracy and model.keras's, from their answers on `images` digits: the
    format gets `more_wrong` of the model's right answers wrong, and one of its wrong ones
    right (a digit near a tie going either way)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, images)
    model = labels.copy()
    model[:model_wrong] = (labels[:model_wrong] + 1) % 10
    served = model.copy()
    served[0] = labels[0]
    flipped = slice(model_wrong, model_wrong + more_wrong + 1)
    served[flipped] = (labels[flipped] + 1) % 10
    accuracy = float(np.mean(model == labels))
    return {"tflite_int8": {"test_accuracy": float(np.mean(served == labels))}}, accuracy


@pytest.mark.exact_format_rule
def test_on_a_small_test_set_a_format_may_differ_by_a_few_digits_not_by_many():
    formats.check_accuracy(*_accuracies(500, 20, 1), 500)  # one digit: 0.2 points of 500
    formats.check_accuracy(*_accuracies(500, 20, 10), 500)
    message = "tflite_int8 loses 2.40 points .*: 12 more of the 500 test digits wrong, .* 10 may"
    with pytest.raises(FormatError, match=message):
        formats.check_accuracy(*_accuracies(500, 20, 12), 500)


@pytest.mark.exact_format_rule
def test_on_mnists_10000_test_digits_a_format_may_lose_10_not_11():
    formats.check_accuracy(*_accuracies(10_000, 40, 10), 10_000)  # a tenth of a point
    with pytest.raises(FormatError, match="loses 0.11 points .*: 11 more of the 10,000 test"):
        formats.check_accuracy(*_accuracies(10_000, 40, 11), 10_000)
    assert formats.allowed_digits(60_000) == 60  # past MNIST's size, the same rate


def test_flops_are_counted_from_the_layer_shapes():
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(10)(x)
    model = keras.Model(inputs, outputs)
    conv = 2 * 3 * 3 * 1 * 28 * 28 * 8
    relu, pool, dense = 28 * 28 * 8, 14 * 14 * 8, 2 * 14 * 14 * 8 * 10
    assert served.flops_per_image(model) == conv + relu + pool + dense


def test_the_saved_size_leaves_out_the_optimizer(plain_model, tmp_path):
    trained = keras.Model(plain_model.inputs, plain_model.outputs)
    trained.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    trained.optimizer.build(trained.trainable_variables)
    trained.save(tmp_path / "with_optimizer.keras")
    full = (tmp_path / "with_optimizer.keras").stat().st_size
    assert served.saved_bytes(trained) < full / 2  # Adam keeps two slots per weight
