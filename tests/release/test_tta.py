"""Test-time augmentation: the probabilities of shifted copies averaged, in a model that loads
without this package."""

import keras
import numpy as np
import pytest

from bench.release import tta
from tests.release.test_ensemble import load_without_the_package


def _shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Each image moved by (-dy, -dx) pixels, black coming in at the edges."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return padded[:, 1 + dy : 29 + dy, 1 + dx : 29 + dx]


@pytest.mark.parametrize("copies", sorted(tta.OFFSETS))
def test_the_model_averages_its_shifted_copies(copies, tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(3, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    averaged = tta.shifted_average(model, copies)
    want = np.mean(
        [model.predict(_shifted(images, dy, dx), verbose=0) for dy, dx in tta.OFFSETS[copies]], 0
    )
    np.testing.assert_allclose(averaged.predict(images, verbose=0), want, atol=1e-6)
    assert not np.allclose(want, model.predict(images, verbose=0), atol=1e-4)
    if copies == 5:  # once: it loads and answers the same with plain Keras
        path = tmp_path / "tta.keras"
        averaged.save(path)
        np.testing.assert_allclose(
            load_without_the_package(path, images, tmp_path), want, atol=1e-6
        )


def test_other_numbers_of_copies_are_refused():
    with pytest.raises(ValueError, match="copies must be one of"):
        tta.shifted_average(keras.Sequential([keras.Input((28, 28, 1))]), 4)
