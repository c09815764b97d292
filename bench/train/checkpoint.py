"""Resume a cut-off trial from its last finished epoch instead of from its start.

After every epoch, EpochBackup writes the trial's training state to
results/<run>/resume/<trial_id>/: the model's weights with the optimizer's slots
(epoch-<n>.weights.h5) and state.json, which names that file and holds the epoch reached,
the history so far and the bookkeeping of the callbacks that decide when training stops
and which epoch is kept (early stopping, KerasTuner's best-epoch checkpoint). The weights
file is in place before state.json names it, so a kill at any moment leaves the previous
epoch's state or the new one. When KerasTuner reruns the trial after a resume, the same
callback restores that state at the start of fit() and training goes on from the next
epoch. The folder goes once the trial's record is written. A release retraining
(bench.release.export.retrain) is backed up the same way, under resume/release-seed<N>/.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from bench.core import records, swap
from bench.errors import DamagedFile
from bench.train import kt_compat

RESUME_DIR = "resume"
STATE_FILE = "state.json"
STATE_KEYS = ("values", "epoch", "weights", "stopped", "epochs", "history")
WEIGHTS_SUFFIX = ".weights.h5"  # Keras wants it on every weights file, a temporary one too
NOT_WEIGHTS = "not a weights file of this model"
DISCARDED = "discarded, the trial starts again from its first epoch"


def backup_dir(run_dir: str | os.PathLike, trial_id: str) -> Path:
    return Path(run_dir) / RESUME_DIR / trial_id


def discard(run_dir: str | os.PathLike, trial_id: str) -> None:
    """Remove a trial's epoch backup (its record now holds everything it produced)."""
    shutil.rmtree(backup_dir(run_dir, trial_id), ignore_errors=True)


def _plain(value):
    """A JSON-safe Python value for a metric (numpy scalars, tensors)."""
    return None if value is None else float(value)


def state_variables(model: keras.Model) -> list:
    """A model's weights and its optimizer's slots: what an epoch backup holds."""
    optimizer = model.optimizer
    return [*model.variables, *(optimizer.variables if optimizer else [])]


def state_bytes(model: keras.Model) -> int:
    return sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in state_variables(model))


class DiskRoom(keras.callbacks.Callback):
    """Before an epoch's checkpoint and backup are written (put it ahead of their callbacks):
    DiskFull unless the disk has room for both, so that HDF5 never writes into a full disk."""

    def __init__(self, folder: str | os.PathLike):
        super().__init__()
        self.folder = Path(folder)

    def on_epoch_end(self, epoch, logs=None):
        records.ensure_room(self.folder, 2 * state_bytes(self.model))


class EpochBackup(keras.callbacks.Callback):
    """Saves a trial's state after every epoch and restores it when the trial runs again.

    siblings are the other callbacks of the same fit(): the early-stopping and best-epoch
    callbacks among them get their state back on a restore. Put this callback after them,
    so that their own on_train_begin resets come first.
    """

    def __init__(self, folder: str | os.PathLike, values: dict, siblings=()):
        super().__init__()
        self.folder = Path(folder)
        self.values = values
        self.siblings = list(siblings)
        self.resumed_at: int | None = None
        # Training seconds of the epochs saved so far, over every fit this backup went on
        # from (a release killed and resumed reports all its training time).
        self.seconds = 0.0
        self._seconds_before = 0.0
        self._began = time.monotonic()
        self._history: dict[str, list] = {}
        self._epochs: list[int] = []

    def load_state(self) -> dict | None:
        """The saved state, or None when there is none usable for these hyperparameters. A
        damaged one (a disk error, an edit) is discarded with one line naming it."""
        path = self.folder / STATE_FILE
        if not path.is_file():
            return None
        try:
            state = records.read_json(path, DISCARDED, STATE_KEYS)
            if state["values"] == self.values and not (self.folder / state["weights"]).is_file():
                raise records.damaged_file(
                    path, f"names {state['weights']}, which is gone", DISCARDED
                )
        except DamagedFile as exc:
            print(f"epoch backup {exc}", flush=True)
            shutil.rmtree(self.folder, ignore_errors=True)
            return None
        return state if state["values"] == self.values else None

    def on_train_begin(self, logs=None):
        self._history, self._epochs = {}, []
        self.seconds = self._seconds_before = 0.0
        self._began = time.monotonic()
        state = self.load_state()
        if state is None:
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)  # the file holds its slots too
        if not self.restore_weights(self.folder / state["weights"]):
            return
        # Keras' fit() starts its epoch loop here when set (as its BackupAndRestore does).
        self.model._initial_epoch = self.params["epochs"] if state["stopped"] else state["epoch"]
        self._history = {key: list(values) for key, values in state["history"].items()}
        self._epochs = list(state["epochs"])
        self.seconds = self._seconds_before = float(state.get("seconds") or 0.0)
        for callback in self.siblings:
            if isinstance(callback, keras.callbacks.EarlyStopping):
                callback.best = state["early_stopping"]["best"]
                callback.wait = state["early_stopping"]["wait"]
                callback.best_epoch = state["early_stopping"]["best_epoch"]
            elif kt_compat.is_best_epoch_saver(callback):
                callback.best_value = state["best_value"]
        self.resumed_at = state["epoch"]

    def restore_weights(self, path: Path) -> bool:
        """Load the backup's weights; a file that does not load (damaged on disk) is
        discarded with one line, and the trial starts again from its first epoch with the
        weights it was built with."""
        variables = state_variables(self.model)
        built = [variable.numpy() for variable in variables]
        try:
            self.model.load_weights(path)
        except Exception:  # h5py and Keras raise many kinds for a damaged file
            for variable, value in zip(variables, built, strict=True):
                variable.assign(value)
            # Keras and h5py name the fault in their own words; ours is the reason given.
            print(f"epoch backup {records.damaged_file(path, NOT_WEIGHTS, DISCARDED)}", flush=True)
            shutil.rmtree(self.folder, ignore_errors=True)
            return False
        return True

    def on_epoch_end(self, epoch, logs=None):
        self._epochs.append(epoch)
        for key, value in (logs or {}).items():
            self._history.setdefault(key, []).append(_plain(value))
        self.folder.mkdir(parents=True, exist_ok=True)
        weights = f"epoch-{epoch + 1}{WEIGHTS_SUFFIX}"
        partial = swap.scratch_name(self.folder / weights, swap.TEMP, WEIGHTS_SUFFIX)
        try:
            self.model.save_weights(partial, overwrite=True)
            os.chmod(partial, swap.file_mode())
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise records.disk_full_or(exc, partial) from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, self.folder / weights)
        self.seconds = self._seconds_before + time.monotonic() - self._began
        state = {
            "values": self.values,
            "epoch": epoch + 1,
            "weights": weights,
            "stopped": bool(self.model.stop_training),
            "epochs": self._epochs,
            "history": self._history,
            "early_stopping": {},
            "best_value": None,
            "seconds": round(self.seconds, 3),
        }
        for callback in self.siblings:
            if isinstance(callback, keras.callbacks.EarlyStopping):
                state["early_stopping"] = {
                    "best": _plain(callback.best),
                    "wait": int(callback.wait),
                    "best_epoch": int(callback.best_epoch),
                }
            elif kt_compat.is_best_epoch_saver(callback):
                state["best_value"] = _plain(callback.best_value)
        records.atomic_write_json(self.folder / STATE_FILE, state)
        for old in self.folder.glob("epoch-*.weights.h5"):
            if old.name != weights:
                old.unlink(missing_ok=True)

    def on_train_end(self, logs=None):
        if self.resumed_at is None:
            return
        # Keras keeps the epoch to start from on the model: a later fit of the same model (a
        # release's clean epochs) would otherwise start there too.
        self.model._initial_epoch = None
        # The History that fit() returns saw only the epochs after the restore; KerasTuner
        # scores the trial (and the record keeps its curves) from the whole of it.
        history = self.model.history
        history.history = {key: list(values) for key, values in self._history.items()}
        history.epoch = list(self._epochs)
