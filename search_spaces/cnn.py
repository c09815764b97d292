"""A VGG-style CNN: depth, filters, kernel, batch norm, dropout, head width and optimizer."""

import keras
from keras import layers

from search_spaces.labels import number, scientific

DESCRIPTION = "1-4 conv blocks, 16-256 filters, k3/k5, BN, dropout, dense head, 4 optimizers"
FIT_DEFAULTS: dict = {}
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
# Keras' default 0.99 leaves the moving variance at 1.0 * 0.99**steps + the true one, and
# conv outputs here have a variance near 0.01: after one MNIST epoch (391 steps at batch 128)
# inference would still divide by about 3x too large a spread, and validation accuracy with it.
BN_MOMENTUM = 0.9
MAX_BLOCKS = 4
MIN_FILTERS, MAX_FILTERS = 16, 256
DENSE_UNITS = [0, 64, 128, 256, 512]  # 0: no hidden dense layer
DEFAULT_DENSE_UNITS = 128
OPTIMIZERS = ["adam", "adamw", "sgd", "rmsprop"]
MIN_LR, MAX_LR = 1e-4, 3e-2
DEFAULT_LR = 1e-3  # Adam's usual rate; the log-scale range's minimum would be a poor default
SGD_MOMENTUM = 0.9
MAX_DROPOUT = 0.5
DROPOUT_STEP = 0.05


def build(hp) -> keras.Model:
    """A compiled CNN drawn from the space; conditional names carry the block index."""
    blocks = hp.Int("conv_blocks", 1, MAX_BLOCKS)
    kernel = hp.Choice("kernel_size", [3, 5])
    batch_norm = hp.Boolean("batch_norm")
    conv_dropout = hp.Float("conv_dropout", 0.0, MAX_DROPOUT, step=DROPOUT_STEP)
    x = inputs = keras.Input(INPUT_SHAPE)
    for i in range(blocks):
        # Conditional, so that oracles and records know filters_2 means nothing for 2 blocks.
        with hp.conditional_scope("conv_blocks", list(range(i + 1, MAX_BLOCKS + 1))):
            filters = hp.Int(f"filters_{i}", MIN_FILTERS, MAX_FILTERS, sampling="log")
        x = layers.Conv2D(filters, kernel, padding="same", use_bias=not batch_norm)(x)
        if batch_norm:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.Activation("relu")(x)
        # 28 -> 14 -> 7 -> 3 -> 1: every block can halve the map once.
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(conv_dropout)(x)
    x = layers.Flatten()(x)
    units = hp.Choice("dense_units", DENSE_UNITS, default=DEFAULT_DENSE_UNITS)
    if units:
        with hp.conditional_scope("dense_units", [u for u in DENSE_UNITS if u]):
            dense_dropout = hp.Float("dense_dropout", 0.0, MAX_DROPOUT, step=DROPOUT_STEP)
        x = layers.Dense(units, activation="relu")(x)
        x = layers.Dropout(dense_dropout)(x)
    # float32 softmax: under --mixed-precision the loss still sees full-precision probabilities.
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")(x)
    model = keras.Model(inputs, outputs, name="cnn")
    model.compile(
        optimizer=_optimizer(
            hp.Choice("optimizer", OPTIMIZERS),
            hp.Float("learning_rate", MIN_LR, MAX_LR, sampling="log", default=DEFAULT_LR),
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def describe(hp: dict) -> str:
    """A short label, e.g. "2x[32,64] k3 bn drop0.25 dense128 drop0.5 adam lr1e-3"; filters of
    blocks beyond conv_blocks are left out (sampled, never built)."""
    blocks = int(hp.get("conv_blocks", 1))
    filters = ",".join(str(hp.get(f"filters_{i}", "?")) for i in range(blocks))
    tokens = [f"{blocks}x[{filters}]", f"k{hp.get('kernel_size', 3)}"]
    if hp.get("batch_norm"):
        tokens.append("bn")
    tokens.append(f"drop{number(hp.get('conv_dropout', 0.0))}")
    units = hp.get("dense_units", DEFAULT_DENSE_UNITS)
    if units:
        tokens += [f"dense{units}", f"drop{number(hp.get('dense_dropout', 0.0))}"]
    rate = scientific(hp.get("learning_rate", DEFAULT_LR))
    tokens += [hp.get("optimizer", OPTIMIZERS[0]), f"lr{rate}"]
    return " ".join(tokens)


def _optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=SGD_MOMENTUM, nesterov=True)
    return keras.optimizers.RMSprop(learning_rate)
