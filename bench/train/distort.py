"""Elastic distortion of training digits, done in the tf.data pipeline so models stay plain."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import tensorflow as tf

from bench.errors import ConfigError

# Simard, Steinkraus & Platt 2003, "Best practices for convolutional neural networks applied
# to visual document analysis" (ICDAR): the field's smoothing width and scale on 28x28 MNIST.
SIMARD_SIGMA = 4.0  # pixels
SIMARD_ALPHA = 34.0  # pixels
# The Gaussian beyond two widths holds ~5% of its weight; a wider kernel costs more than it adds.
KERNEL_RADIUS_SIGMAS = 2.0
AXES = 2  # one displacement per image axis: dy, dx
# A black border round the image: any point sampled outside it reads the background.
BORDER = 1


@dataclass(frozen=True)
class Elastic:
    """Each image warped by its own smooth random displacement field."""

    alpha: float  # pixels: how far the smoothed field moves the ink; 0 leaves images as they are
    sigma: float = SIMARD_SIGMA  # pixels: the smoothing width; larger, the smoother the warp

    def __post_init__(self):
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ConfigError(f"elastic alpha must be a finite number >= 0, got {self.alpha}")
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ConfigError(f"elastic sigma must be a finite number > 0, got {self.sigma}")

    def displacements(
        self, shape: tf.Tensor | tuple[int, ...], seed: tf.Tensor | int | None = None
    ) -> tf.Tensor:
        """Float32 (2, b, h, w): each pixel's offsets dy then dx, for images of `shape`.

        Args:
            shape: the images' shape (b, h, w, c); only b, h and w are used.
            seed: a stateless seed (an int, or two ints) that fixes the fields; None draws
                fresh ones from TensorFlow's random state (keras.utils.set_random_seed).
        """
        batch, height, width = shape[0], shape[1], shape[2]
        # Drawn as (.., w, h): the noise is independent, so its layout is free, and this
        # one leaves a single transpose between the blur down columns and the one along rows.
        noise = tf.random.stateless_uniform(
            [AXES, batch, width, height], _stateless(seed), minval=-1.0, maxval=1.0
        )
        down_columns = _blurred_lines(noise, _blur_matrix(height, self.sigma))
        along_rows = tf.transpose(down_columns, [0, 1, 3, 2])
        return self.alpha * _blurred_lines(along_rows, _blur_matrix(width, self.sigma))

    def apply(self, images: tf.Tensor, seed: tf.Tensor | int | None = None) -> tf.Tensor:
        """The float32 (b, h, w, c) images in [0, 1], each resampled along its own field.

        Args:
            images: float32 (b, h, w, c), black background.
            seed: as for `displacements`.
        """
        shape = tf.shape(images)
        return _resampled(images, self.displacements(shape, seed))


def _stateless(seed: tf.Tensor | int | None) -> tf.Tensor:
    """The (2,) stateless seed of a draw."""
    if seed is None:
        return tf.random.uniform([2], maxval=tf.int64.max, dtype=tf.int64)
    if isinstance(seed, numbers.Integral):
        # Stateless ops take a pair; a lone number is its first half.
        return tf.constant([int(seed), 0], dtype=tf.int64)
    return seed


def _blur_matrix(side: tf.Tensor | int, sigma: float) -> tf.Tensor:
    """The (side, side) matrix of a 1-D Gaussian blur, kernel normalised, zero padding:
    fields fade near the border, where MNIST digits have no ink anyway."""
    radius = math.ceil(KERNEL_RADIUS_SIGMAS * sigma)
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    # Normalised so that smoothing keeps the field's scale where the kernel lies inside it.
    total = tf.reduce_sum(tf.exp(-0.5 * tf.square(offsets / sigma)))
    pixels = tf.range(side, dtype=tf.float32)
    apart = pixels[None, :] - pixels[:, None]
    weights = tf.exp(-0.5 * tf.square(apart / sigma)) / total
    return tf.where(tf.abs(apart) <= radius, weights, 0.0)


def _blurred_lines(values: tf.Tensor, blur: tf.Tensor) -> tf.Tensor:
    """Each line along the last axis blurred, in one matrix product: TensorFlow's CPU
    depthwise convolution took 30 ms a batch of 128, more than all the rest of the warp."""
    shape = tf.shape(values)
    # The blur matrix is symmetric, so it needs no transpose here.
    return tf.reshape(tf.matmul(tf.reshape(values, [-1, shape[-1]]), blur), shape)


def _resampled(images: tf.Tensor, field: tf.Tensor) -> tf.Tensor:
    """Bilinear samples of each image at (row + dy, col + dx), black outside the image."""
    shape = tf.shape(images)
    rows = tf.range(shape[1], dtype=tf.float32)[:, None] + field[0]
    cols = tf.range(shape[2], dtype=tf.float32)[None, :] + field[1]
    row0, col0 = tf.floor(rows), tf.floor(cols)
    row_frac, col_frac = (rows - row0)[..., None], (cols - col0)[..., None]
    read = _reader(images, tf.cast(row0, tf.int32), tf.cast(col0, tf.int32))
    top = read(0, 0) * (1 - col_frac) + read(0, 1) * col_frac
    bottom = read(1, 0) * (1 - col_frac) + read(1, 1) * col_frac
    # Rounding in the weights can carry a full pixel a hair past 1.
    return tf.clip_by_value(top * (1 - row_frac) + bottom * row_frac, 0.0, 1.0)


def _reader(images: tf.Tensor, row0: tf.Tensor, col0: tf.Tensor):
    """A function (dr, dc) -> the (b, h, w, c) pixels at (row0 + dr, col0 + dc), black off
    the image: a point beyond it is clamped onto the black border, so one gather serves all.

    It gathers single values from the flattened images: faster than gathering pixels' rows of
    channels, or the four corners at once from a stack of shifted copies."""
    padded = tf.pad(images, [[0, 0], [BORDER, BORDER], [BORDER, BORDER], [0, 0]])
    size = tf.shape(padded)
    flat = tf.reshape(padded, [-1])
    image_start = (tf.range(size[0]) * size[1] * size[2])[:, None, None]
    channels = tf.range(size[3])

    def read(dr: int, dc: int) -> tf.Tensor:
        row = tf.clip_by_value(row0 + dr + BORDER, 0, size[1] - 1)
        col = tf.clip_by_value(col0 + dc + BORDER, 0, size[2] - 1)
        pixel = image_start + row * size[2] + col
        return tf.gather(flat, pixel[..., None] * size[3] + channels)

    return read
