"""Test-time augmentation: one model that averages a model's class probabilities over shifted
copies of each image, made of plain Keras layers so that it loads without this package."""

from __future__ import annotations

import keras

from bench.core import data

# The copies averaged, as (rows, columns) offsets in pixels: the image itself and its one-pixel
# shifts, 4 (5 copies) or all 8 neighbours (9).
OFFSETS = {
    5: ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)),
    9: tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)),
}
BORDER = 1  # pixels of black padding a shift reads from


def shifted_average(model: keras.Model, copies: int) -> keras.Model:
    """The model (its layers shared, not copied) applied to `copies` shifted copies of every
    image, its class probabilities averaged: a digit a pixel off-centre counts as centred."""
    if copies not in OFFSETS:
        raise ValueError(f"copies must be one of {sorted(OFFSETS)}, not {copies}")
    inputs = keras.Input(data.IMAGE_SHAPE, name="images")
    padded = keras.layers.ZeroPadding2D(BORDER)(inputs)
    outputs = []
    for dy, dx in OFFSETS[copies]:
        crop = ((BORDER + dy, BORDER - dy), (BORDER + dx, BORDER - dx))
        shifted = keras.layers.Cropping2D(crop)(padded)
        # A model loaded from a file may keep its one input and output in lists.
        out = model([shifted] if isinstance(model.input, list) else shifted)
        outputs.append(out[0] if isinstance(out, list) else out)
    averaged = keras.layers.Average(name="average")(outputs)
    return keras.Model(inputs, averaged, name=f"{model.name}_tta{copies}")
