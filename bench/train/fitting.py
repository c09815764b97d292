"""Training shared by search, confirm and export: runtime settings, models from records,
fits from a fresh seed, and the test-set evaluation."""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass

import keras
import keras_tuner as kt
import numpy as np

from bench.core import metrics
from bench.errors import ConfigError
from bench.train import averaging, pipeline
from search_spaces import SpaceModel, hypermodel

EVAL_BATCH_SIZE = 1024  # validation and test batches: no gradients, so larger than training's
MIXED_POLICY = "mixed_float16"
# Keras' warning when weights saved with optimizer slots load into a model not yet trained.
OPTIMIZER_SLOTS_WARNING = "Skipping variable loading for optimizer"


def apply_threads(threads: int | None) -> None:
    """Limit this process's TensorFlow intra- and inter-op thread pools (before any op runs)."""
    if threads is None:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TensorFlow already runs in this process (a test that searches twice): kept as is


def apply_runtime(threads: int | None, mixed_precision: bool) -> None:
    """The process-wide TensorFlow settings a run asks for: threads and precision."""
    apply_threads(threads)
    if mixed_precision:
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            raise ConfigError(
                "--mixed-precision needs a GPU: a CPU has no fast float16, it would run slower"
            )
        keras.mixed_precision.set_global_policy(MIXED_POLICY)


def trial_hyperparameters(values: dict) -> kt.HyperParameters:
    """KerasTuner hyperparameters holding exactly these recorded values."""
    hp = kt.HyperParameters()
    hp.values = dict(values)
    return hp


def default_values(space: str) -> dict:
    """The space's default hyperparameter values, as its first trial draws them."""
    hp = kt.HyperParameters()
    hypermodel(space).build(hp)
    return dict(hp.values)


def build_model(space: str, hyperparameters: dict) -> keras.Model:
    """The space's compiled model for exactly these hyperparameter values."""
    return hypermodel(space).build(trial_hyperparameters(hyperparameters))


@contextlib.contextmanager
def checkpoint_loading():
    """Quiet while a best-epoch checkpoint loads: it also holds optimizer slots that a model
    which has not trained yet lacks, and Keras warns about each."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=OPTIMIZER_SLOTS_WARNING)
        yield


def load_checkpoint(model: keras.Model, path) -> keras.Model:
    """The model with a best-epoch checkpoint's weights loaded."""
    with checkpoint_loading():
        model.load_weights(path)
    return model


@dataclass(frozen=True)
class Training:
    """What a fit afresh trains on, and how: the images and their labels, batch size, the
    seed of the weights and of the shuffle, and the epochs."""

    images: np.ndarray  # uint8 (n, 28, 28, 1), as data.Splits holds them
    labels: np.ndarray
    batch_size: int
    seed: int
    epochs: int
    ema: float | None = None  # momentum of a moving average of the weights; None: none
    distortion: object | None = None  # a bench.train.distort transform of every batch


@dataclass
class Fitted:
    """A model trained afresh, with what trained it."""

    model: keras.Model
    space: SpaceModel
    train: object  # the tf.data training set (a release's clean epochs reuse it)
    history: dict
    seconds: float


def fit_afresh(
    record: dict, training: Training, validation=None, callbacks: list | None = None
) -> Fitted:
    """Build a record's configuration from the training's seed and train it for its epochs
    through its space's own fit (so its learning-rate schedule spans those epochs), with
    `callbacks`, averaging its weights and distorting its digits where the training says."""
    keras.utils.set_random_seed(training.seed)
    space = hypermodel(record["space"])
    hp = trial_hyperparameters(record["hyperparameters"])
    model = space.build(hp)
    if training.ema is not None:
        averaging.with_ema(model, training.ema)
    train = pipeline.training_set(
        training.images, training.labels, training.batch_size, training.seed, training.distortion
    )
    began = time.monotonic()
    history = space.fit(
        hp,
        model,
        train,
        validation_data=validation,
        epochs=training.epochs,
        shuffle=False,
        verbose=0,
        callbacks=list(callbacks or []),
    ).history
    return Fitted(model, space, train, history, time.monotonic() - began)


def evaluation_set(images: np.ndarray, labels: np.ndarray):
    """Validation or test batches in stored order."""
    return pipeline.evaluation_set(images, labels, EVAL_BATCH_SIZE)


def evaluate(model: keras.Model, dataset, labels: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Class probabilities on an evaluation_set, its accuracy and cross-entropy."""
    probs = model.predict(dataset, verbose=0)
    accuracy, loss = metrics.test_metrics(probs, labels)
    return probs, accuracy, loss
