"""How a run goes: a stock KerasTuner tuner over a space, its run folder, data, lock and end."""

from __future__ import annotations

import gc
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import keras
import keras_tuner as kt

from bench.core import data, environment, lock, records, space_source
from bench.core.budget import Budget, BudgetSpent
from bench.core.config import (
    DEFAULT_ASHA_TRIALS,
    DEFAULT_MAX_TRIALS,
    ORACLE_SEED_OFFSET,
    SearchConfig,
)
from bench.core.records import utc_now
from bench.errors import ConfigError, SearchError, one_line
from bench.search import asha, confirm, distributed, rung_plan
from bench.search.progress import Progress
from bench.search.recorder import (
    OBJECTIVE,
    BudgetCallback,
    ProcessLimit,
    RecordingTuner,
    StopSearch,
    TrialRecorder,
    finished_record,
    recorded_outcome,
)
from bench.train import checkpoint, fitting, kt_compat, pipeline, spaces
from search_spaces import hypermodel

WARM_START_KEY = "warm_start_configs"  # in config.json: what the run tries after the defaults
WARM_START_CONFIGS = 3
TUNER_CLASSES = {
    "random": kt.RandomSearch,
    "grid": kt.GridSearch,
    "bayesian": kt.BayesianOptimization,
    "hyperband": kt.Hyperband,
    "asha": asha.ASHA,
}

# Keras re-traces its predict function for every new model; TensorFlow's warning about it
# would otherwise interleave with the progress lines once per trial.
logging.getLogger("tensorflow").setLevel(logging.ERROR)


def make_tuner(config: SearchConfig, recorder: TrialRecorder | None = None, warm: list[dict] = ()):
    """A KerasTuner tuner of the configured kind over the configured space; its first draws
    are the space's defaults, then the hyperparameters of each warm-start entry."""
    base = TUNER_CLASSES[config.tuner]
    common = dict(
        hypermodel=hypermodel(config.space),
        objective=kt.Objective(OBJECTIVE, direction="max"),
        seed=config.seed + ORACLE_SEED_OFFSET,
        directory=str(config.run_dir),
        project_name=records.TUNER_PROJECT,
        overwrite=False,  # never wipe a run: an existing project is resumed
        max_model_size=config.max_params,  # a bigger model fails as "Oversized model"
        max_consecutive_failed_trials=config.max_failures,
    )
    if config.tuner in ("hyperband", "asha"):
        common.update(max_epochs=config.max_epochs, factor=config.hyperband_factor)
    if config.tuner == "asha":
        common.update(rungs=rung_plan.plan_of(config).rungs, promotion=config.promotion)
    if config.tuner != "hyperband":
        common["max_trials"] = planned_trials(config)
    cls = type(f"Recording{base.__name__}", (RecordingTuner, base), {})
    tuner = cls(**common)
    tuner.recorder = recorder
    if kt_compat.holds_trials(tuner.oracle):  # a worker holds only a client of the chief's
        kt_compat.reload_oracle(tuner)
        kt_compat.forget_uncommitted_trials(tuner.oracle)
        tuner.ended_as_recorded = end_recorded_trials(tuner.oracle, config)
        kt_compat.defaults_first(tuner.oracle, [entry["hyperparameters"] for entry in warm])
    if config.tuner == "hyperband":
        tuner.trial_limit = config.max_trials
    if config.tuner == "asha":
        tuner.cheapest_epochs = common["rungs"][0]
    if recorder is not None and distributed.worker_name():
        distributed.time_oracle_calls(tuner.oracle, recorder.oracle_clock)
    return tuner


def end_recorded_trials(oracle, config: SearchConfig) -> list[str]:
    """End, as their records say, the trials the oracle would run again although they
    finished: a stop that came after a trial's record was written and before KerasTuner saved
    its end leaves the oracle's state calling it ongoing, and KerasTuner reruns every ongoing
    trial on reload. Their epoch backups go too. Returns their ids."""
    ended = []
    for trial_id in kt_compat.awaiting_rerun(oracle):
        record = finished_record(config.run_dir, trial_id)
        if record is None:
            continue
        try:
            kt_compat.end_as_recorded(oracle, trial_id, **recorded_outcome(record))
        except RuntimeError as exc:  # the oracle's count of failures in a row
            if "consecutive failures" not in str(exc):
                raise
            raise SearchError(too_many_failures(config)) from exc
        checkpoint.discard(config.run_dir, trial_id)
        ended.append(trial_id)
    return ended


def planned_trials(config: SearchConfig) -> int:
    if config.tuner == "hyperband":
        oracle = kt.oracles.HyperbandOracle(
            objective=kt.Objective(OBJECTIVE, direction="max"),
            max_epochs=config.max_epochs,
            factor=config.hyperband_factor,
        )
        schedule = kt_compat.hyperband_schedule(oracle)
        return min(schedule, config.max_trials) if config.max_trials else schedule
    default = DEFAULT_ASHA_TRIALS if config.tuner == "asha" else DEFAULT_MAX_TRIALS
    return config.max_trials or default


TUNER_REMEDY = (
    "the tuner cannot resume the run: start it afresh with --fresh (the old folder is kept "
    "aside), or use another --run"
)


def prepare_run_dir(config: SearchConfig, splits: data.Splits) -> bool:
    """Write config.json for a new run, or check that an existing run has the same config
    (its space file unchanged too); note the process's environment either way.

    Returns True when an existing run is being resumed.
    """
    path = config.run_dir / records.CONFIG_FILE
    wanted = {
        **config.to_json(),
        "dataset_sha256": splits.sha256,
        space_source.SOURCE_KEY: spaces.source_of(config.space),
    }
    resumed = path.exists()
    if not resumed and (work := work_done(config.run_dir)):
        raise ConfigError(
            f"{path} is missing, yet the run folder holds {', '.join(work)}: its settings are "
            "unknown; --fresh moves the folder aside and starts afresh, or use another --run"
        )
    if resumed:
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(
                f"{path} is unreadable ({one_line(exc)}); --fresh moves the folder aside and "
                "starts afresh, or use another --run"
            ) from exc
        # A setting added after the run began is missing from its file: it ran at the default.
        defaults = {f.name: f.default for f in fields(SearchConfig)}
        changed = [
            key
            for key in (*config.identity(), "dataset_sha256")
            if old.get(key, defaults.get(key)) != wanted[key]
        ]
        if changed:
            raise ConfigError(
                f"run {config.run!r} exists with a different {', '.join(changed)}; "
                "use another --run name"
            )
        space_source.check_unchanged(old)
        check_tuner_state(config.run_dir)
    else:
        earlier = earlier_records(config)
        warm = warm_start_configs(config, earlier) if config.warm_start else []
        created = {**wanted, "created_at": utc_now(), WARM_START_KEY: warm}
        if plan := rung_plan.new_plan(config, splits):
            created[rung_plan.PLAN_KEY] = plan.to_json()
            if reach := rung_plan.reach_words(plan, config.max_epochs, earlier):
                created[records.BUDGET_REACH_KEY] = reach
        records.atomic_write_json(path, created)
    records.note_environment(config.run_dir, environment.environment(), utc_now())
    return resumed


def check_tuner_state(run_dir: Path) -> None:
    """DamagedFile for a file of KerasTuner's state that would not load on resume (it would
    fail with a bare parse error, naming no file)."""
    for path in sorted((run_dir / records.TUNER_PROJECT).rglob("*.json")):
        records.read_json(path, TUNER_REMEDY)


def work_done(run_dir: Path) -> list[str]:
    """What a run folder holds of a search's work: its trials, tuner project, epoch backups
    and confirmation retrainings, by folder name."""
    held = (records.TRIALS_DIR, records.TUNER_PROJECT, checkpoint.RESUME_DIR, records.CONFIRM_DIR)
    return [f"{name}/" for name in held if (run_dir / name).exists()]


def earlier_records(config: SearchConfig) -> list[dict]:
    """The completed trials of earlier runs of the same space (a space file as it is now) and
    dataset under config.results, each with its run. Runs moved aside by --fresh and
    unreadable ones are left out."""
    sha256 = spaces.source_of(config.space).get("sha256")  # None for a registered space
    wanted = (config.space, config.dataset, config.custom_data, sha256)
    found = []
    for run_dir in sorted(Path(config.results).iterdir()):
        if run_dir == config.run_dir or ".old-" in run_dir.name:
            continue
        try:
            other = records.load_config(run_dir)
            same = (
                other.get("space"),
                other.get("dataset", data.DEFAULT_DATASET),
                bool(other.get("custom_data")),
                space_source.recorded(other).get("sha256"),
            )
            if same == wanted:
                found += records.completed(records.load_records(run_dir))
        except (OSError, ValueError, KeyError):
            continue  # not a run, or one the report would name as damaged
    return found


def warm_start_configs(config: SearchConfig, earlier: list[dict] | None = None) -> list[dict]:
    """The best configurations by validation accuracy of earlier runs (earlier_records, or
    those given): distinct, at most WARM_START_CONFIGS, each with its run, trial and
    validation accuracy; the test set plays no part."""
    found = earlier_records(config) if earlier is None else earlier
    chosen: dict[str, dict] = {}
    for record in records.ranked_by_validation(found):
        key = json.dumps(record["hyperparameters"], sort_keys=True)
        if key not in chosen and len(chosen) < WARM_START_CONFIGS:
            fields_kept = ("run", "trial_id", "val_accuracy", "hyperparameters")
            chosen[key] = {name: record[name] for name in fields_kept}
    return list(chosen.values())


def warm_start_of(config: SearchConfig) -> list[dict]:
    """The warm start chosen when the run was created (none for runs from before)."""
    return records.load_config(config.run_dir).get(WARM_START_KEY) or []


def load_splits(config: SearchConfig) -> data.Splits:
    """The data a run trains and evaluates on, exactly as its config says."""
    return data.load(
        config.data_dir,
        config.val_size,
        config.train_limit,
        config.test_limit,
        config.dataset,
        config.custom_data,
    )


def check_writable(results: Path) -> None:
    """Raise ConfigError unless run folders can be made under results, DiskFull when the
    disk that holds it has no room left."""
    records.ensure_room(results, 0)
    try:
        results.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=results):
            pass
    except OSError as exc:
        raise ConfigError(f"results directory {results} is not writable ({exc.strerror})") from None


def move_aside(run_dir: Path) -> Path | None:
    """Rename an existing run folder to <run>.old-<time>, under its lock; never delete it."""
    if not run_dir.exists():
        return None
    aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    with lock.run_lock(run_dir):
        run_dir.rename(aside)
    return aside


def run_search(
    config: SearchConfig,
    stream=None,
    fresh: bool = False,
    then: Callable[[Budget], None] | None = None,
) -> bool:
    """Run (or resume) the search described by config.

    Returns True when the run is over, False when this process stopped at its
    --trials-per-process share and a fresh process should resume it.

    Progress goes to stream (default: sys.stdout at call time). With fresh, an existing
    run folder is first moved aside (see move_aside). When the run is over and confirmed,
    `then` runs with the budget's remainder under the same lock (the night's release).
    """
    kt_compat.install()
    stream = stream or sys.stdout
    splits = open_run(config, fresh, stream)
    with lock.run_lock(config.run_dir):
        resumed = prepare_run_dir(config, splits)
        budget = Budget(config.budget)
        over = _search(config, splits, resumed, stream, budget)
        if over:
            confirm_night(config, splits, budget, stream)
            if then is not None:
                then(budget)
        return over


def confirm_night(config: SearchConfig, splits: data.Splits, budget: Budget, stream) -> None:
    """With --confirm-seeds: retrain the night's top configurations and the defaults with
    fresh seeds, as far as the budget goes; the caller holds the run's lock. asha's are all
    retrained at its top rung's epochs, whatever rung they reached."""
    if not config.confirm_seeds:
        return
    trials = records.load_records(config.run_dir)
    full = rung_plan.plan_of(config).full_epochs
    chosen = confirm.night_choice(trials, config.confirm_top, full)
    if chosen:
        saved = records.load_config(config.run_dir)
        epochs = confirm.retrain_epochs(config.tuner, full)
        plan = confirm.Plan(chosen, config.confirm_seeds, epochs, budget.fits)
        confirm.confirm_trials(config.run_dir, saved, plan, splits, stream)


def apply_runtime(config: SearchConfig) -> None:
    """The process-wide TensorFlow settings a run asks for: threads and precision."""
    fitting.apply_runtime(config.threads, config.mixed_precision)


def open_run(config: SearchConfig, fresh: bool, stream) -> data.Splits:
    """Check everything a run needs before it starts; move the old run aside when fresh."""
    apply_runtime(config)
    splits = load_splits(config)
    spaces.check_builds(config.space)  # before the run folder is made
    check_writable(Path(config.results))
    if fresh and (aside := move_aside(config.run_dir)):
        print(f"moved the old run to {aside}", file=stream, flush=True)
    return splits


def serve_chief(config: SearchConfig) -> None:
    """The chief of a distributed run: serve KerasTuner's oracle until its workers are done.

    The run folder (config.json, lock) belongs to the process that started this one.
    """
    kt_compat.install()
    apply_runtime(config)
    # KerasTuner's chief blocks in its gRPC server.
    make_tuner(config, warm=warm_start_of(config)).search()


def run_worker(config: SearchConfig, stream=None) -> bool:
    """A worker of a distributed run: trials from the chief, records into the shared folder."""
    kt_compat.install()
    stream = stream or sys.stdout
    apply_runtime(config)
    if not (config.run_dir / records.CONFIG_FILE).is_file():
        raise ConfigError(f"run {config.run!r} has no {records.CONFIG_FILE} under {config.results}")
    distributed.reach_chief(*distributed.parse_address(distributed.chief_from_environment()))
    splits = load_splits(config)
    prepare_run_dir(config, splits)  # the same data and settings as the chief's, or refused
    try:
        return _search(config, splits, True, stream, Budget(config.budget))
    except distributed.grpc_error() as exc:
        # The chief's oracle counts failures in a row and raises in the call that ends one.
        if "consecutive failures" in str(getattr(exc, "details", lambda: "")()):
            raise SearchError(too_many_failures(config)) from exc
        raise SearchError(distributed.lost_chief_message(exc)) from exc


def _search(
    config: SearchConfig, splits: data.Splits, resumed: bool, stream, budget: Budget
) -> bool:
    keras.utils.set_random_seed(config.seed)
    progress = Progress(total=None, stream=stream, budget=budget)
    progress.resume_from(records.load_records(config.run_dir))
    plan = rung_plan.plan_of(config)
    recorder = TrialRecorder(config, splits, progress, plan.full_epochs)
    tuner = make_tuner(config, recorder, warm_start_of(config))
    progress.total = planned_trials(config)
    rungs = f", rungs of {rung_plan.describe(plan)}" if config.tuner == "asha" else ""
    print(
        f"{'resuming' if resumed else 'starting'} run {config.run}: space {config.space}, "
        f"tuner {config.tuner}, {progress.total} trials planned ({progress.done} finished){rungs}, "
        f"data {splits.sizes()} from {splits.source}",
        file=stream,
        flush=True,
    )
    if reach := records.load_config(config.run_dir).get(records.BUDGET_REACH_KEY):
        print(f"budget: {reach}", file=stream, flush=True)
    if ended := getattr(tuner, "ended_as_recorded", None):
        print(
            f"finished before the last stop, as their records say: trial {', '.join(ended)}",
            file=stream,
            flush=True,
        )
    # What exists by now (modules, data, the tuner) lives as long as the process: keeping it
    # out of the garbage collector's scans makes the collections KerasTuner runs before every
    # build several times cheaper.
    gc.freeze()
    try:
        tuner.search(
            pipeline.training_set(
                splits.train_images, splits.y_train, config.batch_size, config.seed
            ),
            validation_data=fitting.evaluation_set(splits.val_images, splits.y_val),
            epochs=config.max_epochs,
            shuffle=False,  # the training set reshuffles itself every epoch
            callbacks=fit_callbacks(config, progress.budget),
            verbose=config.verbose,
        )
        _say_why_it_ended(config, progress, stream)
    except ProcessLimit as exc:
        print(f"paused: {exc}", file=stream, flush=True)
        return False
    except (StopSearch, BudgetSpent) as exc:
        reason = str(exc) or "time budget: stopped the trial in progress"
        print(f"stopped: {reason}", file=stream, flush=True)
    except RuntimeError as exc:
        if "consecutive failures" not in str(exc):
            raise
        raise SearchError(too_many_failures(config)) from exc
    return True


def fit_callbacks(config: SearchConfig, budget: Budget) -> list:
    """The callbacks of every trial's fit(): early stopping, NaN, budget, TensorBoard."""
    callbacks = [
        keras.callbacks.EarlyStopping(monitor=OBJECTIVE, mode="max", patience=config.patience),
        keras.callbacks.TerminateOnNaN(),
        BudgetCallback(budget),
    ]
    if config.tensorboard:
        # KerasTuner gives each trial its own folder below this one and adds TensorBoard's
        # HParams callback with the trial's hyperparameters.
        logs = config.run_dir / records.TENSORBOARD_DIR
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(logs)))
    return callbacks


def _say_why_it_ended(config: SearchConfig, progress: Progress, stream) -> None:
    """The line for a search that KerasTuner ended before its trial limit."""
    if distributed.worker_name():
        progress.refresh(records.load_records(config.run_dir))
        reason = (
            f"the chief has no more trials for this worker "
            f"({progress.done} of {progress.total} finished so far)"
        )
    elif progress.done < progress.total:
        # A space with few (or no) free hyperparameters runs out of new configurations.
        reason = (
            f"the tuner has no new configuration to try "
            f"({progress.done} of {progress.total} trials)"
        )
    else:
        return
    print(f"stopped: {reason}", file=stream, flush=True)


def too_many_failures(config: SearchConfig) -> str:
    return (
        f"stopped: {config.max_failures} trials in a row failed; "
        f"see the report's failures section or {records.trials_dir(config.run_dir)}"
    )
