"""Each trial's record with test metrics, its epoch backup and clocks, and the tuner mixin."""

from __future__ import annotations

import os
import socket
import time
import traceback

import keras
import keras_tuner as kt
import numpy as np

from bench.core import data, environment, faults, records
from bench.core.budget import STOP, Budget, BudgetSpent
from bench.core.config import SearchConfig
from bench.core.records import utc_now
from bench.errors import DamagedFile, one_line
from bench.search import asha, confirm, distributed, rung_plan
from bench.search.progress import Progress
from bench.train import checkpoint, fitting, grad_registry, kt_compat, served
from bench.train.epoch_lines import EpochLines
from search_spaces import describe

OBJECTIVE = "val_accuracy"
TUNER_PREFIX = records.TUNER_STATE_PREFIX


class StopSearch(Exception):
    """Raised between trials when the run has reached its trial limit or its time budget."""


class ProcessLimit(StopSearch):
    """This process has run its share of trials (--trials-per-process); the run goes on."""


def resident_mb() -> float | None:
    """This process's resident memory in MiB (Linux), else None."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


class BudgetCallback(keras.callbacks.Callback):
    """Stops training the moment only the budget's report margin is left, or a stop signal
    came."""

    def __init__(self, budget: Budget):
        super().__init__()
        self.budget = budget

    def on_train_batch_end(self, batch, logs=None):
        STOP.check()  # a signal whose exception garbage collection swallowed
        self.budget.check()


def best_epoch_index(history: dict) -> int:
    """0-based epoch of the best validation accuracy (the first one on ties, as KerasTuner)."""
    return int(np.argmax(history[OBJECTIVE]))


def check_finite(history: dict) -> None:
    """Fail the trial (KerasTuner's FailedTrialError) when its loss became NaN or infinite."""
    for epoch, loss in enumerate(history.get("loss", []), start=1):
        if not np.isfinite(loss):
            raise kt.errors.FailedTrialError(f"loss became {loss} in epoch {epoch}")


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


def finished_record(run_dir, trial_id: str) -> dict | None:
    """The trial's record when it is complete (it parses and follows the schema), else None:
    a trial with one is finished, whatever KerasTuner's own files say."""
    path = records.record_path(run_dir, trial_id)
    if not path.is_file():
        return None
    try:
        record = records.read_json(path, records.TRIAL_REMEDY)
        records.validate_record(record)
    except (DamagedFile, ValueError):
        return None
    return record


def recorded_outcome(record: dict) -> dict:
    """What KerasTuner would have been told of a recorded trial: end_as_recorded's status,
    metrics of the best epoch and its step, and message."""
    if record["status"] != records.STATUS_COMPLETED:
        return dict(status=kt_compat.FAILED, metrics={}, step=0, message=record["error"])
    history = record.get("history") or {}
    best = best_epoch_index(history) if history.get(OBJECTIVE) else 0
    metrics = {key: values[best] for key, values in history.items() if len(values) > best}
    metrics[OBJECTIVE] = record[OBJECTIVE]
    return dict(status=kt_compat.COMPLETED, metrics=metrics, step=best, message=None)


def kept_first(run_dir, trial_id: str, stream) -> bool:
    """Whether the trial has a completed record already, which stays: one line naming it
    says so, and that a second result is not kept."""
    kept = finished_record(run_dir, trial_id)
    if kept is None or kept["status"] != records.STATUS_COMPLETED:
        return False
    print(
        f"trial {trial_id} is finished already ({records.record_path(run_dir, trial_id)}: val "
        f"{kept['val_accuracy']:.4f}, {kept['finished_at']}); that record is kept and this "
        "second result is not",
        file=stream,
        flush=True,
    )
    return True


def write_once(run_dir, record: dict, stream) -> bool:
    """Write a trial's record unless a completed one is there already (kept_first). Returns
    whether the record was written."""
    if kept_first(run_dir, record["trial_id"], stream):
        return False
    records.write_record(run_dir, record)
    return True


class FitClock(keras.callbacks.Callback):
    """Times model.fit from its first to its last callback: the bare training of a trial."""

    def __init__(self):
        super().__init__()
        self.seconds: float | None = None
        self._began = 0.0

    def on_train_begin(self, logs=None):
        self._began = time.perf_counter()

    def on_train_end(self, logs=None):
        self.seconds = round(time.perf_counter() - self._began, 3)


class TrialRecorder:
    """Turns each finished KerasTuner trial into a record with test-set metrics."""

    def __init__(
        self,
        config: SearchConfig,
        splits: data.Splits,
        progress: Progress,
        full_epochs: float | None = None,
    ):
        self.config = config
        self.full_epochs = full_epochs or config.max_epochs  # a full-fidelity trial's epochs
        self.splits = splits
        self.progress = progress
        self.run_dir = config.run_dir
        self.backup: checkpoint.EpochBackup | None = None  # the running trial's
        self.fit_clock = FitClock()  # the running trial's
        self.oracle_clock = distributed.Stopwatch()  # time spent waiting on the chief
        self.test_set = fitting.evaluation_set(splits.test_images, splits.y_test)
        self.context = {
            "seed": config.seed,
            "dataset": {
                "name": self.config.dataset,
                "sha256": splits.sha256,
                **splits.sizes(),
                **({"custom": True} if config.custom_data else {}),
            },
            "versions": environment.versions(),
            "git_commit": environment.git_commit(),
        }
        budget = progress.budget
        if budget.prior is None:  # asha's calibration, until this process's trials tell
            budget.prior = rung_plan.plan_of(config).calibration()
        self.keep_reserve()  # a resumed run's choice so far, before its first trial here

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

    def night_reserve(self) -> confirm.Reserve:
        """What to leave at the end for the stages after the search: the retrainings of
        --confirm-seeds that the night's choice so far (its top trials and the defaults) still
        needs and the release (--release), each as long as the run's own trials and
        confirmation retrainings say (confirm.night_reserve)."""
        config = self.config
        if not (config.confirm_seeds or config.release):
            return confirm.Reserve()
        saved = {**config.to_json(), rung_plan.PLAN_KEY: rung_plan.plan_of(config).to_json()}
        trials = records.load_records(self.run_dir)
        return confirm.night_reserve(self.run_dir, trials, saved, self.full_epochs)

    def keep_reserve(self) -> None:
        """Give the budget the night's reserve, as it stands now."""
        reserve = self.night_reserve()
        self.progress.budget.keep(reserve.seconds, reserve.words())

    def epoch_lines(self, trial) -> EpochLines:
        """The running trial's line per epoch, under the trial lines of the progress."""
        return EpochLines(f"  trial {trial.trial_id}", self.progress.stream)

    def epoch_backup(self, trial, callbacks) -> checkpoint.EpochBackup:
        """The callback that saves this trial after each epoch and resumes it after a cut."""
        folder = checkpoint.backup_dir(self.run_dir, trial.trial_id)
        self.backup = checkpoint.EpochBackup(folder, trial.hyperparameters.values, callbacks)
        return self.backup

    def run_trial(self, tuner, trial, run, *args, **kwargs):
        """Run one trial through KerasTuner (`run`), then evaluate and record it."""
        keras.utils.set_random_seed(self.config.seed)
        self.backup = None
        self.fit_clock = FitClock()
        record = self.base_record(trial, utc_now())
        began = time.monotonic()
        try:
            histories = run(trial, *args, **kwargs)
            # Hyperparameters first met while building exist only now.
            record.update(trial_values(trial.hyperparameters))
            record["train_seconds"] = round(time.monotonic() - began, 3)
            check_finite(histories[0].history)
            self._complete(record, tuner, trial, histories[0].history)
        except Exception as exc:
            record.update(trial_values(trial.hyperparameters))
            self._finish_failed(record, exc, time.monotonic() - began)
            raise
        finally:
            self.progress.budget.note_trial(
                time.monotonic() - began, confirm.trained_epochs(record)
            )
            self.keep_reserve()
        return histories

    def _complete(self, record: dict, tuner, trial, history: dict) -> None:
        if self.kept_first(record):
            return
        began = time.monotonic()
        model = self.best_epoch_model(tuner, trial)
        y_test = self.splits.y_test
        probs, test_accuracy, test_loss = fitting.evaluate(model, self.test_set, y_test)
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
            best_epoch=record["initial_epoch"] + _trained_epochs(trial) + best + 1,
            predictions=records.write_predictions(
                self.run_dir, trial.trial_id, self.splits.y_test, probs
            ),
            eval_seconds=round(time.monotonic() - began, 3),
        )
        record["inference"] = self.inference_cost(model)
        self._save(record)

    def inference_cost(self, model) -> dict:
        """What the trial's model costs to serve (bench.train.served.cost), and whether other
        processes of the run were training meanwhile (--workers). A measurement that fails
        leaves its reason and the trial as it finished."""
        try:
            plain = served.served_model(self.config.space, model)
            cost = served.cost(plain)
        except Exception as exc:
            return {"error": one_line(exc)}
        return {**cost, "beside_training": bool(self.config.workers)}

    def best_epoch_model(self, tuner, trial):
        """The trial's model with its best epoch's weights (KerasTuner's checkpoint).

        The model fit() trained takes them back; building it anew (tuner.load_model) would
        cost a clear_session, a garbage collection and a build per trial.
        """
        trained = self.backup.model if self.backup else None
        if trained is None:
            with fitting.checkpoint_loading():
                return tuner.load_model(trial)
        return fitting.load_checkpoint(trained, kt_compat.checkpoint_of(tuner, trial.trial_id))

    def _save(self, record: dict) -> None:
        """Stamp the end of a trial, write its record and report it on the progress line."""
        record.update(
            architecture=describe(self.config.space, record["hyperparameters"]),
            finished_at=utc_now(),
            process={
                "pid": os.getpid(),
                "rss_mb": resident_mb(),
                "host": socket.gethostname(),
                "worker": distributed.worker_name(),
                "oracle_seconds": self.oracle_clock.take(),
            },
            resumed_at_epoch=self.backup.resumed_at if self.backup else None,
            fit_seconds=self.fit_clock.seconds,
        )
        if not write_once(self.run_dir, record, self.progress.stream):
            return
        faults.point("record.written")
        checkpoint.discard(self.run_dir, record["trial_id"])
        self.progress.update(record)

    def kept_first(self, record: dict) -> bool:
        """Whether the trial has a completed record already, which stays with its predictions:
        a finished trial is never recorded twice."""
        if not kept_first(self.run_dir, record["trial_id"], self.progress.stream):
            return False
        checkpoint.discard(self.run_dir, record["trial_id"])
        return True

    def recorded_result(self, record: dict):
        """What run_trial gives KerasTuner for a trial recorded before a stop, which the chief
        handed out again (it never learnt that the trial ended): the recorded metrics, or
        the recorded failure; nothing is trained."""
        print(
            f"trial {record['trial_id']} finished before the last stop: its record stands",
            file=self.progress.stream,
            flush=True,
        )
        checkpoint.discard(self.run_dir, record["trial_id"])
        outcome = recorded_outcome(record)
        if outcome["status"] == kt_compat.FAILED:
            raise kt.errors.FailedTrialError(outcome["message"])
        return outcome["metrics"]

    def _finish_failed(self, record: dict, exc: BaseException, seconds: float) -> None:
        if self.kept_first(record):
            return
        record.update(
            status=records.STATUS_FAILED,
            error=one_line(exc),
            traceback="".join(traceback.format_exception(exc)),
            train_seconds=record["train_seconds"] or round(seconds, 3),
            epochs_run=record["epochs_run"] or 0,
        )
        self._save(record)


def _trained_epochs(trial) -> int:
    """Whole epochs the trial's starting weights had (asha continuing a promotion), so that
    its best epoch counts from the configuration's first."""
    return round(trial.hyperparameters.values.get(asha.TRAINED, 0))


class RecordingTuner(kt_compat.FitCallbacksHook):
    """Mixed in front of a stock KerasTuner tuner: records each trial, stops at the limit."""

    recorder: TrialRecorder
    trial_limit: int | None = None
    # With rungs of known epochs (asha): the lowest rung's; the budget then judges each trial
    # by its own epochs, not by the longest trial so far.
    cheapest_epochs: float | None = None

    def run_trial(self, trial, *args, **kwargs):
        recorded = finished_record(self.recorder.run_dir, trial.trial_id)
        if recorded is not None:
            return self.recorder.recorded_result(recorded)
        epochs = asha.trial_epochs(trial.hyperparameters.values) if self.cheapest_epochs else None
        budget = self.recorder.progress.budget
        if epochs and not budget.fits_another_trial(epochs):
            # Not recorded: the oracle keeps it open and a resume runs it.
            raise BudgetSpent(
                f"time budget: {budget.left_words()}; too little for trial "
                f"{trial.trial_id} ({epochs:g} epochs, about {budget.estimate(epochs):.0f} s)"
            )
        with grad_registry.released_traces():  # else each trial's graphs stay for good
            return self.recorder.run_trial(self, trial, super().run_trial, *args, **kwargs)

    def fit_callbacks(self, trial, callbacks: list) -> list:
        # The backup goes last: it restores the others' state after their own resets. The
        # clock goes first, so that it times all of fit's work, the other callbacks' included;
        # the disk's room is checked before the best-epoch checkpoint and the backup write.
        backup = self.recorder.epoch_backup(trial, callbacks)
        lines = [] if self.recorder.config.verbose else [self.recorder.epoch_lines(trial)]
        room = checkpoint.DiskRoom(self.recorder.run_dir)  # ahead of every writer
        return [self.recorder.fit_clock, room, *callbacks, *lines, backup]

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        progress = self.recorder.progress
        if distributed.worker_name():  # other workers finish trials of this run too
            progress.refresh(records.load_records(self.recorder.run_dir))
        if self.trial_limit and progress.done >= self.trial_limit:
            raise StopSearch(f"reached {self.trial_limit} trials")
        share = self.recorder.config.trials_per_process
        if share and progress.ran >= share:
            raise ProcessLimit(f"{share} trials in this process; continuing in a fresh one")

    def pre_create_trial(self):
        super().pre_create_trial()
        STOP.check()
        budget = self.recorder.progress.budget
        if self.cheapest_epochs and isinstance(self.oracle, asha.ASHAOracle):
            costs = [self.oracle.cost(rung) for rung in range(len(self.oracle.rungs))]
            fit_costs = [e for e in costs if budget.fits_another_trial(e)]
            self.oracle.ceiling = max(fit_costs, default=0.0)
        if not budget.fits_another_trial(self.cheapest_epochs):
            raise StopSearch(budget.no_room_words(self.cheapest_epochs))
