"""The training and evaluation datasets: contents, order, and tf.data's autotuning left off."""

from __future__ import annotations

import numpy as np
import pytest

from bench.core.data import PIXEL_MAX
from bench.train import pipeline

IMAGES = 50
BATCH = 8


@pytest.fixture
def arrays():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(IMAGES, 28, 28, 1), dtype=np.uint8)
    labels = np.arange(IMAGES, dtype=np.int64)  # a label per image: it names the image
    return images, labels


def epoch(dataset) -> tuple[np.ndarray, np.ndarray]:
    batches = [(x.numpy(), y.numpy()) for x, y in dataset]
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


def test_training_set_serves_every_image_once_an_epoch_scaled(arrays):
    images, labels = arrays
    dataset = pipeline.training_set(images, labels, BATCH, seed=0)
    x, y = epoch(dataset)
    assert sorted(y) == list(labels)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, images[y].astype(np.float32) / PIXEL_MAX)
    assert max(len(batch) for _, batch in dataset) == BATCH


def test_training_set_reshuffles_each_epoch_and_repeats_for_a_seed(arrays):
    images, labels = arrays
    first, second = (epoch(pipeline.training_set(images, labels, BATCH, seed=5))[1] for _ in "ab")
    dataset = pipeline.training_set(images, labels, BATCH, seed=5)
    orders = [epoch(dataset)[1] for _ in range(2)]
    assert list(first) == list(second)  # the same seed, the same first epoch
    assert list(orders[0]) != list(orders[1])
    assert list(orders[0]) != list(labels)


def test_evaluation_set_keeps_the_stored_order(arrays):
    images, labels = arrays
    x, y = epoch(pipeline.evaluation_set(images, labels, BATCH))
    assert list(y) == list(labels)
    np.testing.assert_allclose(x, images.astype(np.float32) / PIXEL_MAX)


@pytest.mark.parametrize("kind", ["training", "evaluation"])
def test_autotuning_is_off(arrays, kind):
    # Its per-iterator model thread made every epoch's end wait 1-7 s (see pipeline._served).
    images, labels = arrays
    if kind == "training":
        dataset = pipeline.training_set(images, labels, BATCH, seed=0)
    else:
        dataset = pipeline.evaluation_set(images, labels, BATCH)
    assert dataset.options().autotune.enabled is False
