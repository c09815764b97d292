"""How long asha's trials are: rungs sized from the run's time budget on this machine.

A night has one budget and machines differ threefold in speed, so a fixed full fidelity
(`--max-epochs`) either wastes a fast machine or leaves a slow one no time to screen and to
confirm. When a run with `--tuner asha` and `--budget` is created, one short fit of the space's
defaults times an epoch here (`calibrate`), and `plan` picks the top rung: the most epochs, up
to `--max-epochs`, with which the full-fidelity trials (the defaults and the top ones to
confirm), their confirmation retrainings and the release (`--release`) take at most FULL_SHARE
of the budget, so the rest is left to screening; a budget that cannot hold the release even
then is planned without it (`Plan.release_left_out`). The rungs below divide it by the
factor down to a fraction of an epoch: a trial of 1/3 epoch trains one epoch of a third of the
training batches, its learning-rate schedule annealed within them. No rung trains fewer than
MIN_SCREEN_STEPS optimizer steps: on a small training set the lower rungs go, since a screen
that short ranks nothing. The plan is frozen in config.json, so every resume, child process and
worker sees the same rungs.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import keras

from bench.core import data, records
from bench.core.budget import Cost
from bench.core.config import SearchConfig
from bench.search import asha
from bench.train import fitting, pipeline

PLAN_KEY = "fidelity"  # in config.json
FULL_SHARE = 2 / 3  # at most this much of a budget for full-fidelity trials and confirmation
WARM_STEPS = 8  # the first fit traces the model: timed apart, as a trial's fixed cost
TIMED_STEPS = 40
TIMED_EVAL_IMAGES = 4096
# The shortest training a rung may have. The space's defaults trained for 13 or 26 steps (a
# third of an epoch, or one, of 10,000 images) scored chance on validation (0.106), 0.76 at
# 50 steps, 0.95-0.96 at 100, 0.98 at 200 (batches of 128, two seeds each).
MIN_SCREEN_STEPS = 100


@dataclass(frozen=True)
class Plan:
    """The rungs of a run (epochs, lowest first) and the timings they were sized from."""

    rungs: list[float]
    epoch_seconds: float | None = None  # one epoch of the defaults, its validation included
    trial_seconds: float | None = None  # a trial's fixed cost: tracing and the test evaluation
    # The budget could not hold the release (--release) beside the full-fidelity trials and
    # the confirmation, even at one epoch: the night skips it.
    release_left_out: bool = False

    def calibration(self) -> Cost | None:
        """The cost model of a trial of the defaults, as timed when the run was created."""
        if self.epoch_seconds is None or self.trial_seconds is None:
            return None
        return Cost(self.trial_seconds, self.epoch_seconds)

    @property
    def full_epochs(self) -> float:
        return self.rungs[-1]

    def to_json(self) -> dict:
        return asdict(self)


def ladder(top: int, factor: int, steps_per_epoch: int | None = None) -> list[float]:
    """Rungs from `top` epochs divided by the factor, down to 1/factor of an epoch (below
    one epoch exactly, rounded to 4 digits): 9 epochs with factor 3 make [1/3, 1, 3, 9].
    Given the batches in an epoch, the rungs below `top` of fewer than MIN_SCREEN_STEPS go."""
    rungs = asha.rung_epochs(top, factor, min_epochs=1 / factor)
    if steps_per_epoch is None:
        return rungs
    return [r for r in rungs[:-1] if r * steps_per_epoch >= MIN_SCREEN_STEPS] + rungs[-1:]


def trial_cost(epochs: float, epoch_seconds: float, trial_seconds: float) -> float:
    return trial_seconds + epochs * epoch_seconds


@dataclass(frozen=True)
class Release:
    """What a night's release trains: `epochs` (None: the winner's best epoch count), then
    `clean_epochs` without augmentation in a fit of their own, on `scale` times the images of
    a search epoch (all training images: the validation split too)."""

    epochs: int | None = None
    clean_epochs: int = 0
    scale: float = 1.0

    def seconds(self, cost: Cost, best_epochs: float) -> float:
        """What it takes at that cost model, for a winner of `best_epochs` best epochs."""
        fits = 2 if self.clean_epochs else 1
        return cost.seconds((self.epochs or best_epochs) + self.clean_epochs, self.scale, fits)


def release_scale(train_images: int, val_images: int, limited: bool) -> float:
    """The release's images over a search epoch's: the training and validation splits, or
    with --train-limit the whole training file, which the release trains on whatever the
    limit (bench.core.data.full_training_set)."""
    return (data.TRAIN_COUNT if limited else train_images + val_images) / max(train_images, 1)


def release_of(config: SearchConfig, splits: data.Splits) -> Release | None:
    """What the run's release will train, None for a run without one."""
    if not config.release:
        return None
    limited = config.train_limit is not None
    scale = release_scale(len(splits.y_train), len(splits.y_val), limited)
    return Release(config.release_epochs, config.release_clean_epochs, scale)


def plan(
    seconds: float,
    epoch_seconds: float,
    trial_seconds: float,
    max_epochs: int,
    factor: int,
    confirm_top: int,
    confirm_seeds: int,
    steps_per_epoch: int | None = None,
    release: Release | None = None,
) -> Plan:
    """The rungs for a budget of `seconds`: the top rung is the most epochs (at least 1, at
    most max_epochs) whose full trials, the defaults' and confirm_top more, their
    confirm_seeds retrainings each and the release cost at most FULL_SHARE of the budget; the
    ladder below it keeps the rungs of at least MIN_SCREEN_STEPS (given the batches in an
    epoch). When not even one epoch holds the release, the plan leaves it out."""
    cost = Cost(trial_seconds, epoch_seconds)
    # Full-fidelity trainings: the defaults' trial and confirm_top more, each with its seeds.
    trainings = (confirm_top + 1) * (confirm_seeds + 1)
    top = top_rung(seconds, cost, max_epochs, trainings, release)
    left_out = release is not None and top is None
    if left_out:
        top = top_rung(seconds, cost, max_epochs, trainings)
    rungs = ladder(top or 1, factor, steps_per_epoch)
    return Plan(rungs, round(epoch_seconds, 3), round(trial_seconds, 3), left_out)


def top_rung(
    seconds: float, cost: Cost, max_epochs: int, trainings: int, release: Release | None = None
) -> int | None:
    """The most epochs, at most max_epochs, at which `trainings` full-fidelity trainings and
    the release cost at most FULL_SHARE of `seconds`; None when one epoch is already too
    many."""
    for epochs in range(max_epochs, 0, -1):
        need = trainings * cost.seconds(epochs)
        if release is not None:
            need += release.seconds(cost, epochs)
        if need <= FULL_SHARE * seconds:
            return epochs
    return None


def calibrate(config: SearchConfig, splits: data.Splits) -> tuple[float, float]:
    """Seconds of one training epoch of the space's defaults with its validation, and a
    trial's fixed cost (tracing, the test evaluation), from a short fit on this machine."""
    keras.utils.set_random_seed(config.seed)
    model = fitting.build_model(config.space, {})
    train = pipeline.training_set(splits.train_images, splits.y_train, config.batch_size, 0)
    train = train.repeat()  # a small training set would run out of batches
    began = time.perf_counter()
    model.fit(train, epochs=1, steps_per_epoch=WARM_STEPS, shuffle=False, verbose=0)
    first = time.perf_counter() - began
    began = time.perf_counter()
    model.fit(train, epochs=1, steps_per_epoch=TIMED_STEPS, shuffle=False, verbose=0)
    per_step = (time.perf_counter() - began) / TIMED_STEPS
    sample = min(TIMED_EVAL_IMAGES, len(splits.y_val))
    held_out = fitting.evaluation_set(splits.val_images[:sample], splits.y_val[:sample])
    model.predict(held_out, verbose=0)  # traced here, timed below
    began = time.perf_counter()
    model.predict(held_out, verbose=0)
    per_image = (time.perf_counter() - began) / sample
    epoch = epoch_batches(config, splits) * per_step + len(splits.y_val) * per_image
    fixed = max(first - WARM_STEPS * per_step, 0.0) + len(splits.y_test) * per_image
    return epoch, fixed


def sizes_rungs(config: SearchConfig) -> bool:
    """Whether a new run's rungs follow from its budget: asha with --budget."""
    return config.tuner == "asha" and config.budget is not None


def new_plan(config: SearchConfig, splits: data.Splits) -> Plan | None:
    """The plan a new run freezes in its config.json, None where rungs follow --max-epochs."""
    if not sizes_rungs(config):
        return None
    epoch, fixed = calibrate(config, splits)
    return plan(
        config.budget,
        epoch,
        fixed,
        config.max_epochs,
        config.hyperband_factor,
        config.confirm_top,
        config.confirm_seeds,
        epoch_batches(config, splits),
        release_of(config, splits),
    )


def epoch_batches(config: SearchConfig, splits: data.Splits) -> int:
    return math.ceil(len(splits.y_train) / config.batch_size)


def plan_of(config: SearchConfig) -> Plan:
    """The run's plan: frozen in its config.json, else (runs without a budget, or from
    before) the rungs `--max-epochs` gives."""
    if (config.run_dir / records.CONFIG_FILE).is_file():
        saved = saved_plan(records.load_config(config.run_dir))
        if saved is not None:
            return saved
    if config.tuner == "asha":
        return Plan(asha.rung_epochs(config.max_epochs, config.hyperband_factor))
    return Plan([config.max_epochs])


def saved_plan(config_json: dict) -> Plan | None:
    """The plan frozen in a run's config.json, None for a run without one."""
    saved = config_json.get(PLAN_KEY) or {}
    return Plan(**saved) if saved.get("rungs") else None


def describe(plan: Plan) -> str:
    """The rungs in words: "1/3, 1, 3, 9 epochs (one epoch about 42 s here)", and whether the
    plan left the release out."""
    names = [_epochs(e) for e in plan.rungs]
    timed = f" (one epoch about {plan.epoch_seconds:.0f} s here)" if plan.epoch_seconds else ""
    left_out = "; the budget holds no release" if plan.release_left_out else ""
    return f"{', '.join(names)} epochs{timed}{left_out}"


def _epochs(epochs: float) -> str:
    if epochs >= 1:
        return f"{epochs:g}"
    share = 1 / epochs
    return f"1/{round(share)}" if abs(share - round(share)) < 0.01 else f"{epochs:.2f}"


# The validation accuracies whose reach a short budget's night states at its start.
REACH_TARGETS = (0.99, 0.995)


def reach_words(plan: Plan, max_epochs: int, earlier: list[dict]) -> str | None:
    """What a budget whose rungs stop short of max_epochs can reach, in a sentence, from the
    trials of earlier runs of the space on the same data that trained from scratch (their
    validation accuracy epoch by epoch; the test set plays no part): the best within the top
    rung's epochs and the fewest epochs any of them took to each REACH_TARGETS. None when the
    top rung trains max_epochs."""
    top = plan.full_epochs
    if top >= max_epochs:
        return None
    words = (
        f"this budget's longest training is {_epochs(top)} epochs, short of the {max_epochs} "
        "of a full-length trial"
    )
    curves = [
        r["history"]["val_accuracy"]
        for r in earlier
        if not r.get("initial_epoch") and (r.get("history") or {}).get("val_accuracy")
    ]
    if not curves:
        return f"{words}; no earlier run of this space on this data shows what that reaches"
    within = int(top)  # whole epochs: a history has no figure within an epoch
    best = max((max(curve[:within]) for curve in curves if within), default=None)
    seen = (
        f"the best validation accuracy within {within} epochs was {best:.4f}"
        if best is not None
        else "their histories count whole epochs only"
    )
    reached = []
    for target in REACH_TARGETS:
        took = [next((i + 1 for i, v in enumerate(c) if v >= target), None) for c in curves]
        took = [epochs for epochs in took if epochs is not None]
        reached.append(
            f"{target:.1%} took {min(took)} at the fewest" if took else f"{target:.1%} never came"
        )
    return (
        f"{words}; in {len(curves)} trial{'s' * (len(curves) != 1)} of earlier runs of this "
        f"space on this data, {seen}, "
        f"and {', '.join(reached)}"
    )
