"""What a trial leaves behind: the per-trial record schema, atomic writes, and loading."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import shutil
import struct
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import swap
from bench.errors import DamagedFile, DiskFull

SCHEMA_VERSION = 2  # 2 added `inference`; records of schema 1 are read as they are
# Left free on the results disk: HDF5 crashes the process when a write finds the disk full,
# so every write first checks that this much would stay free.
DISK_MARGIN_BYTES = 64 * 2**20
NO_ROOM = (errno.ENOSPC, errno.EDQUOT)
TRIALS_DIR = "trials"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"  # a shipped or kept model, in Keras's own format
# KerasTuner's own values in a trial (hyperband's epochs and bracket, asha's rung), not a model's
# hyperparameters.
TUNER_STATE_PREFIX = "tuner/"
ENVIRONMENT_FILE = "environment.json"  # every distinct environment the run's processes ran in
TUNER_PROJECT = "tuner"
CONFIRM_DIR = "confirm"  # bench confirm: <trial_id>-seed<seed>.json and .npz
TENSORBOARD_DIR = "tensorboard"  # --tensorboard: one folder of logs per trial
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
STATUSES = (STATUS_COMPLETED, STATUS_FAILED)
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
    # {latency_ms, images_per_second, threads, bytes, flops, beside_training} of the model as
    # served (bench.train.served), measured after the test evaluation, or {error} when measuring
    # failed; None for a failed trial
    "inference",
)


def utc_now() -> str:
    """The time now, ISO 8601 in UTC to the millisecond, as records stamp it."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def ensure_room(path: str | os.PathLike, nbytes: int) -> None:
    """DiskFull unless the disk that holds path has nbytes free besides DISK_MARGIN_BYTES."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < nbytes + DISK_MARGIN_BYTES:
        raise DiskFull(disk_full_message(path, free))


def disk_full_message(path: str | os.PathLike, free: int | None = None) -> str:
    left = "" if free is None else f", {free / 2**20:.0f} MB free"
    return (
        f"the disk is full: {path} cannot be written{left}; free some space, then the same "
        "command resumes"
    )


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write data to path so that readers see the old file or the new one, never a part;
    DiskFull, the old file kept, when the disk has no room for it. Temporary files that
    writers now gone left in the folder go too."""
    path = Path(path)
    tmp = swap.scratch_name(path, swap.TEMP)
    try:
        ensure_room(path.parent, len(data))
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not mkstemp, whose 0600 would keep results from the team (and a web server).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, swap.FILE_MODE)
    except OSError as exc:
        raise disk_full_or(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_full_or(exc, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    swap.sweep_after_write(path.parent)


def disk_full_or(exc: OSError, path: Path) -> BaseException:
    """DiskFull for a write the disk had no room (or quota) for; the error itself otherwise."""
    return DiskFull(disk_full_message(path)) if exc.errno in NO_ROOM else exc


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
    """The {y_true, y_pred, probs} arrays of a record, or None when it has none; DamagedFile
    for a file that does not hold them."""
    if not record.get("predictions"):
        return None
    return read_npz(trials_dir(run_dir) / record["predictions"], PREDICTIONS_REMEDY)


# What to do about a damaged file, by kind; the error names the file.
TRIAL_REMEDY = (
    "move it out of the run folder to go on without that trial's record, or start afresh "
    "with --fresh (the old folder is kept aside)"
)
CONFIRM_REMEDY = "remove it, and `bench confirm` trains that seed again"
PREDICTIONS_REMEDY = "the trial's record stands; its test predictions are lost"
CONFIRM_PREDICTIONS_REMEDY = "remove it and its .json, and `bench confirm` trains that seed again"
PREDICTION_KEYS = ("y_true", "y_pred", "probs")
# Why a file is damaged, in the same words whatever kind of file it is.
NOT_JSON = "not valid JSON"
NOT_OBJECT = "not a JSON object"
NOT_NPZ = "not a valid .npz"
MISSING_KEY = "missing key {key}"
# In config.json of a run whose budget trains nothing full-length: what it can reach, in words
# (bench.search.rung_plan.reach_words), said at its start and in its report.
BUDGET_REACH_KEY = "budget_reach"
# What numpy, zipfile and zlib raise for bytes that are no .npz (a pickle among them: numpy
# refuses it, allow_pickle being False).
NPZ_DAMAGE = (
    ValueError,
    EOFError,
    KeyError,
    NotImplementedError,
    struct.error,
    zlib.error,
    zipfile.BadZipFile,
)


def damaged_file(path: Path, reason: str, remedy: str) -> DamagedFile:
    """The one line a damaged file is reported in: which file, why (one of the reasons above),
    and what to do."""
    return DamagedFile(f"{path} is damaged ({reason}); {remedy}")


def unreadable_file(path: Path, exc: OSError, remedy: str) -> DamagedFile:
    return DamagedFile(f"{path} cannot be read ({exc.strerror or exc}); {remedy}")


def _check_keys(path: Path, found, keys: tuple[str, ...], remedy: str) -> None:
    missing = [key for key in keys if key not in found]
    if missing:
        raise damaged_file(path, MISSING_KEY.format(key=missing[0]), remedy)


def read_json(path: Path, remedy: str, keys: tuple[str, ...] = ()) -> dict:
    """A JSON object from path, with `keys`; DamagedFile naming the file and the remedy for
    one that is not (a write cut short, a disk error, an edit)."""
    try:
        value = json.loads(path.read_text())
    except OSError as exc:
        raise unreadable_file(path, exc, remedy) from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise damaged_file(path, NOT_JSON, remedy) from None
    if not isinstance(value, dict):
        raise damaged_file(path, NOT_OBJECT, remedy)
    _check_keys(path, value, keys, remedy)
    return value


def read_npz(
    path: Path, remedy: str, keys: tuple[str, ...] = PREDICTION_KEYS, arrays: bool = True
) -> dict:
    """The arrays of an .npz holding `keys` (with arrays False, only its check: none is
    read); DamagedFile as read_json. Nothing in it is ever unpickled."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            if not isinstance(stored, np.lib.npyio.NpzFile):  # a lone .npy array
                raise damaged_file(path, NOT_NPZ, remedy)
            _check_keys(path, stored.files, keys, remedy)
            return {key: stored[key] for key in stored.files} if arrays else {}
    except DamagedFile:
        raise
    except OSError as exc:
        if exc.errno is None:  # zipfile's complaint about the bytes, not the disk's
            raise damaged_file(path, NOT_NPZ, remedy) from None
        raise unreadable_file(path, exc, remedy) from None
    except NPZ_DAMAGE:
        raise damaged_file(path, NOT_NPZ, remedy) from None


def load_records(run_dir: str | os.PathLike, damaged: list[str] | None = None) -> list[dict]:
    """All trial records of a run, ordered by start time then trial id. A damaged record
    raises DamagedFile, or, given a `damaged` list, is left out and its error appended."""
    folder = trials_dir(run_dir)
    if not folder.is_dir():
        return []
    keys = ("trial_id", "status")
    found = _read_all(sorted(folder.glob("*.json")), TRIAL_REMEDY, keys, damaged)
    return sorted(found, key=lambda r: (r.get("started_at") or "", r["trial_id"]))


def _read_all(paths, remedy: str, keys: tuple[str, ...], damaged: list[str] | None) -> list:
    found = []
    for path in paths:
        try:
            found.append(read_json(path, remedy, keys))
        except DamagedFile as exc:
            if damaged is None:
                raise
            damaged.append(str(exc))
    return found


def confirm_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CONFIRM_DIR


def load_confirmed(run_dir: str | os.PathLike, damaged: list[str] | None = None) -> list[dict]:
    """Every `bench confirm` record of a run, by trial then seed; [] when none was made. A
    damaged one as in load_records."""
    folder = confirm_dir(run_dir)
    if not folder.is_dir():
        return []
    paths = sorted(folder.glob("*.json"))
    found = _read_all(paths, CONFIRM_REMEDY, ("trial_id", "seed"), damaged)
    return sorted(found, key=lambda r: (r["trial_id"], r["seed"]))


def load_confirmed_predictions(run_dir: str | os.PathLike, record: dict) -> dict:
    """The {y_true, y_pred, probs} arrays of a confirmation record; DamagedFile as read_npz."""
    return read_npz(confirm_dir(run_dir) / record["predictions"], CONFIRM_PREDICTIONS_REMEDY)


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


def run_config(run_dir: Path, error: type[Exception]) -> dict:
    """The config.json of a run that a command acts on; `error` (the command's bad-input
    type) for a folder that is not a run."""
    if not (run_dir / CONFIG_FILE).is_file():
        raise error(f"{run_dir}: not a run (no {CONFIG_FILE})")
    return load_config(run_dir)


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
