"""What top single MNIST CNNs use: augmentation, BN, two convs a block, GAP, AdamW, schedules."""

import math

import keras
from keras import layers

from search_spaces.labels import fraction, scientific

DESCRIPTION = (
    "1-3 blocks of 1-2 convs, 8-64 base filters doubling, BN, flatten/GAP, augmentation, "
    "adam/adamw, cosine/plateau LR, label smoothing"
)
# A schedule needs its whole run: at the suite's default patience (3), early stopping cut the
# defaults' trial while the rate was still at its peak, before the cosine schedule annealed.
FIT_DEFAULTS: dict = {"patience": 15}
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
# Keras' default 0.99 leaves the moving variance at 1.0 * 0.99**steps + the true one, and
# conv outputs here have a variance near 0.01: after one MNIST epoch (391 steps at batch 128)
# inference would still divide by about 3x too large a spread, and validation accuracy with it.
BN_MOMENTUM = 0.9
MAX_BLOCKS = 3  # 28 -> 14 -> 7 -> 3
# A third block's 128-filter convs make an epoch about 1.5x as long as two blocks', and its
# 3x3 map shrinks the flatten layer (436,650 weights against 468,394); 3 blocks trained better
# (docs/benchmarks.md: accuracy recipes).
DEFAULT_BLOCKS = 3
MIN_FILTERS, MAX_FILTERS, FILTER_STEP = 8, 64, 8
DEFAULT_FILTERS = 32
KERNEL = 3  # two 3x3 convs see as far as one 5x5, with fewer weights
HEADS = ["flatten", "gap"]
DENSE_UNITS = [0, 64, 128, 256]  # 0: no hidden dense layer
DEFAULT_DENSE_UNITS = 128
MAX_CONV_DROPOUT, MAX_DENSE_DROPOUT, DROPOUT_STEP = 0.4, 0.5, 0.1
DEFAULT_CONV_DROPOUT = 0.2
# Augmentation strengths: rotation in degrees, shift and zoom as fractions of the image.
ROTATIONS = [0.0, 5.0, 10.0, 15.0]
SHIFTS = [0.0, 0.05, 0.1, 0.15]
ZOOMS = [0.0, 0.05, 0.1, 0.15]
DEFAULT_ROTATION, DEFAULT_SHIFT, DEFAULT_ZOOM = 10.0, 0.1, 0.1
DEGREES_PER_TURN = 360.0
OPTIMIZERS = ["adam", "adamw"]
MIN_LR, MAX_LR, DEFAULT_LR = 3e-4, 1e-2, 2e-3
MIN_WEIGHT_DECAY, MAX_WEIGHT_DECAY, DEFAULT_WEIGHT_DECAY = 1e-5, 1e-2, 1e-4
SCHEDULES = ["cosine", "plateau", "constant"]
# cosine: a linear ramp steadies BN and Adam's moments, over one epoch of a long run but at
# most WARMUP_FRACTION of a short one, so that a one-epoch screen still anneals before it ends.
WARMUP_EPOCHS = 1
WARMUP_FRACTION = 0.2
PLATEAU_FACTOR, PLATEAU_PATIENCE = 0.5, 1
MIN_LR_FRACTION = 0.01  # neither schedule goes below 1% of the starting rate
SMOOTHINGS = [0.0, 0.05, 0.1]
OBJECTIVE = "val_accuracy"
HEAD_LABELS = {"flatten": "fl", "gap": "gap"}
SCHEDULE_LABELS = {"cosine": "cos", "plateau": "plat", "constant": "const"}
PERCENT = 100
# The most expensive model the space can draw (benchmarks report its throughput).
LARGEST = {
    "conv_blocks": MAX_BLOCKS,
    "convs_per_block": 2,
    "filters": MAX_FILTERS,
    "head": "flatten",
    "dense_units": max(DENSE_UNITS),
}


def build(hp) -> keras.Model:
    """A compiled CNN drawn from the space; its training schedule is applied in fit()."""
    inputs = keras.Input(INPUT_SHAPE)
    x = augmentation(hp, inputs)
    x = features(hp, x)
    outputs = head(hp, x)
    model = keras.Model(inputs, outputs, name="cnn_plus")
    compile_model(hp, model)
    return model


AUGMENTATION = (layers.RandomRotation, layers.RandomTranslation, layers.RandomZoom)


def augmentation(hp, x):
    """Random rotation, shift and zoom; Keras applies them in training only."""
    rotation = hp.Choice("rotation_degrees", ROTATIONS, default=DEFAULT_ROTATION)
    shift = hp.Choice("shift", SHIFTS, default=DEFAULT_SHIFT)
    zoom = hp.Choice("zoom", ZOOMS, default=DEFAULT_ZOOM)
    # Empty space that a transform reveals stays black, like the digits' background.
    if rotation:
        x = layers.RandomRotation(rotation / DEGREES_PER_TURN, fill_mode="constant")(x)
    if shift:
        x = layers.RandomTranslation(shift, shift, fill_mode="constant")(x)
    if zoom:
        x = layers.RandomZoom(zoom, zoom, fill_mode="constant")(x)
    return x


def without_augmentation(model: keras.Model) -> keras.Model:
    """The model's layers (the same objects: weights shared) less its augmentation, to train
    on the digits as they are. build() makes a chain, so the layers in order are the graph."""
    x = inputs = keras.Input(INPUT_SHAPE)
    for layer in model.layers[1:]:  # [0] is the input
        if not isinstance(layer, AUGMENTATION):
            x = layer(x)
    return keras.Model(inputs, x, name=f"{model.name}_unaugmented")


def features(hp, x):
    """Conv blocks: 1-2 3x3 convs, optional BN, ReLU, 2x2 max pool, dropout; filters double."""
    blocks = hp.Int("conv_blocks", 1, MAX_BLOCKS, default=DEFAULT_BLOCKS)
    convs = hp.Int("convs_per_block", 1, 2, default=2)
    filters = hp.Int("filters", MIN_FILTERS, MAX_FILTERS, step=FILTER_STEP, default=DEFAULT_FILTERS)
    batch_norm = hp.Boolean("batch_norm", default=True)
    dropout = hp.Float(
        "conv_dropout", 0.0, MAX_CONV_DROPOUT, step=DROPOUT_STEP, default=DEFAULT_CONV_DROPOUT
    )
    for block in range(blocks):
        for _ in range(convs):
            x = layers.Conv2D(filters * 2**block, KERNEL, padding="same", use_bias=not batch_norm)(
                x
            )
            if batch_norm:
                x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    return x


def head(hp, x):
    """Flatten or global average pooling, an optional dense layer, then softmax."""
    pooled = hp.Choice("head", HEADS)
    x = layers.Flatten()(x) if pooled == "flatten" else layers.GlobalAveragePooling2D()(x)
    units = hp.Choice("dense_units", DENSE_UNITS, default=DEFAULT_DENSE_UNITS)
    if units:
        with hp.conditional_scope("dense_units", [u for u in DENSE_UNITS if u]):
            dropout = hp.Float(
                "dense_dropout", 0.0, MAX_DENSE_DROPOUT, step=DROPOUT_STEP, default=0.3
            )
        x = layers.Dense(units, activation="relu")(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    # float32 softmax: under mixed precision the loss still sees full-precision probabilities.
    return layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")(x)


def compile_model(hp, model: keras.Model) -> None:
    """Optimizer (AdamW with its weight decay), learning rate and label-smoothed loss."""
    name = hp.Choice("optimizer", OPTIMIZERS)
    rate = hp.Float("learning_rate", MIN_LR, MAX_LR, sampling="log", default=DEFAULT_LR)
    if name == "adamw":
        with hp.conditional_scope("optimizer", ["adamw"]):
            decay = hp.Float(
                "weight_decay",
                MIN_WEIGHT_DECAY,
                MAX_WEIGHT_DECAY,
                sampling="log",
                default=DEFAULT_WEIGHT_DECAY,
            )
        optimizer = keras.optimizers.AdamW(rate, weight_decay=decay)
    else:
        optimizer = keras.optimizers.Adam(rate)
    hp.Choice("schedule", SCHEDULES)  # used by fit(); declared here so every build has it
    smoothing = hp.Choice("label_smoothing", SMOOTHINGS, default=0.0)
    model.compile(
        optimizer=optimizer,
        loss=SmoothedSparseCrossentropy(smoothing)
        if smoothing
        else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def fit(hp, model: keras.Model, *args, **kwargs):
    """model.fit with the trial's learning-rate schedule added to the callbacks."""
    schedule = schedule_callback(hp.get("schedule"), hp.get("learning_rate"), kwargs["epochs"])
    if schedule is not None:
        kwargs["callbacks"] = [schedule, *kwargs.get("callbacks", [])]
    return model.fit(*args, **kwargs)


def schedule_callback(name: str, rate: float, epochs: int):
    """The Keras callback that drives a schedule, or None for a constant rate."""
    if name == "cosine":
        return WarmupCosine(rate, epochs)
    if name == "plateau":
        return keras.callbacks.ReduceLROnPlateau(
            monitor=OBJECTIVE,
            mode="max",
            factor=PLATEAU_FACTOR,
            patience=PLATEAU_PATIENCE,
            min_lr=rate * MIN_LR_FRACTION,
        )
    return None


class WarmupCosine(keras.callbacks.Callback):
    """Sets the rate before every step from cosine_rate over the fit's `epochs`: the schedule
    completes within whatever budget the fit has, one epoch or thirty."""

    def __init__(self, rate: float, epochs: int):
        super().__init__()
        self.rate, self.epochs = rate, epochs
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        steps = self.params.get("steps") or 1  # a dataset of unknown length: per epoch
        step = self._epoch * steps + (batch if self.params.get("steps") else 0)
        self.model.optimizer.learning_rate = cosine_rate(step, self.rate, steps, self.epochs)


def cosine_rate(step: int, rate: float, steps_per_epoch: int, epochs: int) -> float:
    """Linear warm-up, then cosine decay to MIN_LR_FRACTION at the run's last step.

    The warm-up lasts WARMUP_EPOCHS, or WARMUP_FRACTION of the run when that is shorter. The
    rate depends only on the step number (counted from the model's epoch 0), so a trial resumed
    from an epoch backup (initial_epoch > 0) picks up exactly where the schedule was.
    """
    total = max(steps_per_epoch * epochs, 1)
    warmup = max(1, min(steps_per_epoch * WARMUP_EPOCHS, int(WARMUP_FRACTION * total)))
    if step < warmup:
        return rate * (step + 1) / warmup
    progress = min((step - warmup) / max(total - 1 - warmup, 1), 1.0)
    floor = rate * MIN_LR_FRACTION
    return floor + (rate - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@keras.saving.register_keras_serializable(package="mnist_bench")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy against labels smoothed towards uniform; Keras' sparse loss has no
    label_smoothing, and one-hot labels would make the data pipeline depend on the space."""

    def __init__(self, smoothing: float = 0.0, name: str = "smoothed_sparse_crossentropy", **kw):
        super().__init__(name=name, **kw)
        self.smoothing = float(smoothing)

    def call(self, y_true, y_pred):
        labels = keras.ops.one_hot(
            keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), NUM_CLASSES
        )
        return keras.losses.categorical_crossentropy(labels, y_pred, label_smoothing=self.smoothing)

    def get_config(self) -> dict:
        return {**super().get_config(), "smoothing": self.smoothing}


def describe(hp: dict) -> str:
    """A label under 60 characters, e.g. "3x2x32/.2 bn fl128/.3 r10s10z10 lr2e-3 cos": blocks x
    convs x base filters / conv dropout, BN, head and dense units / dense dropout, rotation
    degrees, shift and zoom percent, learning rate (adamw: and its weight decay), schedule,
    label smoothing."""
    tokens = [_conv_label(hp)]
    if hp.get("batch_norm", True):
        tokens.append("bn")
    tokens.append(_head_label(hp))
    shift, zoom = (round(hp.get(n, d) * PERCENT) for n, d in (("shift", 0.1), ("zoom", 0.1)))
    rotation = hp.get("rotation_degrees", DEFAULT_ROTATION)
    if rotation or shift or zoom:
        tokens.append(f"r{rotation:g}s{shift}z{zoom}")
    tokens.append(f"lr{scientific(hp.get('learning_rate', DEFAULT_LR))}")
    if hp.get("optimizer", OPTIMIZERS[0]) == "adamw":
        tokens.append(f"wd{scientific(hp.get('weight_decay', DEFAULT_WEIGHT_DECAY), 1)}")
    tokens.append(SCHEDULE_LABELS.get(hp.get("schedule", SCHEDULES[0]), "?"))
    if smoothing := hp.get("label_smoothing", 0.0):
        tokens.append(f"ls{fraction(smoothing)}")
    return " ".join(tokens)


def _conv_label(hp: dict) -> str:
    blocks = hp.get("conv_blocks", DEFAULT_BLOCKS)
    shape = f"{blocks}x{hp.get('convs_per_block', 2)}x{hp.get('filters', DEFAULT_FILTERS)}"
    dropout = hp.get("conv_dropout", DEFAULT_CONV_DROPOUT)
    return f"{shape}/{fraction(dropout)}" if dropout else shape


def _head_label(hp: dict) -> str:
    label = HEAD_LABELS.get(hp.get("head", HEADS[0]), "?")
    units = hp.get("dense_units", DEFAULT_DENSE_UNITS)
    if not units:
        return label
    dropout = hp.get("dense_dropout", 0.0)
    return f"{label}{units}/{fraction(dropout)}" if dropout else f"{label}{units}"
