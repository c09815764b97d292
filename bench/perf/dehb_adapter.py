"""DEHB over a KerasTuner space, its fidelity a trial's epochs: the modern multi-fidelity peer
of the suite's tuners, for `make bench-search` only.

DEHB (Awad, Mallik and Hutter, "DEHB: Evolutionary Hyperband for Scalable, Robust and
Efficient Hyperparameter Optimization", IJCAI 2021) runs Hyperband's brackets, but evolves the
configurations of each fidelity by differential evolution, mutating from the population of
the fidelity below, instead of drawing them at random. A fidelity here is a number of epochs:
DEHB's max_epochs / eta**k down to MIN_EPOCHS, each rounded up to whole epochs as asha's rungs
above one epoch are, and every evaluation trains afresh for its epochs. The benchmark's 6
epochs with eta 3 give fidelities of 2 and 6 epochs, asha's rungs in the published setting.

The space maps onto a flat ConfigSpace, one dimension per hyperparameter and no conditions
(config_space): differential evolution mutates a vector of every dimension in any case, and
a configuration takes only the values its own conditions make active (hyperparameters), so
a dimension that is inactive rides along unused. DEHB's tell takes only what its ask handed
out, so the space's defaults, which every policy tries first, are trained at full fidelity
before DEHB starts, outside it: the run's first event, not a member of DEHB's populations.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras_tuner as kt
import numpy as np

from bench.perf.optuna_adapter import full_space
from bench.train import kt_compat
from search_spaces import hypermodel

MIN_EPOCHS = 1  # DEHB's lowest fidelity: max_epochs must be more
FIDELITY_DIGITS = 4  # max_epochs / eta**k, rounded before it is rounded up to whole epochs
# A Float's grid of steps to these significant digits: 0.3, not KerasTuner's 0.1 * 3.
GRID_DIGITS = 12
# DEHB's settings, written out rather than left to the package's defaults (which are these,
# its paper's), so that the benchmark compares one optimizer from one release to the next.
# DE's max_age and async_strategy are left out: DEHB's ask and tell never use them.
DEHB_SETTINGS = {
    "eta": 3,  # Hyperband's factor between fidelities, as asha's and Optuna's pruner's
    "mutation_factor": 0.5,  # DE's F: the scale of the difference vector
    "crossover_prob": 0.5,  # DE's CR: the share of dimensions the mutant hands on
    "strategy": "rand1_bin",  # the mutant from three random parents; binomial crossover
    "boundary_fix_type": "random",  # a mutant's dimension outside [0, 1] drawn anew
    "min_clip": None,  # Hyperband's number of configurations per rung not clipped
    "max_clip": None,
}
DEHB_LOG_DIR = "dehb"  # in the run's folder: DEHB's own log


def config_space(space: kt.HyperParameters, seed: int):
    """The KerasTuner space as a ConfigSpace, one dimension per hyperparameter with its
    range and default, and no conditions; seeded, as DEHB draws its first populations from
    it. Int and Float become uniform (log where they sample so) or, on a grid of steps, an
    ordinal of the grid's values; an ordered Choice an ordinal, another Choice and a Boolean a
    categorical; a Fixed a constant."""
    import ConfigSpace as cs

    mapped = cs.ConfigurationSpace(seed=seed)
    mapped.add([_dimension(hp) for hp in space.space])
    return mapped


def _dimension(hp):
    import ConfigSpace as cs
    from keras_tuner.engine import hyperparameters as kinds

    if isinstance(hp, kinds.Boolean):
        return cs.CategoricalHyperparameter(hp.name, [False, True], default_value=hp.default)
    if isinstance(hp, kinds.Choice):
        kind = cs.OrdinalHyperparameter if hp.ordered else cs.CategoricalHyperparameter
        return kind(hp.name, list(hp.values), default_value=hp.default)
    if isinstance(hp, kinds.Fixed):
        return cs.Constant(hp.name, hp.value)
    integer = isinstance(hp, kinds.Int)
    if hp.step is not None and not (integer and hp.step == 1):
        grid = [v if integer else float(f"{v:.{GRID_DIGITS}g}") for v in hp.values]
        nearest = min(grid, key=lambda value: abs(value - hp.default))
        return cs.OrdinalHyperparameter(hp.name, grid, default_value=nearest)
    kind = cs.UniformIntegerHyperparameter if integer else cs.UniformFloatHyperparameter
    log = hp.sampling == "log"
    return kind(hp.name, hp.min_value, hp.max_value, log=log, default_value=hp.default)


def hyperparameters(config, space: kt.HyperParameters) -> kt.HyperParameters:
    """KerasTuner hyperparameters of a DEHB configuration (a mapping of names to values): the
    space's active ones, each of its own Python type."""
    return kt_compat.choose_values(space, lambda hp: _value(hp, config[hp.name]))


def _value(hp, value):
    from keras_tuner.engine import hyperparameters as kinds

    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(hp, kinds.Boolean):
        return bool(value)
    if isinstance(hp, kinds.Int):
        return int(value)
    if isinstance(hp, kinds.Float):
        return float(value)
    return value


def fidelity_epochs(fidelity: float) -> int:
    """The whole epochs that train a DEHB fidelity: rounded up."""
    return math.ceil(round(float(fidelity), FIDELITY_DIGITS))


def make_dehb(mapped, max_epochs: int, seed: int, log_dir: Path, eta: int | None = None):
    """DEHB over the ConfigSpace `mapped` with DEHB_SETTINGS (eta, when given, instead of
    theirs), fidelities MIN_EPOCHS to max_epochs, one worker and no saved state."""
    from dehb import DEHB

    if max_epochs <= MIN_EPOCHS:
        raise ValueError(f"DEHB needs --max-epochs above {MIN_EPOCHS}, not {max_epochs}")
    settings = {**DEHB_SETTINGS, **({} if eta is None else {"eta": eta})}
    return DEHB(
        cs=mapped, min_fidelity=MIN_EPOCHS, max_fidelity=max_epochs, seed=seed, n_workers=1,
        output_path=str(log_dir), save_freq="end", **settings,
    )  # fmt: skip


def optimizer_settings(dehb) -> dict:
    """What a run's optimizer.json records: the release, the settings, the fidelities."""
    from importlib.metadata import version

    return {
        "optimizer": "dehb",
        "version": version("dehb"),
        **DEHB_SETTINGS,
        "eta": dehb.eta,
        "fidelities": [float(f) for f in dehb.fidelities],
        "epochs": [fidelity_epochs(f) for f in dehb.fidelities],
    }


def run_study(
    run_dir, seed: int, budget_s: float, max_epochs: int, data_limits: dict,
    space: str | None = None, eta: int | None = None, max_evaluations: int | None = None,
) -> list:  # fmt: skip
    """DEHB over `space` (default the benchmark's) on the benchmark's data for budget_s
    seconds (or max_evaluations, the defaults' included), after the space's defaults at
    full fidelity; every evaluation an event as bench.perf.policies reads them, written to
    run_dir/events.json as it goes, the settings to run_dir/optimizer.json."""
    from bench.core.budget import REPORT_MARGIN_S, Budget, BudgetSpent
    from bench.perf import adapter_trials, policies

    kt_compat.install()
    run_dir, space = Path(run_dir), space or policies.SPACE
    sets = adapter_trials.benchmark_sets(data_limits, seed)
    known, model_space = full_space(space), hypermodel(space)
    dehb = make_dehb(config_space(known, seed), max_epochs, seed, run_dir / DEHB_LOG_DIR, eta)
    adapter_trials.write_optimizer(run_dir, optimizer_settings(dehb))
    # The suite's own search keeps the same margin (for its report): the same training time.
    budget, events = Budget(budget_s, margin=REPORT_MARGIN_S), []

    def evaluate(hp, epochs: int) -> float:
        started = time.monotonic()
        events.append(adapter_trials.train(model_space, hp, sets, epochs, seed, budget))
        adapter_trials.write_events(run_dir, events)
        return time.monotonic() - started

    try:
        evaluate(kt_compat.choose_values(known, lambda hp: hp.default), max_epochs)
        while max_evaluations is None or len(events) < max_evaluations:
            budget.check()
            job = dehb.ask()
            seconds = evaluate(
                hyperparameters(job["config"], known), fidelity_epochs(job["fidelity"])
            )
            dehb.tell(job, {"fitness": 1.0 - events[-1]["val_accuracy"], "cost": seconds})
    except BudgetSpent:
        pass  # the evaluation the budget cut counts for nothing, as in the suite's own search
    adapter_trials.write_events(run_dir, events)
    return events
