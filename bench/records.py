"""What a trial leaves behind: the per-trial record schema, atomic writes, and loading."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
TRIALS_DIR = "trials"
CONFIG_FILE = "config.json"
ENVIRONMENT_FILE = "environment.json"  # every distinct environment the run's processes ran in
TUNER_PROJECT = "tuner"
CONFIRM_DIR = "confirm"  # bench confirm: <trial_id>-seed<seed>.json and .npz
TENSORBOARD_DIR = "tensorboard"  # --tensorboard: one folder of logs per trial
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
STATUSES = (STATUS_COMPLETED, STATUS_FAILED)
DEFAULT_FILE_MODE = 0o666
HISTORY_KEYS = ("accuracy", "loss", "val_accuracy", "val_loss")

# Every record carries these keys (None where a failed trial has no value).
# docs/usage.md documents each of them; tests check records against this tuple.
RECORD_KEYS = (
    "schema",  # SCHEMA_VERSION of the writer
    "run",  # run name
    "trial_id",  # KerasTuner's trial id (string)
    "status",  # "completed" or "failed"
    "space",  # search-space name
    "tuner",  # tuner name (random, grid, bayesian, hyperband)
    "hyperparameters",  # {name: value} of the space's hyperparameters
    "architecture",  # the space's short label of those values (its describe(hp))
    "tuner_state",  # KerasTuner's own "tuner/..." values (hyperband epochs, bracket, ...)
    "val_accuracy",  # validation accuracy at the best epoch (the objective)
    "val_loss",  # validation loss at the best epoch
    "test_accuracy",  # test accuracy of the best-epoch model
    "test_loss",  # test loss (sparse categorical cross-entropy) of the best-epoch model
    "params",  # trainable + non-trainable parameter count
    "epochs_run",  # epochs trained in this trial
    "best_epoch",  # 1-based epoch of the best val_accuracy, counted from the model's epoch 0
    "initial_epoch",  # epoch the trial started from (hyperband continues earlier trials)
    "resumed_at_epoch",  # epochs already done when a cut-off trial went on from its backup
    "batch_size",  # training batch size
    "train_seconds",  # wall time of KerasTuner's run_trial: build and fit
    "fit_seconds",  # wall time inside model.fit (train begin to end), for the overhead benchmark
    "eval_seconds",  # wall time of the test-set evaluation
    "started_at",  # ISO 8601 UTC
    "finished_at",  # ISO 8601 UTC
    "history",  # {accuracy, loss, val_accuracy, val_loss: [per epoch]}
    "error",  # one-line reason for a failed trial, else None
    "traceback",  # full traceback of a failed trial, else None
    "seed",  # the run's --seed
    "dataset",  # {name, sha256, train, val, test}: fingerprint and split sizes
    "versions",  # {python, tensorflow, keras, keras_tuner, numpy}
    "git_commit",  # project commit (with "-dirty" if the tree had changes), or None
    "predictions",  # file name under trials/ with the test predictions, or None
    "process",  # {pid, rss_mb}: the process that ran the trial and its resident memory after it
)


def utc_now() -> str:
    """The time now, ISO 8601 in UTC to the millisecond, as records stamp it."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write data to path so that readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes 0600 files; results are for the whole team (and a web server) to read.
        os.chmod(tmp, DEFAULT_FILE_MODE & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays come out of Keras histories and KerasTuner values.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def trials_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / TRIALS_DIR


def record_path(run_dir: str | os.PathLike, trial_id: str) -> Path:
    return trials_dir(run_dir) / f"{trial_id}.json"


def predictions_name(trial_id: str) -> str:
    return f"{trial_id}.npz"


def write_record(run_dir: str | os.PathLike, record: dict) -> Path:
    """Validate a record and write it atomically as trials/<trial_id>.json."""
    validate_record(record)
    path = record_path(run_dir, record["trial_id"])
    atomic_write_json(path, record)
    return path


def validate_record(record: dict) -> None:
    """Raise ValueError when a record does not follow the schema."""
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise ValueError(f"record lacks keys: {', '.join(missing)}")
    if record["status"] not in STATUSES:
        raise ValueError(f"record status must be one of {STATUSES}, not {record['status']!r}")
    if record["status"] == STATUS_FAILED and not record["error"]:
        raise ValueError("a failed record must say why (error)")
    if record["status"] == STATUS_COMPLETED:
        for key in ("val_accuracy", "test_accuracy", "test_loss", "params"):
            if record[key] is None:
                raise ValueError(f"a completed record needs {key}")


def write_predictions(
    run_dir: str | os.PathLike, trial_id: str, y_true: np.ndarray, probs: np.ndarray
) -> str:
    """Store a trial's test-set labels, predicted labels and class probabilities (float16)."""
    name = predictions_name(trial_id)
    atomic_write_bytes(trials_dir(run_dir) / name, predictions_bytes(y_true, probs))
    return name


def predictions_bytes(y_true: np.ndarray, probs: np.ndarray) -> bytes:
    """An .npz of test labels, predicted labels and class probabilities (float16)."""
    import io

    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        y_true=y_true.astype(np.uint8),
        y_pred=probs.argmax(axis=1).astype(np.uint8),
        probs=probs.astype(np.float16),
    )
    return buffer.getvalue()


def load_predictions(run_dir: str | os.PathLike, record: dict) -> dict[str, np.ndarray] | None:
    """The {y_true, y_pred, probs} arrays of a record, or None when it has none."""
    if not record.get("predictions"):
        return None
    with np.load(trials_dir(run_dir) / record["predictions"]) as data:
        return {key: data[key] for key in data.files}


def load_records(run_dir: str | os.PathLike) -> list[dict]:
    """All trial records of a run, ordered by start time then trial id."""
    folder = trials_dir(run_dir)
    if not folder.is_dir():
        return []
    records = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    return sorted(records, key=lambda r: (r.get("started_at") or "", r["trial_id"]))


def confirm_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CONFIRM_DIR


def load_confirmed(run_dir: str | os.PathLike) -> list[dict]:
    """Every `bench confirm` record of a run, by trial then seed; [] when none was made."""
    folder = confirm_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    return sorted(found, key=lambda r: (r["trial_id"], r["seed"]))


def load_confirmed_predictions(run_dir: str | os.PathLike, record: dict) -> dict:
    """The {y_true, y_pred, probs} arrays of a confirmation record."""
    with np.load(confirm_dir(run_dir) / record["predictions"]) as stored:
        return {key: stored[key] for key in stored.files}


def note_environment(run_dir: str | os.PathLike, environment: dict, seen_at: str) -> None:
    """Add environment to the run's list unless it is the last one there (a resumed run on the
    same machine and commit adds nothing; a worker elsewhere or an upgrade does)."""
    seen = load_environments(run_dir)
    if seen and {k: v for k, v in seen[-1].items() if k != "seen_at"} == environment:
        return
    atomic_write_json(
        Path(run_dir) / ENVIRONMENT_FILE, [*seen, {"seen_at": seen_at, **environment}]
    )


def load_environments(run_dir: str | os.PathLike) -> list[dict]:
    """The environments a run was seen in, oldest first; [] for runs made before they were kept."""
    path = Path(run_dir) / ENVIRONMENT_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def load_config(run_dir: str | os.PathLike) -> dict:
    """The run's config.json as a dict."""
    return json.loads((Path(run_dir) / CONFIG_FILE).read_text())


def completed(records: Iterable[dict]) -> list[dict]:
    return [r for r in records if r["status"] == STATUS_COMPLETED]


def defaults_hyperparameters(records: list[dict]) -> dict | None:
    """The hyperparameters of a run's first trial (records in start order): a run always
    tries its space's defaults first. None for a run without trials."""
    return records[0]["hyperparameters"] if records else None


def ranked_by_validation(records: Iterable[dict]) -> list[dict]:
    """Completed records, highest val_accuracy first (ties: lower val_loss, then run order)."""
    return sorted(completed(records), key=lambda r: (-r["val_accuracy"], r["val_loss"] or 0.0))


def best_by_validation(records: Iterable[dict]) -> dict | None:
    """The completed record with the highest val_accuracy (ties: lower val_loss), else None."""
    ranked = ranked_by_validation(records)
    return ranked[0] if ranked else None
