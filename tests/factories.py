"""Fake but schema-valid trial records and run directories for tests."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bench.core import metrics, records

NUM_CLASSES = metrics.NUM_CLASSES
TEST_SAMPLES = 200
HISTORY_EPOCHS = 3
TRIAL_MINUTES = 10  # fake trials start this far apart
RUN_START = datetime(2024, 1, 1, tzinfo=UTC)
SEED_TRIAL_ID = "seed"
SEED_LABEL = "seed baseline"
# (hyperparameter, token prefix) in the order a cnn-like space's describe(hp) writes them.
LABEL_TOKENS = (
    ("kernel_size", "k"),
    ("batch_norm", "bn"),
    ("conv_dropout", "drop"),
    ("dense_units", "dense"),
    ("dense_dropout", "drop"),
    ("optimizer", ""),
    ("learning_rate", "lr"),
)
FAILED_ERROR = "ResourceExhaustedError: OOM when allocating tensor with shape [128,64,28,28]"
DATASET = {"name": "mnist", "sha256": "0" * 64, "train": 54000, "val": 6000, "test": 10000}
VERSIONS = {
    "python": "3.11",
    "tensorflow": "2.16",
    "keras": "3.3",
    "keras_tuner": "1.4",
    "numpy": "1.26",
}


def _rng_for(run: str, trial_id: str) -> np.random.Generator:
    # Same (run, trial_id) -> same values, whatever order tests build records in.
    return np.random.default_rng(zlib.crc32(f"{run}/{trial_id}".encode()))


def fake_hyperparameters(rng: np.random.Generator) -> dict:
    """A plausible configuration of the `cnn` search space."""
    blocks = int(rng.integers(1, 4))
    hp = {"conv_blocks": blocks}
    hp.update({f"filters_{i}": int(rng.choice([16, 32, 64, 128])) for i in range(blocks)})
    hp.update(
        kernel_size=int(rng.choice([3, 5])),
        batch_norm=bool(rng.integers(0, 2)),
        conv_dropout=float(rng.choice([0.0, 0.1, 0.25])),
        dense_units=int(rng.choice([64, 128, 256])),
        dense_dropout=float(rng.choice([0.0, 0.25, 0.5])),
        optimizer=str(rng.choice(["adam", "sgd"])),
        learning_rate=float(rng.choice([1e-2, 1e-3, 1e-4])),
    )
    return hp


def fake_architecture(hyperparameters: dict, space: str = "cnn") -> str:
    """A compact label the way a space's describe(hp) makes one, e.g.
    "2x[32,64] k3 bn drop0.25 dense128 drop0.5 adam lr1e-3"; filters past conv_blocks are
    left out, as they are never built."""
    if space == "seed":
        return SEED_LABEL
    hp = hyperparameters
    blocks = int(hp.get("conv_blocks", 0))
    filters = ",".join(str(hp.get(f"filters_{i}", "?")) for i in range(blocks))
    tokens = [f"{blocks}x[{filters}]"] if blocks else []
    tokens += [_token(prefix, hp[name]) for name, prefix in LABEL_TOKENS if name in hp]
    return " ".join(token for token in tokens if token) or "default"


def _token(prefix: str, value) -> str:
    if isinstance(value, bool):
        return prefix if value else ""
    if prefix == "lr":
        return prefix + f"{value:.0e}".replace("e-0", "e-")  # 1e-3, as the spaces write it
    return f"{prefix}{value:g}" if isinstance(value, float) else f"{prefix}{value}"


def _start_time(trial_id: str) -> datetime:
    # Numbered trials start one after another; others (the seed baseline) just before them.
    index = int(trial_id) if trial_id.isdigit() else -1
    return RUN_START + timedelta(minutes=TRIAL_MINUTES * index)


def _history(rng: np.random.Generator, val_accuracy: float) -> dict:
    # Accuracy climbs towards the final value and loss falls: the last epoch is the best one.
    steps = np.linspace(0.9, 1.0, HISTORY_EPOCHS)
    val_acc = [round(float(val_accuracy * s), 4) for s in steps]
    loss = float(rng.uniform(0.3, 0.6))
    return {
        "accuracy": [round(min(1.0, a + float(rng.uniform(0, 0.01))), 4) for a in val_acc],
        "loss": [round(loss / (i + 1), 4) for i in range(HISTORY_EPOCHS)],
        "val_accuracy": val_acc,
        "val_loss": [round(1.2 * loss / (i + 1), 4) for i in range(HISTORY_EPOCHS)],
    }


def fake_record(
    run: str = "r1",
    trial_id: str = "00",
    status: str = "completed",
    space: str = "cnn",
    hyperparameters: dict | None = None,
    **overrides,
) -> dict:
    """A record that passes records.validate_record; keyword overrides replace any field."""
    rng = _rng_for(run, trial_id)
    if hyperparameters is None:
        hyperparameters = {} if space == "seed" else fake_hyperparameters(rng)
    started = _start_time(trial_id)
    train_seconds = round(float(rng.uniform(30, 300)), 1)
    record = dict.fromkeys(records.RECORD_KEYS)
    record.update(
        schema=records.SCHEMA_VERSION,
        run=run,
        trial_id=trial_id,
        status=status,
        space=space,
        tuner="random",
        hyperparameters=hyperparameters,
        architecture=fake_architecture(hyperparameters, space),
        tuner_state={},
        initial_epoch=0,
        batch_size=128,
        started_at=started.isoformat(),
        finished_at=(started + timedelta(seconds=train_seconds + 5)).isoformat(),
        seed=1,
        dataset=dict(DATASET),
        versions=dict(VERSIONS),
        git_commit="abc1234",
    )
    if status == records.STATUS_COMPLETED:
        val_accuracy = round(float(rng.uniform(0.97, 0.995)), 4)
        record.update(
            val_accuracy=val_accuracy,
            val_loss=round(float(rng.uniform(0.02, 0.1)), 4),
            test_accuracy=round(float(rng.uniform(0.97, 0.995)), 4),
            test_loss=round(float(rng.uniform(0.02, 0.1)), 4),
            params=int(rng.integers(20_000, 2_000_000)),
            epochs_run=HISTORY_EPOCHS,
            best_epoch=HISTORY_EPOCHS,
            train_seconds=train_seconds,
            eval_seconds=round(float(rng.uniform(0.5, 3)), 2),
            history=_history(rng, val_accuracy),
        )
        record["inference"] = fake_inference(rng, record["params"])
    else:
        record.update(
            error=FAILED_ERROR, traceback=f"Traceback (most recent call last):\n{FAILED_ERROR}"
        )
    record.update(overrides)
    records.validate_record(record)
    return record


def fake_inference(rng: np.random.Generator, params: int) -> dict:
    """An inference cost of a model of `params` parameters (its size and FLOPs follow them)."""
    latency = round(float(rng.uniform(0.3, 5.0)), 4)
    return {
        "latency_ms": latency,
        "images_per_second": round(float(rng.uniform(500, 20_000)), 1),
        "threads": 2,
        "bytes": 4 * params + 20_000,
        "flops": 200 * params,
        "beside_training": False,
    }


def fake_predictions(
    rng: np.random.Generator, accuracy: float, n: int = TEST_SAMPLES
) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, probs) where about `accuracy` of the argmax predictions are right."""
    y_true = rng.integers(0, NUM_CLASSES, n)
    wrong = rng.random(n) > accuracy
    shift = rng.integers(1, NUM_CLASSES, n)
    y_pred = np.where(wrong, (y_true + shift) % NUM_CLASSES, y_true)
    probs = rng.random((n, NUM_CLASSES))
    probs[np.arange(n), y_pred] += NUM_CLASSES
    return y_true, probs / probs.sum(axis=1, keepdims=True)


def fake_run(
    results_dir: str | Path,
    run: str = "r1",
    n: int = 6,
    failed: int = 1,
    with_seed_baseline: bool = True,
    rng: np.random.Generator | None = None,
) -> Path:
    """Write config.json, records and predictions of a run; returns results_dir/run.

    n search trials in all, the last `failed` of them failed; with_seed_baseline adds one
    trial of the `seed` space (trial id "seed") on top.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    run_dir = Path(results_dir) / run
    config = {
        "run": run,
        "space": "cnn",
        "tuner": "random",
        "seed": 1,
        "max_trials": n,
        "max_epochs": HISTORY_EPOCHS,
        "batch_size": 128,
        "dataset": "mnist",
    }
    records.atomic_write_json(run_dir / records.CONFIG_FILE, config)
    trials = [(f"{i:02d}", "cnn", i >= n - failed) for i in range(n)]
    if with_seed_baseline:
        trials.append((SEED_TRIAL_ID, "seed", False))
    for trial_id, space, is_failed in trials:
        status = records.STATUS_FAILED if is_failed else records.STATUS_COMPLETED
        record = fake_record(run=run, trial_id=trial_id, status=status, space=space)
        if not is_failed:
            # The record's test figures are those of the predictions stored with it, as in a search.
            y_true, probs = fake_predictions(rng, record["test_accuracy"])
            record["predictions"] = records.write_predictions(run_dir, trial_id, y_true, probs)
            accuracy, loss = metrics.test_metrics(probs, y_true)
            record.update(test_accuracy=accuracy, test_loss=loss)
        records.write_record(run_dir, record)
    return run_dir
