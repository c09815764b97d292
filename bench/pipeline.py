"""The training path: uint8 images held once as tensors, shuffled by index, scaled per batch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from bench.data import PIXEL_MAX


def _scaled(images: tf.Tensor) -> tf.Tensor:
    return tf.cast(images, tf.float32) / PIXEL_MAX


def training_set(
    images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int
) -> tf.data.Dataset:
    """Batches of (scaled images, labels) in a fresh shuffled order every epoch.

    Why not model.fit on float32 arrays: Keras copies the arrays into a new tensor on every
    fit (every trial), in float32, and slices them element by element. Here the uint8 pixels
    are copied into one tensor once (a quarter of the float32 bytes), each epoch shuffles
    only the indices, whole batches are gathered and scaled in one op, and the next batch is
    prepared while the current one trains. The dataset is made once and serves every trial.

    Args:
        images: uint8 (n, 28, 28, 1).
        labels: (n,) integer labels.
        batch_size: images per training step.
        seed: the shuffle seed; the same seed gives every trial the same epoch orders.
    """
    pixels, targets = tf.convert_to_tensor(images), tf.convert_to_tensor(labels)
    count = len(labels)
    order = tf.data.Dataset.range(count).shuffle(count, seed=seed, reshuffle_each_iteration=True)
    batches = order.batch(batch_size).map(
        lambda index: (_scaled(tf.gather(pixels, index)), tf.gather(targets, index)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return batches.prefetch(tf.data.AUTOTUNE)


def evaluation_set(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Batches of (scaled images, labels) in their stored order, for validation and test."""
    pixels, targets = tf.convert_to_tensor(images), tf.convert_to_tensor(labels)
    batches = tf.data.Dataset.from_tensor_slices((pixels, targets)).batch(batch_size)
    return batches.map(lambda x, y: (_scaled(x), y)).prefetch(tf.data.AUTOTUNE)
