"""A deliberately small space that trains in about a second: for checking the pipeline.

Tests, smoke runs and benchmarks of the machinery (workers, resume, memory) use it so that
a trial's time is start-up and bookkeeping, not arithmetic. It is not meant to win anything.
"""

import keras
from keras import layers

from search_spaces.labels import scientific

DESCRIPTION = "for pipeline checks: 1-2 conv blocks of 4-16 filters, optional 16-unit head"
FIT_DEFAULTS: dict = {}
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
MAX_BLOCKS = 2
MIN_FILTERS, MAX_FILTERS = 4, 16
DENSE_UNITS = [0, 16]
MIN_LR, MAX_LR = 1e-3, 1e-2


def build(hp) -> keras.Model:
    """A compiled small CNN; the learning rate makes every configuration distinct."""
    x = inputs = keras.Input(INPUT_SHAPE)
    for _ in range(hp.Int("conv_blocks", 1, MAX_BLOCKS)):
        x = layers.Conv2D(hp.Int("filters", MIN_FILTERS, MAX_FILTERS, step=4), 3)(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    if units := hp.Choice("dense_units", DENSE_UNITS):
        x = layers.Dense(units, activation="relu")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Float("learning_rate", MIN_LR, MAX_LR, sampling="log")),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def describe(hp: dict) -> str:
    """A short label, e.g. "2x12 dense16 lr3.1e-3"."""
    units = hp.get("dense_units", DENSE_UNITS[0])
    head = f" dense{units}" if units else ""
    rate = scientific(hp.get("learning_rate", MIN_LR))
    return f"{hp.get('conv_blocks', 1)}x{hp.get('filters', MIN_FILTERS)}{head} lr{rate}"
