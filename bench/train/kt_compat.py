"""KerasTuner's private internals, touched in this module only and changed only by install().

The suite extends KerasTuner through its public hooks (tuner subclasses, HyperModel.fit,
run_trial, on_trial_end, pre_create_trial). What those do not reach lives here, written for
the KerasTuner versions in KNOWN_VERSIONS:
- its JSON writer (oracle.json, trial.json, tuner0.json), replaced by an atomic one;
- the distributed oracle client's one-hour timeout, shortened;
- its DEBUG flag, which prints every failed trial's traceback: off but under --debug
  (show_trial_tracebacks), since the record keeps it;
- the tuner's best-epoch checkpoint file and its SaveBestEpoch callback;
- the oracle's random draw (to make a fresh run's first trial the space's defaults, and for
  the ASHA oracle's new configurations), its values hash (a configuration is the same at any
  rung), its trials and start order (to forget a trial whose creation a kill cut short), its
  queue of trials to run again and its state file (to end as recorded a trial that finished
  before a kill cut KerasTuner's own end of it short), and Hyperband's schedule size;
- the chief's gRPC service, asked once by a worker that has not reached it yet;
- the tuner's private _build_and_fit_model, the one place fit()'s callbacks can be chosen per
  trial.

Importing this module (or any bench module) changes nothing in KerasTuner; every entry point
that runs KerasTuner calls install() first.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from bench.core import records
from bench.errors import UnsupportedKerasTuner

KNOWN_VERSIONS = ((1, 4, 7), (1, 5, 0))  # from the first, up to but not including the second
# KerasTuner's workers wait an hour for an unreachable chief; ours give up after this on one
# they reached and lost (one never reached: bench.search.distributed.CHIEF_WAIT_S).
RPC_TIMEOUT_S = 120
# KerasTuner's names for the outcome of a trial (keras_tuner.engine.trial.TrialStatus).
COMPLETED, FAILED = "COMPLETED", "FAILED"
# Where KerasTuner keeps a trial's best-epoch weights (Tuner._get_checkpoint_fname).
CHECKPOINT_FILE = "checkpoint.weights.h5"
TRIAL_DIR_PREFIX = "trial_"
_tracebacks = False
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_installed = False


def check_version(version: str) -> None:
    """Raise UnsupportedKerasTuner unless `version` is one this module was written for."""
    match = _VERSION.match(version or "")
    number = tuple(int(part) for part in match.groups()) if match else None
    first, past = KNOWN_VERSIONS
    if number is None or not first <= number < past:
        known = f">={'.'.join(map(str, first))},<{'.'.join(map(str, past))}"
        raise UnsupportedKerasTuner(
            f"KerasTuner {version} is not supported: bench/kt_compat.py knows keras-tuner{known}; "
            f"install that (pip install -c constraints.txt -e .)"
        )


def show_trial_tracebacks(shown: bool) -> None:
    """Whether KerasTuner prints each failed trial's traceback as it fails (`--debug`); by
    default the traceback stays in the trial's record and the terminal gets one line."""
    global _tracebacks
    _tracebacks = shown
    if _installed:
        from keras_tuner.src import config as kt_config

        kt_config.DEBUG = shown


def install() -> None:
    """Make KerasTuner safe to kill at any moment and quick to give up on a lost chief.

    Idempotent; raises UnsupportedKerasTuner for a KerasTuner this module does not know.
    """
    global _installed
    if _installed:
        return
    import keras_tuner
    from keras_tuner.src import utils
    from keras_tuner.src.distribute import oracle_client

    check_version(keras_tuner.__version__)
    # KerasTuner writes its state files in place; a kill in mid-write would leave a run that
    # cannot resume.
    utils.save_json = atomic_save_json
    oracle_client.TIMEOUT = RPC_TIMEOUT_S
    _installed = True
    show_trial_tracebacks(_tracebacks)


def atomic_save_json(path, obj) -> str:
    """KerasTuner's save_json, written atomically (records.atomic_write_text)."""
    text = json.dumps(obj)
    records.atomic_write_text(path, text)
    return text


def trial_checkpoint(project_dir: str | os.PathLike, trial_id: str) -> Path:
    """The best-epoch weights KerasTuner keeps for a trial of the project in project_dir."""
    return Path(project_dir) / f"{TRIAL_DIR_PREFIX}{trial_id}" / CHECKPOINT_FILE


def checkpoint_of(tuner, trial_id: str) -> str:
    """The best-epoch checkpoint file of a trial, as the tuner itself names it."""
    return tuner._get_checkpoint_fname(trial_id)


def is_best_epoch_saver(callback) -> bool:
    """Whether callback is the SaveBestEpoch KerasTuner adds to every trial's fit()."""
    from keras_tuner.src.engine import tuner_utils

    return isinstance(callback, tuner_utils.SaveBestEpoch)


class FitCallbacksHook:
    """Mixed in front of a KerasTuner tuner: fit_callbacks(trial, callbacks) chooses the
    callbacks of each trial's fit(), its best-epoch checkpoint among them."""

    def fit_callbacks(self, trial, callbacks: list) -> list:
        return callbacks

    def _build_and_fit_model(self, trial, *args, **kwargs):
        kwargs["callbacks"] = self.fit_callbacks(trial, kwargs.get("callbacks", []))
        return super()._build_and_fit_model(trial, *args, **kwargs)


def holds_trials(oracle) -> bool:
    """Whether this oracle draws trials itself (False for a worker's client of the chief)."""
    return hasattr(oracle, "_random_values")


def forget_uncommitted_trials(oracle) -> None:
    """Forget a trial whose creation a kill cut short.

    KerasTuner's create_trial writes the new trial's trial.json, then oracle.json, whose
    start_order names it. reload() finds trials by their files, so a process killed between
    the two writes comes back with a trial that its oracle never started: it counts towards
    max_trials, so the run ends a trial short, and no worker ever runs it. Without it the
    oracle is where oracle.json says it was, and the next trial is drawn again under that id.
    """
    lost = [trial_id for trial_id in oracle.trials if trial_id not in oracle.start_order]
    for trial_id in lost:
        del oracle.trials[trial_id]


def reload_oracle(tuner) -> None:
    """Load the oracle's saved state where the tuner did not.

    KerasTuner reloads a project only when the tuner's own file (tuner0.json) exists, and it
    first writes that file when the first trial ends; a process stopped after the first
    trial's record came back with an empty oracle, which drew and trained that trial again.
    """
    oracle = tuner.oracle
    if not oracle.trials and os.path.isfile(oracle._get_oracle_fname()):
        oracle.reload()


def awaiting_rerun(oracle) -> list[str]:
    """The trials the oracle hands out again before any new one: on reload, KerasTuner sends
    every trial its state lists as ongoing there, however far it got."""
    return list(oracle._retry_queue)


def end_as_recorded(
    oracle, trial_id: str, status: str, metrics: dict, step: int, message: str | None = None
) -> None:
    """End a trial the oracle would run again with the outcome its record holds (status
    COMPLETED with the best epoch's metrics, or FAILED with its error), through the oracle's
    own update_trial and end_trial, so that every tuner (its scores, brackets and rungs)
    sees it finished."""
    oracle._retry_queue[:] = [queued for queued in oracle._retry_queue if queued != trial_id]
    trial = oracle.trials[trial_id]
    if trial_id in oracle.end_order:  # ended and saved; only the tuner's next save was cut
        oracle.save()
        return
    if status == COMPLETED and not trial.metrics.exists(oracle.objective.name):
        oracle.update_trial(trial_id, metrics, step=step)
    trial.status, trial.message = status, message
    verbose, oracle.verbose = oracle.verbose, 0  # its display knows only trials it began
    try:
        oracle.end_trial(trial)
    finally:
        oracle.verbose = verbose


def ask_chief(address: str, timeout: float) -> str | None:
    """Ask whatever listens at HOST:PORT for its search space, as a worker's first call to a
    KerasTuner chief would, without waiting for a connection: None when it answered, else
    the gRPC status of the failure (UNAVAILABLE: no connection; UNIMPLEMENTED: a gRPC server
    without KerasTuner's oracle service)."""
    import grpc
    from keras_tuner.src import protos

    with grpc.insecure_channel(address) as channel:
        stub = protos.get_service_grpc().OracleStub(channel)
        try:
            stub.GetSpace(protos.get_service().GetSpaceRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            return exc.code().name
    return None


def defaults_first(oracle, then: list[dict] = ()) -> None:
    """Make a fresh run's first draws the space's defaults, its author's best guess, then each
    configuration of `then` (the warm start), before the oracle's random draws.

    KerasTuner's oracles draw every trial at random; a space whose defaults are a known-good
    recipe (cnn_plus) then gives a strong best-so-far from the first trial on. The draws are
    counted from the oracle's trials, so a resumed run goes on where it was.
    """
    draw = oracle._random_values

    def values():
        drawn = sum(1 for trial in oracle.trials.values() if not continues(trial))
        queue = [space_values(oracle.hyperparameters, wanted) for wanted in [{}, *then]]
        queue = [v for i, v in enumerate(queue) if v not in queue[:i]]  # each one once
        return queue[drawn] if drawn < len(queue) else draw()

    oracle._random_values = values


# Values of trials that go on with an earlier trial's configuration, which no draw made.
CONTINUATION_KEYS = ("tuner/trial_id", "tuner/promoted_from")


def continues(trial) -> bool:
    """Whether a trial goes on with an earlier trial's configuration (Hyperband, ASHA)."""
    return any(key in trial.hyperparameters.values for key in CONTINUATION_KEYS)


def space_values(hyperparameters, wanted: dict) -> dict:
    """The space's active values: `wanted`'s where it has one the space allows, else each
    hyperparameter's default (conditions see the values chosen so far). Wanted values of
    names the space has not met yet stay: a conditional hyperparameter (AdamW's decay) is
    only known once a trial built with its condition, and takes the value then."""

    def choose(hp):
        value = wanted.get(hp.name, hp.default)
        return value if _allowed(hp, value) else hp.default

    chosen = choose_values(hyperparameters, choose)
    known = {hp.name for hp in hyperparameters.space}
    unmet = {
        k: v
        for k, v in wanted.items()
        if k not in known and not k.startswith(records.TUNER_STATE_PREFIX)
    }
    return {**chosen.values, **unmet}


def choose_values(hyperparameters, choose):
    """KerasTuner hyperparameters holding choose(hp) for each hyperparameter of the space that
    is active, walking it in order so that conditions see the values chosen so far."""
    import keras_tuner as kt

    chosen = kt.HyperParameters()
    for hp in hyperparameters.space:
        chosen.merge([hp])
        if chosen.is_active(hp):
            chosen.values[hp.name] = choose(hp)
    return chosen


def _allowed(hp, value) -> bool:
    """Whether the space's hyperparameter hp can take value (an earlier run's space may
    have differed)."""
    from keras_tuner.engine import hyperparameters as kinds

    if isinstance(hp, kinds.Choice):
        return value in hp.values
    if isinstance(hp, (kinds.Int, kinds.Float)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and hp.min_value <= value <= hp.max_value
    if isinstance(hp, kinds.Boolean):
        return isinstance(value, bool)
    return value == hp.default  # Fixed


def draw_values(oracle) -> dict | None:
    """A new configuration from the oracle's random draw (the defaults first, once
    defaults_first is installed); None when the space has no new one left."""
    return oracle._random_values()


class TunerStateHashing:
    """Mixed in front of a KerasTuner oracle whose trials carry "tuner/..." bookkeeping: a
    configuration is the same whatever rung or budget it ran at, so that a random draw never
    repeats one (as KerasTuner's Hyperband oracle does for its own keys)."""

    def _compute_values_hash(self, values):
        plain = {k: v for k, v in values.items() if not k.startswith(records.TUNER_STATE_PREFIX)}
        return super()._compute_values_hash(plain)


def hyperband_schedule(oracle) -> int:
    """How many trials Hyperband's oracle will run over all its brackets and iterations."""
    per_iteration = sum(
        oracle._get_size(bracket, round_num)
        for bracket in range(oracle._get_num_brackets())
        for round_num in range(oracle._get_num_rounds(bracket))
    )
    return per_iteration * int(oracle.hyperband_iterations)
