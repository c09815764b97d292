"""The baseline to beat: a plain two-conv CNN with no free hyperparameters."""

import keras
from keras import layers

DESCRIPTION = "baseline CNN (conv30x5 - conv15x3 - dense128 - dense50), Adam, fixed"
# The baseline was trained with these; a run on this space uses them unless told otherwise.
FIT_DEFAULTS = {"batch_size": 200, "max_epochs": 10}
LABEL = "seed baseline"
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def build(hp) -> keras.Model:
    """The fixed baseline; hp is accepted for the KerasTuner interface and left unused."""
    del hp
    model = keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            layers.Conv2D(30, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(15, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(50, activation="relu"),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="seed",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def describe(hp: dict) -> str:
    """The baseline has one architecture: its label says what it is for."""
    del hp
    return LABEL
