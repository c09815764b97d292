"""A KerasTuner search space driven by Optuna (TPE sampler, Hyperband pruner): the tool people
would pick instead, for `make bench-search` only.

Optuna samples define-by-run; a KerasTuner space declares its hyperparameters as it builds,
some only under a condition (AdamW's weight decay). full_space() builds the space with each
value of each choice until no new hyperparameter appears, and suggest() walks that space in
order, asking Optuna for each hyperparameter that is active under the values chosen so far.
The sampler and the pruner are pinned (TPE_SETTINGS, HYPERBAND_SETTINGS), not Optuna's
defaults of the day, and each run records them beside its events.
"""

from __future__ import annotations

import math
import warnings

import keras
import keras_tuner as kt
import numpy as np

from bench.train import kt_compat
from search_spaces import hypermodel

MAX_DISCOVERY_BUILDS = 200  # a space whose conditions never settle is a bug in the space
GOOD_SHARE = 0.1  # of the finished trials, those that form TPE's good density l(x)...
MAX_GOOD = 25  # ...never more than these
FLAT_WEIGHTS = 25  # the newest trials, weighted alike in TPE's densities


def tpe_gamma(finished: int) -> int:
    """How many of the finished trials form TPE's good density l(x): the best GOOD_SHARE of
    them rounded up, at most MAX_GOOD (the rule Optuna 5.0.0 applies to one objective)."""
    return min(math.ceil(GOOD_SHARE * finished), MAX_GOOD)


def tpe_weights(count: int) -> np.ndarray:
    """The weight of each of `count` trials, oldest first, in TPE's densities: 1 for the
    newest FLAT_WEIGHTS, and for the older ones a ramp from 1/count (the oldest) up to 1, so
    that the first random draws fade as the study goes on (Bergstra, Yamins and Cox 2013;
    Optuna 5.0.0's rule)."""
    if count <= FLAT_WEIGHTS:
        return np.ones(count)
    ramp = np.linspace(1.0 / count, 1.0, num=count - FLAT_WEIGHTS)
    return np.concatenate([ramp, np.ones(FLAT_WEIGHTS)])


# Optuna's TPE sampler with every argument that shapes its draws written out (the seed apart:
# the run's search seed), as Optuna 5.0.0 ran it for one objective, the release of every
# published `make bench-search` row: a later release's defaults do not change the sampler
# compared (5.0 itself turned multivariate and the constant liar on). TPE's bandwidth formula
# is code, not an argument: the release in optimizer.json says which ran. consider_prior is
# not passed: Optuna ignores it since 4.3 (the prior is always on).
TPE_SETTINGS = {
    # Random configurations before TPE models anything (the enqueued defaults count).
    "n_startup_trials": 10,
    # Candidates drawn from l(x) for each suggestion; the one best by l(x) / g(x) is taken.
    "n_ei_candidates": 24,
    # One joint density over the hyperparameters that every trial has (as BOHB, Falkner et
    # al. 2018), not one per hyperparameter.
    "multivariate": True,
    # No decomposition of the conditional space: a hyperparameter that only some trials have
    # (weight_decay, dense_dropout) is drawn by independent TPE.
    "group": False,
    # Running trials count as bad ones. One trial at a time, none runs but the one being
    # sampled, which TPE leaves out: no effect here, written out all the same.
    "constant_liar": True,
    # The Parzen estimators' bandwidths: the prior's weight against the trials, a floor on
    # each kernel's width, and a range's ends not counted as neighbours.
    "prior_weight": 1.0,
    "consider_magic_clip": True,
    "consider_endpoints": False,
    "gamma": tpe_gamma,
    "weights": tpe_weights,
    # A log line when a hyperparameter falls back to independent TPE: off, as it was.
    "warn_independent_sampling": False,
    # No constraints on the configurations.
    "constraints_func": None,
}
# Optuna's Hyperband pruner (its max_resource: the run's --max-epochs).
HYPERBAND_SETTINGS = {
    "min_resource": 1,  # epochs of its lowest rung
    "reduction_factor": 3,  # as asha's factor (bench.search.asha.DEFAULT_FACTOR)
    "bootstrap_count": 0,  # a rung judges a trial from its first report on
}


def tpe_sampler(seed: int):
    """Optuna's TPE sampler with TPE_SETTINGS and this seed."""
    import optuna

    with warnings.catch_warnings():
        # Six of these arguments are deprecated since Optuna 4.9 (to go in 6.0, which
        # pyproject keeps out) and still take effect; a release without them fails here
        # (TypeError) rather than sampling otherwise unnoticed.
        warnings.simplefilter("ignore", FutureWarning)
        return optuna.samplers.TPESampler(seed=seed, **TPE_SETTINGS)


def hyperband_pruner(max_epochs: int):
    """Optuna's Hyperband pruner with HYPERBAND_SETTINGS, its top rung max_epochs."""
    import optuna

    return optuna.pruners.HyperbandPruner(max_resource=max_epochs, **HYPERBAND_SETTINGS)


def optimizer_settings(max_epochs: int) -> dict:
    """What a run's optimizer.json records: the release, the sampler's and pruner's settings."""
    import optuna

    return {
        "optimizer": "optuna",
        "version": optuna.__version__,
        "sampler": {"name": "TPESampler", **TPE_SETTINGS},
        "pruner": {"name": "HyperbandPruner", "max_resource": max_epochs, **HYPERBAND_SETTINGS},
    }


def full_space(space: str) -> kt.HyperParameters:
    """Every hyperparameter the space can declare, with its conditions."""
    model = hypermodel(space)
    known = kt.HyperParameters()
    model.build(known)
    tried: set[tuple] = set()
    for _ in range(MAX_DISCOVERY_BUILDS):
        todo = [
            (hp.name, v) for hp in known.space for v in _choices(hp) if (hp.name, v) not in tried
        ]
        if not todo:
            return known
        name, value = todo[0]
        tried.add((name, value))
        probe = kt.HyperParameters()
        probe.values = {name: value}
        keras.backend.clear_session()
        model.build(probe)
        known.merge([hp for hp in probe.space if hp.name not in known])
    raise RuntimeError(f"space {space!r} kept declaring new hyperparameters")


def start_from_defaults(study, space: str) -> dict:
    """Queue the space's defaults as the study's first trial, as the suite's tuners try them
    first (Optuna's enqueue_trial, what its users do with a known-good configuration)."""
    defaults = kt.HyperParameters()
    hypermodel(space).build(defaults)
    keras.backend.clear_session()
    study.enqueue_trial(dict(defaults.values))
    return dict(defaults.values)


def _choices(hp) -> list:
    from keras_tuner.engine import hyperparameters as kinds

    if isinstance(hp, kinds.Choice):
        return list(hp.values)
    if isinstance(hp, kinds.Boolean):
        return [False, True]
    return []


def suggest(trial, space: kt.HyperParameters) -> kt.HyperParameters:
    """KerasTuner hyperparameters whose active values Optuna's trial suggested."""
    return kt_compat.choose_values(space, lambda hp: _suggest_one(trial, hp))


def _suggest_one(trial, hp):
    from keras_tuner.engine import hyperparameters as kinds

    if isinstance(hp, kinds.Choice):
        return trial.suggest_categorical(hp.name, list(hp.values))
    if isinstance(hp, kinds.Boolean):
        return trial.suggest_categorical(hp.name, [False, True])
    log = hp.sampling == "log"
    if isinstance(hp, kinds.Int):
        step = None if log else hp.step
        return trial.suggest_int(hp.name, hp.min_value, hp.max_value, step=step or 1, log=log)
    if isinstance(hp, kinds.Float):
        step = None if log else hp.step
        return trial.suggest_float(hp.name, hp.min_value, hp.max_value, step=step, log=log)
    return hp.default  # Fixed


class PruneByOptuna(keras.callbacks.Callback):
    """Reports each epoch's validation accuracy to Optuna's trial and stops training when its
    pruner says so (pruned stays True)."""

    def __init__(self, trial, monitor: str = "val_accuracy"):
        super().__init__()
        self.trial, self.monitor, self.pruned = trial, monitor, False

    def on_epoch_end(self, epoch, logs=None):
        self.trial.report(float((logs or {})[self.monitor]), step=epoch + 1)
        if self.trial.should_prune():
            self.pruned = True
            self.model.stop_training = True


def run_study(
    run_dir, seed: int, budget_s: float, max_epochs: int, data_limits: dict,
    max_evaluations: int | None = None,
) -> list:  # fmt: skip
    """Optuna's TPE sampler and Hyperband pruner over the benchmark's space and data, for
    budget_s seconds (or max_evaluations trials); every trial (pruned ones too) an event as
    bench.perf.policies reads them, written to run_dir/events.json as it goes, the settings
    to run_dir/optimizer.json."""
    import optuna

    from bench.core.budget import REPORT_MARGIN_S, Budget, BudgetSpent
    from bench.perf import adapter_trials, policies

    kt_compat.install()
    sets = adapter_trials.benchmark_sets(data_limits, seed)
    space, model_space = full_space(policies.SPACE), hypermodel(policies.SPACE)
    # The suite's own search keeps the same margin (for its report): the same training time.
    budget, events = Budget(budget_s, margin=REPORT_MARGIN_S), []
    adapter_trials.write_optimizer(run_dir, optimizer_settings(max_epochs))

    def objective(trial):
        hp = suggest(trial, space)
        prune = PruneByOptuna(trial)
        event = adapter_trials.train(model_space, hp, sets, max_epochs, seed, budget, [prune])
        events.append(event)
        adapter_trials.write_events(run_dir, events)
        if prune.pruned:
            raise optuna.TrialPruned()
        return event["val_accuracy"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=tpe_sampler(seed), pruner=hyperband_pruner(max_epochs)
    )
    start_from_defaults(study, policies.SPACE)
    try:
        timeout = budget_s - REPORT_MARGIN_S
        study.optimize(objective, max_evaluations, timeout=timeout, gc_after_trial=True)
    except BudgetSpent:
        pass  # the trial the budget cut counts for nothing, as in the suite's own search
    adapter_trials.write_events(run_dir, events)
    return events
