"""Serving formats of an exported model: a TensorFlow SavedModel with a float and a uint8
signature, and TensorFlow Lite files in float32 and with dynamic-range int8 weights; each is
read back with its own runtime and evaluated on the test set."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import keras
import numpy as np

from bench.core import data, environment, metrics
from bench.errors import FormatError
from bench.train import served

SAVED_MODEL_DIR = "saved_model"
FLOAT_SIGNATURE = "serving_default"  # float32 images (n, 28, 28, 1) in [0, 1]
UINT8_SIGNATURE = "serving_uint8"  # uint8 pixels (n, 28, 28, 1), 0-255 as in the IDX files
OUTPUT_NAME = "probabilities"  # (n, 10) class probabilities, both signatures
TFLITE_FILES = {"tflite_float32": "model_float32.tflite", "tflite_int8": "model_int8.tflite"}
# A format may lose at most this much test accuracy against model.keras (0.1 points): 10 of
# MNIST's 10,000 test digits.
MAX_ACCURACY_DROP = 0.001
MNIST_TEST_IMAGES = 10_000
# ...and never fewer digits than that, whatever the test set. A few hundred test images cannot
# measure a tenth of a point (one digit of 500 is 0.2 points; the rate would allow none), while
# int8 weights flip a digit or two near a tie by chance on any test set, and a conversion that
# is broken loses far more than 10 digits on all of them.
MIN_ALLOWED_DIGITS = round(MAX_ACCURACY_DROP * MNIST_TEST_IMAGES)
ROUNDING = 1e-9  # 10 digits of 10,000 are 10, not a float's hair more
EVAL_BATCH = 1000
TFLITE_THREADS = 2


def write_saved_model(model: keras.Model, folder: Path) -> None:
    """The served model as a SavedModel at folder, with FLOAT_SIGNATURE and UINT8_SIGNATURE."""
    import tensorflow as tf

    shape = [None, *data.IMAGE_SHAPE]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        FLOAT_SIGNATURE,
        lambda images: {OUTPUT_NAME: model(images)},
        input_signature=[tf.TensorSpec(shape, tf.float32, name="images")],
    )
    archive.add_endpoint(
        UINT8_SIGNATURE,
        lambda pixels: {OUTPUT_NAME: model(tf.cast(pixels, tf.float32) / data.PIXEL_MAX)},
        input_signature=[tf.TensorSpec(shape, tf.uint8, name="pixels")],
    )
    archive.write_out(str(folder), verbose=False)


def write_tflite(saved_model: Path, path: Path, int8: bool) -> None:
    """The SavedModel's float signature as a TFLite file; int8: weights quantized to 8 bits
    (dynamic range: activations stay float, no calibration data needed)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model), signature_keys=[FLOAT_SIGNATURE]
    )
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with _quiet():
        path.write_bytes(converter.convert())


@contextlib.contextmanager
def _quiet():
    """The converter prints its progress on stdout and stderr; an export has its own lines."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def saved_model_predicts(folder: Path):
    """Two predict(float32 images in [0, 1]) -> probabilities, through one tf.saved_model.load:
    by the float signature, and by the uint8 one (given the pixels 0-255)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(folder))
    floats = loaded.signatures[FLOAT_SIGNATURE]
    pixels = loaded.signatures[UINT8_SIGNATURE]

    def by_floats(x: np.ndarray) -> np.ndarray:
        return floats(images=tf.constant(x))[OUTPUT_NAME].numpy()

    def by_pixels(x: np.ndarray) -> np.ndarray:
        uint8 = np.rint(x * data.PIXEL_MAX).astype(np.uint8)
        return pixels(pixels=tf.constant(uint8))[OUTPUT_NAME].numpy()

    return by_floats, by_pixels


def tflite_predict(path: Path, threads: int = TFLITE_THREADS):
    """predict(float32 images) -> probabilities through LiteRT's interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    # LiteRT announces its CPU delegate on file descriptor 2.
    with environment.native_stderr_silenced():
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]
    shape = {"n": None}

    def predict(x: np.ndarray) -> np.ndarray:
        if shape["n"] != len(x):
            interpreter.resize_tensor_input(source, list(x.shape))
            interpreter.allocate_tensors()
            shape["n"] = len(x)
        interpreter.set_tensor(source, np.ascontiguousarray(x, dtype=np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(target).copy()

    return predict


def evaluate(predict, images: np.ndarray, labels: np.ndarray) -> dict:
    """Test accuracy and loss of predict over images (float32, n x 28 x 28 x 1)."""
    probs = np.concatenate(
        [predict(images[i : i + EVAL_BATCH]) for i in range(0, len(images), EVAL_BATCH)]
    )
    accuracy, loss = metrics.test_metrics(probs, labels)
    return {"test_accuracy": accuracy, "test_loss": loss}


def write_formats(model: keras.Model, out: Path, images, labels, reference: float) -> dict:
    """Every serving format of the served model into out, each evaluated on the test images
    and timed; {format: {file, bytes, test_accuracy, test_loss, latency_ms, ...}}. Raises
    FormatError when a format gets more test digits wrong than model.keras (whose accuracy
    is `reference`) by more than allowed_digits(len(labels))."""
    saved = out / SAVED_MODEL_DIR
    write_saved_model(model, saved)
    by_floats, by_pixels = saved_model_predicts(saved)
    formats = {
        "saved_model": _measured(by_floats, images, labels, 0),
        "saved_model_uint8": _measured(by_pixels, images, labels, 0),
    }
    formats["saved_model"].update(file=SAVED_MODEL_DIR, bytes=_folder_bytes(saved))
    formats["saved_model_uint8"].update(file=f"{SAVED_MODEL_DIR} ({UINT8_SIGNATURE})")
    for name, file in TFLITE_FILES.items():
        write_tflite(saved, out / file, int8=name.endswith("int8"))
        formats[name] = _measured(tflite_predict(out / file), images, labels, TFLITE_THREADS)
        formats[name].update(file=file, bytes=(out / file).stat().st_size)
    check_accuracy(formats, reference, len(labels))
    return formats


def _measured(predict, images, labels, threads: int) -> dict:
    cost = served.timed(predict, threads or served.threads_used())
    return {**evaluate(predict, images, labels), **cost}


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def allowed_digits(images: int) -> int:
    """How many more of `images` test digits a format may get wrong than model.keras:
    MAX_ACCURACY_DROP of them, but never fewer than MIN_ALLOWED_DIGITS."""
    return max(int(MAX_ACCURACY_DROP * images + ROUNDING), MIN_ALLOWED_DIGITS)


def check_accuracy(formats: dict, reference: float, images: int) -> None:
    """FormatError for the first format whose test accuracy (on `images` digits) is more
    than allowed_digits(images) digits below `reference`, model.keras's."""
    allowed = allowed_digits(images)
    for name, measured in formats.items():
        drop = reference - measured["test_accuracy"]
        lost = round(drop * images)  # both accuracies are counts of the same digits over images
        if lost > allowed:
            raise FormatError(
                f"{name} loses {100 * drop:.2f} points of test accuracy against model.keras "
                f"({measured['test_accuracy']:.4f} vs {reference:.4f}): {lost:,} more of the "
                f"{images:,} test digits wrong, where at most {allowed:,} may be; nothing shipped"
            )
