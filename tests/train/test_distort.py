"""Elastic distortion: exact when off, smooth random warps that keep a digit's ink and shape."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from bench.core.data import IMAGE_SIDE, PIXEL_MAX
from bench.errors import BadInput
from bench.train import pipeline
from bench.train.distort import SIMARD_ALPHA, SIMARD_SIGMA, Elastic

BATCH = 16
# A sigma this small leaves the field's pixels all but independent.
TINY_SIGMA = 0.05
# Large enough that most sample points land off a tiny-sigma image.
FAR_ALPHA = 100.0
# Bounds that hold for every seed tried of 15; a seed's worst case sits near each.
INK_MEAN_TOLERANCE = 0.12  # of the original ink, over a batch
INK_EACH_TOLERANCE = 0.4  # of the original ink, any one image
MIN_LIKENESS = 0.45  # mean pixel correlation of warped "0"s with the "0" they came from
LIKENESS_MARGIN = 0.3  # ... less their mean correlation with a "1"
SMOOTH_NEIGHBOURS = 0.9  # displacement correlation of neighbouring pixels at sigma 4
ROUGH_NEIGHBOURS = 0.2  # ... and with next to no smoothing
OFF_IMAGE_MEAN = 0.1  # of a white image whose samples mostly land off it
MOVED = 0.5  # a pixel changed this much (of full white) shows ink moved
PIPELINE_IMAGES, PIPELINE_BATCH = 32, 8
RING_RADII = (6.0, 9.0)  # pixels: a drawn "0"
BAR_HALF_WIDTH, BAR_ROWS = 2, (5, 22)  # pixels: a drawn "1"


def ring() -> np.ndarray:
    rows, cols = np.mgrid[:IMAGE_SIDE, :IMAGE_SIDE] - (IMAGE_SIDE - 1) / 2
    radius = np.hypot(rows, cols)
    inner, outer = RING_RADII
    return ((radius >= inner) & (radius <= outer)).astype(np.float32)[..., None]


def bar() -> np.ndarray:
    image = np.zeros((IMAGE_SIDE, IMAGE_SIDE, 1), np.float32)
    centre = IMAGE_SIDE // 2
    first, last = BAR_ROWS
    image[first : last + 1, centre - BAR_HALF_WIDTH : centre + BAR_HALF_WIDTH + 1] = 1.0
    return image


def batch_of(image: np.ndarray, count: int = BATCH) -> tf.Tensor:
    return tf.constant(np.repeat(image[None], count, axis=0))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_alpha_zero_leaves_images_exactly_as_they_are():
    images = np.random.default_rng(0).random((4, IMAGE_SIDE, IMAGE_SIDE, 1), np.float32)
    out = Elastic(0.0).apply(tf.constant(images), seed=1).numpy()
    np.testing.assert_array_equal(out, images)


def test_a_distorted_batch_keeps_its_shape_dtype_and_range():
    out = Elastic(SIMARD_ALPHA).apply(batch_of(ring()), seed=2)
    assert out.shape == (BATCH, IMAGE_SIDE, IMAGE_SIDE, 1)
    assert out.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0


def test_a_distorted_digit_moves_but_keeps_its_ink_and_likeness():
    zero = ring()
    out = Elastic(SIMARD_ALPHA, SIMARD_SIGMA).apply(batch_of(zero), seed=3).numpy()
    assert np.abs(out - zero).max(axis=(1, 2, 3)).min() > MOVED  # every copy
    # A warp squeezes and stretches strokes, so the ink varies a little, but on the whole
    # it is moved, neither made nor lost.
    ink = out.sum(axis=(1, 2, 3)) / zero.sum()
    assert abs(ink.mean() - 1) < INK_MEAN_TOLERANCE
    assert (abs(ink - 1) < INK_EACH_TOLERANCE).all(), ink
    likeness = np.array([correlation(image, zero) for image in out])
    unlike = np.array([correlation(image, bar()) for image in out])
    assert (likeness > unlike).all(), (likeness, unlike)
    assert likeness.mean() > MIN_LIKENESS
    assert likeness.mean() - unlike.mean() > LIKENESS_MARGIN


def test_each_image_in_a_batch_gets_its_own_field():
    out = Elastic(SIMARD_ALPHA).apply(batch_of(ring(), 4), seed=4).numpy()
    for first in range(4):
        for second in range(first + 1, 4):
            assert np.abs(out[first] - out[second]).max() > MOVED, (first, second)


def neighbour_correlation(field: np.ndarray) -> float:
    return correlation(field[..., :-1], field[..., 1:])


def test_smoothing_correlates_neighbouring_displacements():
    shape = (4, IMAGE_SIDE, IMAGE_SIDE, 1)
    smooth = Elastic(SIMARD_ALPHA, SIMARD_SIGMA).displacements(shape, seed=5).numpy()
    rough = Elastic(SIMARD_ALPHA, TINY_SIGMA).displacements(shape, seed=5).numpy()
    assert neighbour_correlation(smooth) > SMOOTH_NEIGHBOURS
    assert abs(neighbour_correlation(rough)) < ROUGH_NEIGHBOURS


def test_points_off_the_image_read_black():
    ones = batch_of(np.ones((IMAGE_SIDE, IMAGE_SIDE, 1), np.float32), 2)
    out = Elastic(FAR_ALPHA, TINY_SIGMA).apply(ones, seed=6).numpy()
    # Clamping to the edge instead would leave this image white everywhere.
    assert out.mean() < OFF_IMAGE_MEAN


def test_the_same_seed_gives_the_same_warp():
    elastic = Elastic(SIMARD_ALPHA)
    first, again, other = (elastic.apply(batch_of(ring(), 2), seed=s).numpy() for s in (7, 7, 8))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > MOVED


def digits(count: int = PIPELINE_IMAGES) -> tuple[np.ndarray, np.ndarray]:
    """uint8 copies of one drawn "0", labelled by index so the order can be followed."""
    zero = (ring() * PIXEL_MAX).astype(np.uint8)
    return np.repeat(zero[None], count, axis=0), np.arange(count, dtype=np.int64)


def epoch(dataset) -> tuple[np.ndarray, np.ndarray]:
    batches = [(x.numpy(), y.numpy()) for x, y in dataset]
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


def test_training_set_warps_batches_and_keeps_the_order():
    images, labels = digits()
    elastic = Elastic(SIMARD_ALPHA)
    plain = pipeline.training_set(images, labels, PIPELINE_BATCH, seed=9)
    warped = pipeline.training_set(images, labels, PIPELINE_BATCH, seed=9, distortion=elastic)
    (plain_x, plain_y), (warped_x, warped_y) = epoch(plain), epoch(warped)
    assert warped.element_spec[0].shape.as_list() == [None, IMAGE_SIDE, IMAGE_SIDE, 1]
    assert warped_x.shape == (PIPELINE_IMAGES, IMAGE_SIDE, IMAGE_SIDE, 1)
    np.testing.assert_array_equal(warped_y, plain_y)
    assert warped_x.dtype == np.float32
    assert np.abs(warped_x - plain_x).max(axis=(1, 2, 3)).min() > MOVED  # every image


def test_training_set_draws_fresh_warps_each_epoch_and_repeats_for_a_seed():
    # Every image is the same digit, so only the fields can tell two epochs apart.
    images, labels = digits()
    elastic = Elastic(SIMARD_ALPHA)
    dataset = pipeline.training_set(images, labels, PIPELINE_BATCH, seed=10, distortion=elastic)
    first, second = epoch(dataset)[0], epoch(dataset)[0]
    again = epoch(pipeline.training_set(images, labels, PIPELINE_BATCH, 10, elastic))[0]
    assert np.abs(first - second).max(axis=(1, 2, 3)).min() > MOVED
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize(
    "alpha, sigma, named",
    [
        (-1.0, SIMARD_SIGMA, "alpha"),
        (float("nan"), SIMARD_SIGMA, "alpha"),
        (float("inf"), SIMARD_SIGMA, "alpha"),
        (SIMARD_ALPHA, 0.0, "sigma"),
        (SIMARD_ALPHA, -4.0, "sigma"),
        (SIMARD_ALPHA, float("nan"), "sigma"),
    ],
)
def test_bad_alpha_or_sigma_is_refused_in_one_line(alpha, sigma, named):
    with pytest.raises(ValueError) as refused:
        Elastic(alpha, sigma)
    assert isinstance(refused.value, BadInput)
    message = str(refused.value)
    assert named in message and "\n" not in message
