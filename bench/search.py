"""How a run goes: a stock KerasTuner tuner, plus test metrics, records and progress per trial."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np

from bench import data, envinfo, records
from bench.config import DEFAULT_MAX_TRIALS, ConfigError, SearchConfig
from search_spaces import get as get_space

OBJECTIVE = "val_accuracy"
EVAL_BATCH_SIZE = 1024
# Keras clips probabilities to [eps, 1 - eps] in its cross-entropy; the test loss does the same.
PROB_EPSILON = 1e-7
TUNER_CLASSES = {
    "random": kt.RandomSearch,
    "grid": kt.GridSearch,
    "bayesian": kt.BayesianOptimization,
    "hyperband": kt.Hyperband,
}
# KerasTuner's oracle treats seed=0 as "no seed" and draws one at random; shifting by one
# keeps every user seed (0 included) distinct and really seeded.
ORACLE_SEED_OFFSET = 1
TUNER_PREFIX = "tuner/"
OPTIMIZER_SLOTS_WARNING = "Skipping variable loading for optimizer"


# Keras re-traces its predict function for every new model; TensorFlow's warning about it
# would otherwise interleave with the progress lines once per trial.
logging.getLogger("tensorflow").setLevel(logging.ERROR)


class SearchError(RuntimeError):
    """The search could not go on; the message says why."""


class StopSearch(Exception):
    """Raised after a trial when the run has reached its trial limit."""


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def test_metrics(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Accuracy and sparse categorical cross-entropy of class probabilities."""
    accuracy = float(np.mean(probs.argmax(axis=1) == labels))
    picked = np.clip(probs[np.arange(len(labels)), labels], PROB_EPSILON, 1 - PROB_EPSILON)
    return accuracy, float(-np.mean(np.log(picked)))


def one_line(exc: BaseException) -> str:
    """The exception's type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def best_epoch_index(history: dict) -> int:
    """0-based epoch of the best validation accuracy (the first one on ties, as KerasTuner)."""
    return int(np.argmax(history[OBJECTIVE]))


@dataclass
class Progress:
    """Counts finished trials and prints one line per trial for people following the run."""

    total: int | None
    stream: object = sys.stdout
    start: float = field(default_factory=time.monotonic)
    done: int = 0
    earlier: int = 0  # trials finished by an earlier process of a resumed run
    best: tuple[float, str] | None = None

    def resume_from(self, existing: list[dict]) -> None:
        for record in existing:
            self._count(record)
        self.earlier = self.done

    def update(self, record: dict) -> None:
        self._count(record)
        print(self.line(record), file=self.stream, flush=True)

    def _count(self, record: dict) -> None:
        self.done += 1
        if record["status"] == records.STATUS_COMPLETED:
            if self.best is None or record["val_accuracy"] > self.best[0]:
                self.best = (record["val_accuracy"], record["trial_id"])

    def line(self, record: dict) -> str:
        elapsed = time.monotonic() - self.start
        of = f"/{self.total}" if self.total else ""
        eta = "?"
        if self.total and self.done > self.earlier:
            per_trial = elapsed / (self.done - self.earlier)
            eta = _hms(per_trial * max(self.total - self.done, 0))
        if record["status"] == records.STATUS_COMPLETED:
            result = f"val {record['val_accuracy']:.4f} test {record['test_accuracy']:.4f}"
        else:
            result = f"FAILED: {record['error']}"
        best = f"best val {self.best[0]:.4f} (trial {self.best[1]})" if self.best else "best -"
        return (
            f"trial {self.done}{of} [{record['trial_id']}] | elapsed {_hms(elapsed)} | "
            f"eta {eta} | {result} | {best}"
        )


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def trial_values(hp) -> dict:
    """A trial's active hyperparameters, and KerasTuner's own "tuner/..." bookkeeping apart."""
    values = hp.values
    hyper = {k: v for k, v in values.items() if not k.startswith(TUNER_PREFIX) and hp.is_active(k)}
    state = {k[len(TUNER_PREFIX) :]: v for k, v in values.items() if k.startswith(TUNER_PREFIX)}
    return {
        "hyperparameters": hyper,
        "tuner_state": state,
        "initial_epoch": int(state.get("initial_epoch", 0)),
    }


class TrialRecorder:
    """Turns each finished KerasTuner trial into a record with test-set metrics."""

    def __init__(self, config: SearchConfig, splits: data.Splits, progress: Progress):
        self.config = config
        self.splits = splits
        self.progress = progress
        self.run_dir = config.run_dir
        self.context = {
            "seed": config.seed,
            "dataset": {"name": "mnist", "sha256": splits.sha256, **splits.sizes()},
            "versions": envinfo.versions(),
            "git_commit": envinfo.git_commit(),
        }

    def base_record(self, trial, started_at: str) -> dict:
        record = dict.fromkeys(records.RECORD_KEYS)
        record.update(
            schema=records.SCHEMA_VERSION,
            run=self.config.run,
            trial_id=trial.trial_id,
            space=self.config.space,
            tuner=self.config.tuner,
            **trial_values(trial.hyperparameters),
            batch_size=self.config.batch_size,
            started_at=started_at,
            history={key: [] for key in records.HISTORY_KEYS},
            **self.context,
        )
        return record

    def run_trial(self, tuner, trial, run, *args, **kwargs):
        """Run one trial through KerasTuner (`run`), then evaluate and record it."""
        keras.utils.set_random_seed(self.config.seed)
        record = self.base_record(trial, utc_now())
        began = time.monotonic()
        try:
            histories = run(trial, *args, **kwargs)
            # Hyperparameters first met while building exist only now.
            record.update(trial_values(trial.hyperparameters))
            record["train_seconds"] = round(time.monotonic() - began, 3)
            self._complete(record, tuner, trial, histories[0].history)
        except Exception as exc:
            record.update(trial_values(trial.hyperparameters))
            self._finish_failed(record, exc, time.monotonic() - began)
            raise
        return histories

    def _complete(self, record: dict, tuner, trial, history: dict) -> None:
        began = time.monotonic()
        with warnings.catch_warnings():
            # The checkpoint holds optimizer slots that a freshly built model has not made yet.
            warnings.filterwarnings("ignore", message=OPTIMIZER_SLOTS_WARNING)
            model = tuner.load_model(trial)  # the best epoch's weights
        probs = model.predict(self.splits.x_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
        test_accuracy, test_loss = test_metrics(probs, self.splits.y_test)
        best = best_epoch_index(history)
        record.update(
            status=records.STATUS_COMPLETED,
            history={key: [float(v) for v in history.get(key, [])] for key in records.HISTORY_KEYS},
            val_accuracy=float(history[OBJECTIVE][best]),
            val_loss=float(history["val_loss"][best]),
            test_accuracy=test_accuracy,
            test_loss=test_loss,
            params=int(model.count_params()),
            epochs_run=len(history[OBJECTIVE]),
            best_epoch=record["initial_epoch"] + best + 1,
            predictions=records.write_predictions(
                self.run_dir, trial.trial_id, self.splits.y_test, probs
            ),
            eval_seconds=round(time.monotonic() - began, 3),
            finished_at=utc_now(),
        )
        records.write_record(self.run_dir, record)
        self.progress.update(record)

    def _finish_failed(self, record: dict, exc: BaseException, seconds: float) -> None:
        record.update(
            status=records.STATUS_FAILED,
            error=one_line(exc),
            traceback="".join(traceback.format_exception(exc)),
            train_seconds=record["train_seconds"] or round(seconds, 3),
            epochs_run=record["epochs_run"] or 0,
            finished_at=utc_now(),
        )
        records.write_record(self.run_dir, record)
        self.progress.update(record)


class _RecordingTuner:
    """Mixed in front of a stock KerasTuner tuner: records each trial, stops at the limit."""

    recorder: TrialRecorder
    trial_limit: int | None = None

    def run_trial(self, trial, *args, **kwargs):
        return self.recorder.run_trial(self, trial, super().run_trial, *args, **kwargs)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self.trial_limit and self.recorder.progress.done >= self.trial_limit:
            raise StopSearch


def hyperband_schedule(oracle) -> int:
    """How many trials Hyperband's oracle will run over all its brackets and iterations."""
    per_iteration = sum(
        oracle._get_size(bracket, round_num)
        for bracket in range(oracle._get_num_brackets())
        for round_num in range(oracle._get_num_rounds(bracket))
    )
    return per_iteration * int(oracle.hyperband_iterations)


def make_tuner(config: SearchConfig, recorder: TrialRecorder | None = None):
    """A stock KerasTuner tuner of the configured kind, over the configured space."""
    base = TUNER_CLASSES[config.tuner]
    common = dict(
        hypermodel=get_space(config.space).build,
        objective=kt.Objective(OBJECTIVE, direction="max"),
        seed=config.seed + ORACLE_SEED_OFFSET,
        directory=str(config.run_dir),
        project_name=records.TUNER_PROJECT,
        overwrite=False,  # never wipe a run: an existing project is resumed
    )
    if config.tuner == "hyperband":
        common.update(max_epochs=config.max_epochs, factor=config.hyperband_factor)
    else:
        common["max_trials"] = config.max_trials or DEFAULT_MAX_TRIALS
    cls = type(f"Recording{base.__name__}", (_RecordingTuner, base), {})
    tuner = cls(**common)
    tuner.recorder = recorder
    if config.tuner == "hyperband":
        tuner.trial_limit = config.max_trials
    return tuner


def planned_trials(config: SearchConfig, tuner) -> int:
    if config.tuner == "hyperband":
        schedule = hyperband_schedule(tuner.oracle)
        return min(schedule, config.max_trials) if config.max_trials else schedule
    return config.max_trials or DEFAULT_MAX_TRIALS


def prepare_run_dir(config: SearchConfig, splits: data.Splits) -> bool:
    """Write config.json for a new run, or check that an existing run has the same config.

    Returns True when an existing run is being resumed.
    """
    path = config.run_dir / records.CONFIG_FILE
    wanted = {**config.to_json(), "dataset_sha256": splits.sha256}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path} is unreadable ({exc}); use another --run") from exc
        changed = [
            key for key in (*config.identity(), "dataset_sha256") if old.get(key) != wanted[key]
        ]
        if changed:
            raise ConfigError(
                f"run {config.run!r} exists with a different {', '.join(changed)}; "
                "use another --run name"
            )
        return True
    records.atomic_write_json(path, {**wanted, "created_at": utc_now()})
    return False


def load_splits(config: SearchConfig) -> data.Splits:
    """The data a run trains and evaluates on, exactly as its config says."""
    return data.load(config.data_dir, config.val_size, config.train_limit, config.test_limit)


def run_search(config: SearchConfig, stream=sys.stdout) -> Path:
    """Run (or resume) the search described by config; returns the run directory."""
    splits = load_splits(config)
    resumed = prepare_run_dir(config, splits)
    keras.utils.set_random_seed(config.seed)
    progress = Progress(total=None, stream=stream)
    progress.resume_from(records.load_records(config.run_dir))
    recorder = TrialRecorder(config, splits, progress)
    tuner = make_tuner(config, recorder)
    progress.total = planned_trials(config, tuner)
    verb = "resuming" if resumed else "starting"
    print(
        f"{verb} run {config.run}: space {config.space}, tuner {config.tuner}, "
        f"{progress.total} trials planned, data {splits.sizes()} from {splits.source}",
        file=stream,
        flush=True,
    )
    callbacks = [
        keras.callbacks.EarlyStopping(monitor=OBJECTIVE, mode="max", patience=config.patience)
    ]
    try:
        tuner.search(
            splits.x_train,
            splits.y_train,
            validation_data=(splits.x_val, splits.y_val),
            epochs=config.max_epochs,
            batch_size=config.batch_size,
            callbacks=callbacks,
            verbose=config.verbose,
        )
    except StopSearch:
        pass
    except RuntimeError as exc:
        if "consecutive failures" in str(exc):
            raise SearchError(
                f"stopped: {tuner.oracle.max_consecutive_failed_trials} trials in a row failed; "
                f"see {records.trials_dir(config.run_dir)} for their errors"
            ) from exc
        raise
    return config.run_dir
