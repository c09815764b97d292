"""Asynchronous successive halving (ASHA) as a KerasTuner oracle and tuner: `--tuner asha`.

ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020) trains
configurations at rungs of growing budget. Whenever a worker asks for a trial it gets, from
the highest rung down, a configuration that is in the top 1/factor of the finished trials of
its rung and not yet promoted, trained at the next rung's budget; failing that, a new
configuration at the lowest rung. No rung waits for another to fill, so workers never idle.

Built the way KerasTuner's Hyperband is: the rung data travel as "tuner/..." values of each
trial, the oracle's state (rungs, promotions) is saved with it, and the chief/worker mode
serves it unchanged. A promoted configuration either starts from its parent's best-epoch
weights, as KerasTuner's Hyperband does, and trains only the epochs between the two rungs under
a fresh schedule, a warm restart (promotion "continue"), or trains afresh for its rung's epochs
(promotion "retrain"). Either way its learning-rate schedule spans what it trains (a space's
fit stretches its schedule over `epochs`) and every trial of a rung is judged after the same
budget. The first configuration, the space's defaults, is promoted at every rung whatever its
rank: a night always trains it at full fidelity.
"""

from __future__ import annotations

import math

import keras_tuner as kt

from bench.core import records
from bench.core.config import PROMOTIONS
from bench.train import fitting, kt_compat

EPOCHS = "tuner/epochs"  # the budget of this trial (as KerasTuner's Hyperband names it)
INITIAL_EPOCH = "tuner/initial_epoch"
RUNG = "tuner/round"  # 0 for the lowest rung
PROMOTED_FROM = "tuner/promoted_from"  # the trial of the rung below
LINEAGE = "tuner/lineage"  # the trial that first tried this configuration, at rung 0
WARM_FROM = "tuner/trial_id"  # "continue": the trial whose weights this one starts from
TRAINED = "tuner/trained_epochs"  # "continue": the epochs those weights have had
RETRAIN, CONTINUE = PROMOTIONS
MIN_EPOCHS = 1
DEFAULT_FACTOR = 3
RUNNING, IDLE, STOPPED = "RUNNING", "IDLE", "STOPPED"


def rung_epochs(max_epochs: int, factor: int, min_epochs: float = MIN_EPOCHS) -> list[float]:
    """Epochs of each rung, lowest first: max_epochs, then each divided by factor while that
    is at least min_epochs; rounded up to whole epochs down to one, exact (to 4 digits) below
    one. 15 epochs with factor 3 make [1, 2, 5, 15]; with min_epochs 1/3, [1/3, 1, 2, 5, 15]."""
    if max_epochs < 1 or factor < 2:
        raise ValueError(f"rungs need max_epochs >= 1 and factor >= 2, not {max_epochs}, {factor}")
    rungs: list[float] = [max_epochs]
    while True:
        above = rungs[-1]
        lower = math.ceil(above / factor) if above > 1 else round(above / factor, 4)
        if lower < round(min_epochs, 4) or lower >= rungs[-1]:
            return rungs[::-1]
        rungs.append(lower)


class ASHAOracle(kt_compat.TunerStateHashing, kt.Oracle):
    """Promotes the top 1/factor of each rung to the next, asynchronously.

    Args:
        max_epochs: the top rung's epochs (full fidelity).
        factor: the reduction factor between rungs (eta in the paper).
        rungs: the epochs of each rung, lowest first (bench.search.rung_plan's plan); None:
            max_epochs divided down by the factor.
        promotion: "continue" (a promoted configuration goes on from its parent's weights for
            the epochs its rung adds) or "retrain" (it trains afresh for all of them).
        Other arguments as KerasTuner's Oracle; max_trials counts promotions too.
    """

    def __init__(
        self,
        objective=None,
        max_epochs=15,
        factor=DEFAULT_FACTOR,
        rungs=None,
        promotion=CONTINUE,
        **kwargs,
    ):
        super().__init__(objective=objective, **kwargs)
        if promotion not in PROMOTIONS:
            raise ValueError(f"promotion must be one of {PROMOTIONS}, not {promotion!r}")
        self.factor = factor
        self.rungs = list(rungs) if rungs else rung_epochs(max_epochs, factor)
        self.promotion = promotion
        self.promoted: list[str] = []  # trials whose configuration went on to the next rung
        self.favoured: str | None = None  # the lineage of the first configuration
        # The most epochs a trial may take now (this process's time budget), None: any. A
        # promotion above it waits, so the end of a budget goes to the trials that still fit.
        self.ceiling: float | None = None

    def populate_space(self, trial_id):
        """The next trial: a promotion if one is due, else a new configuration at rung 0."""
        parent = self.next_promotion()
        if parent is not None:
            self.promoted.append(parent.trial_id)
            return {"status": RUNNING, "values": self.promotion_values(parent)}
        values = kt_compat.draw_values(self)
        if values is None:  # the space has no new configuration left
            return {"status": IDLE if self.ongoing_trials else STOPPED}
        if self.favoured is None:
            self.favoured = trial_id
        state = {EPOCHS: self.rungs[0], INITIAL_EPOCH: 0, RUNG: 0, LINEAGE: trial_id}
        return {"status": RUNNING, "values": {**values, **state}}

    def next_promotion(self):
        """The finished trial to promote now, from the highest rung down, or None."""
        for rung in reversed(range(len(self.rungs) - 1)):
            if self.ceiling is not None and self.cost(rung + 1) > self.ceiling:
                continue
            done = [t for t in self.trials.values() if rung_of(t) == rung and _scored(t)]
            waiting = [t for t in done if t.trial_id not in self.promoted]
            favoured = [t for t in waiting if _values(t).get(LINEAGE) == self.favoured]
            if favoured:
                return favoured[0]
            best_first = sorted(done, key=self._rank_key)
            top = {t.trial_id for t in best_first[: len(done) // self.factor]}
            chosen = [t for t in best_first if t.trial_id in top and t in waiting]
            if chosen:
                return chosen[0]
        return None

    def cost(self, rung: int) -> float:
        """The epochs a trial of this rung trains: all of them, or when promotions continue,
        those the rung adds to the one below."""
        below = self.rungs[rung - 1] if rung and self.promotion == CONTINUE else 0
        return round(self.rungs[rung] - below, 4)

    def _rank_key(self, trial):
        sign = -1.0 if self.objective.direction == "max" else 1.0
        return (sign * trial.score, trial.trial_id)

    def promotion_values(self, parent) -> dict:
        """The parent's configuration at the next rung's budget, trained afresh or from the
        parent's weights."""
        prefix = records.TUNER_STATE_PREFIX
        values = {k: v for k, v in _values(parent).items() if not k.startswith(prefix)}
        rung = rung_of(parent) + 1
        values[EPOCHS], values[INITIAL_EPOCH], values[RUNG] = self.rungs[rung], 0, rung
        values[PROMOTED_FROM] = parent.trial_id
        values[LINEAGE] = _values(parent).get(LINEAGE, parent.trial_id)
        if self.promotion == CONTINUE:
            values.update({WARM_FROM: parent.trial_id, TRAINED: self.rungs[rung - 1]})
        return values

    def get_state(self):
        state = super().get_state()
        state.update(
            factor=self.factor,
            rungs=self.rungs,
            promotion=self.promotion,
            promoted=self.promoted,
            favoured=self.favoured,
        )
        return state

    def set_state(self, state):
        super().set_state(state)
        self.factor = state["factor"]
        self.rungs = state["rungs"]  # frozen at the run's creation: a resume keeps them
        self.promotion = state.get("promotion", RETRAIN)  # runs from before it retrained
        self.promoted = state["promoted"]
        self.favoured = state["favoured"]


def _values(trial) -> dict:
    return trial.hyperparameters.values


def rung_of(trial) -> int:
    return int(_values(trial).get(RUNG, 0))


def trial_epochs(values: dict) -> float | None:
    """The epochs a trial with these values trains (its rung's, less those its starting
    weights already had), None for a trial without rung data."""
    if EPOCHS not in values:
        return None
    return round(values[EPOCHS] - values.get(TRAINED, 0), 4)


def _scored(trial) -> bool:
    return trial.status == "COMPLETED" and trial.score is not None and not math.isnan(trial.score)


class ASHA(kt.Tuner):
    """A KerasTuner tuner driven by ASHAOracle: each trial trains for its rung's epochs (less
    those of the weights it continues from); less than one epoch is one epoch of that share of
    the training batches."""

    def __init__(
        self,
        hypermodel=None,
        objective=None,
        max_epochs=15,
        factor=DEFAULT_FACTOR,
        rungs=None,
        promotion=CONTINUE,
        max_trials=None,
        seed=None,
        max_consecutive_failed_trials=3,
        **kwargs,
    ):
        oracle = ASHAOracle(
            objective,
            max_epochs=max_epochs,
            factor=factor,
            rungs=rungs,
            promotion=promotion,
            max_trials=max_trials,
            seed=seed,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)

    def run_trial(self, trial, *fit_args, **fit_kwargs):
        values = _values(trial)
        epochs = trial_epochs(values)
        if epochs is not None:
            fit_kwargs["epochs"] = max(round(epochs), 1)
            fit_kwargs["initial_epoch"] = values.get(INITIAL_EPOCH, 0)
            if epochs < 1:
                train = fit_args[0] if fit_args else fit_kwargs.get("x")
                fit_kwargs["steps_per_epoch"] = share_of_batches(train, epochs)
        return super().run_trial(trial, *fit_args, **fit_kwargs)

    def _build_hypermodel(self, hp):
        model = super()._build_hypermodel(hp)
        parent = hp.values.get(WARM_FROM)
        if parent is not None:  # the best epoch's weights; the optimizer starts afresh
            fitting.load_checkpoint(model, kt_compat.checkpoint_of(self, parent))
        return model


def share_of_batches(dataset, share: float) -> int | None:
    """Batches in `share` of an epoch of a tf.data set (at least one); None when its length is
    unknown (the whole epoch then)."""
    batches = int(dataset.cardinality()) if hasattr(dataset, "cardinality") else -1
    return max(round(share * batches), 1) if batches > 0 else None
