"""What a trial of an outside optimizer (Optuna, DEHB) trains on and leaves behind: the
benchmark's data, one configuration trained afresh by the space's own fit, and its event."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras

from bench.core.config import DEFAULT_BATCH_SIZE


@dataclass(frozen=True)
class Sets:
    """The benchmark's batches, made once and served to every trial."""

    train: object  # shuffled afresh each epoch (bench.train.pipeline)
    val: object
    test: object
    test_labels: object


def benchmark_sets(data_limits: dict, seed: int) -> Sets:
    """The benchmark's data subset (bench.perf.policies.DATA) as the suite's training and
    evaluation batches, the training order drawn from the search seed."""
    from bench.core import data
    from bench.train import fitting, pipeline

    splits = data.load(**data_limits)
    return Sets(
        train=pipeline.training_set(splits.train_images, splits.y_train, DEFAULT_BATCH_SIZE, seed),
        val=fitting.evaluation_set(splits.val_images, splits.y_val),
        test=fitting.evaluation_set(splits.test_images, splits.y_test),
        test_labels=splits.y_test,
    )


def train(model_space, hp, sets: Sets, epochs: int, seed: int, budget, callbacks=()) -> dict:
    """Train one configuration afresh for `epochs` with the space's fit and measure it.

    Args:
        model_space: the space's HyperModel (search_spaces.hypermodel).
        hp: the configuration's KerasTuner hyperparameters.
        budget: the run's bench.core.budget.Budget; BudgetSpent cuts the training.
        callbacks: more Keras callbacks (Optuna's pruning), called before the others.

    Returns:
        Its event as bench.perf.policies reads events: the epochs trained, the best epoch's
        validation accuracy and the test accuracy of that epoch's weights.
    """
    from bench.core import records
    from bench.search.recorder import BudgetCallback
    from bench.train import fitting

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = model_space.build(hp)
    # Never stops early (patience: every epoch); at the end it restores the best epoch's
    # weights, which the test set then measures, as the suite's trials do.
    best = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", mode="max", patience=epochs, restore_best_weights=True
    )
    history = model_space.fit(
        hp,
        model,
        sets.train,
        validation_data=sets.val,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[*callbacks, best, BudgetCallback(budget)],
    ).history
    _, test_accuracy, _ = fitting.evaluate(model, sets.test, sets.test_labels)
    return {
        "ended_at": records.utc_now(),
        "epochs": len(history["val_accuracy"]),
        "configuration": json.dumps(hp.values, sort_keys=True),
        "val_accuracy": max(history["val_accuracy"]),
        "test_accuracy": test_accuracy,
    }


def write_events(run_dir: Path, events: list[dict]) -> None:
    from bench.core import records
    from bench.perf import policies

    records.atomic_write_json(Path(run_dir) / policies.EVENTS_FILE, events)


def write_optimizer(run_dir: Path, settings: dict) -> None:
    """The optimizer's settings beside its events (bench.perf.policies.OPTIMIZER_FILE), for
    the run's row, callables by name."""
    from bench.core import records
    from bench.perf import policies

    records.atomic_write_json(Path(run_dir) / policies.OPTIMIZER_FILE, _plain(settings))


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if callable(value):
        return f"{value.__module__}.{value.__qualname__}"
    return value
