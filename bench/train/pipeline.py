"""The training path: uint8 images held once as tensors, shuffled by index, scaled per batch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from bench.core.data import PIXEL_MAX
from bench.train.distort import Elastic

# Batches made ahead of the one training; gathering and scaling a batch takes microseconds.
PREFETCH_BATCHES = 2
STATELESS_SEED_SIZE = 2  # TensorFlow's stateless random ops take a pair of ints


def _scaled(images: tf.Tensor) -> tf.Tensor:
    return tf.cast(images, tf.float32) / PIXEL_MAX


def _served(batches: tf.data.Dataset) -> tf.data.Dataset:
    """The batches prefetched PREFETCH_BATCHES ahead, with tf.data's autotuning off.

    Autotuning runs a model thread in every iterator, and Keras makes one iterator per epoch.
    Ending an iterator waits for that thread: seconds at the end of every epoch and again when
    fit() returns (`make bench` shows it as the plain fit's slower epochs). The pipeline is too
    simple to need tuning: with fixed sizes its epochs are as fast as tuned ones, without the
    stalls.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.prefetch(PREFETCH_BATCHES).with_options(options)


def training_set(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    distortion: Elastic | None = None,
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
        seed: the shuffle seed; the same seed gives every trial the same epoch orders, and
            with a distortion the same distorted images.
        distortion: warps every scaled batch (bench.train.distort); None serves the images
            as they are.
    """
    pixels, targets = tf.convert_to_tensor(images), tf.convert_to_tensor(labels)
    count = len(labels)
    order = tf.data.Dataset.range(count).shuffle(count, seed=seed, reshuffle_each_iteration=True)
    batches = order.batch(batch_size)
    if distortion is not None:
        # A stateless seed per batch, fresh each epoch: random ops seeded inside a map would
        # draw the same fields again every epoch, as each epoch's iterator restarts them.
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        batches = tf.data.Dataset.zip(batches, draws.batch(STATELESS_SEED_SIZE))

    def batch(index: tf.Tensor, draw: tf.Tensor | None = None):
        scaled = _scaled(tf.gather(pixels, index))
        if distortion is not None:
            scaled = distortion.apply(scaled, seed=draw)
        return scaled, tf.gather(targets, index)

    return _served(batches.map(batch))


def evaluation_set(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Batches of (scaled images, labels) in their stored order, for validation and test."""
    pixels, targets = tf.convert_to_tensor(images), tf.convert_to_tensor(labels)
    batches = tf.data.Dataset.from_tensor_slices((pixels, targets)).batch(batch_size)
    return _served(batches.map(lambda x, y: (_scaled(x), y)))
