"""Keeping time over a night: the run's time budget and the signals that stop it."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.core.config import duration_text
from bench.errors import ConfigError

# Kept free at the end of a budget for the last records and the report.
REPORT_MARGIN_S = 30.0
# The least a trial takes (the `tiny` space's: building, tracing and training a small model,
# then measuring it): a budget shorter than the margin and one of them finishes nothing.
MIN_TRIAL_S = 3.0
MIN_BUDGET_S = REPORT_MARGIN_S + MIN_TRIAL_S
# Trainings a cost model is fitted from, at least, and the factor by which the longest must
# outlast the shortest: trainings all of one length cannot tell a training's fixed seconds
# from its epochs'.
MIN_FIT_TRAININGS = 3
MIN_EPOCH_SPREAD = 1.5
# Trainings shorter than this many epochs say little of an epoch's rate: their seconds are
# mostly the fixed part, and its noise divided by a share of an epoch.
MIN_RATE_EPOCHS = 1.0


class BudgetSpent(BaseException):
    """The time budget ran out in the middle of a trial.

    A BaseException, like KeyboardInterrupt, so that KerasTuner does not record the cut-off
    trial as failed: it stays unfinished and runs again when the run is resumed.
    """


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that the search unwinds like on Ctrl-C."""


class StopSignals:
    """Turns SIGINT and SIGTERM into KeyboardInterrupt and Terminated wherever the process is.

    Python drops an exception raised inside a __del__ method or a weakref callback (which
    garbage collection runs at any moment), printing "Exception ignored". So the signal is also
    remembered, and check(), called between batches and before each trial, raises it again.
    """

    EXCEPTIONS = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: Terminated}

    def __init__(self):
        self.pending: type[BaseException] | None = None

    def handle(self, signum, frame):
        self.pending = self.EXCEPTIONS[signum]
        raise self.pending

    def check(self) -> None:
        if self.pending is not None:
            raise self.pending

    def install(self) -> dict:
        """Handle both signals from now on; returns the handlers to restore()."""
        self.pending = None
        return {signum: signal.signal(signum, self.handle) for signum in self.EXCEPTIONS}

    def restore(self, previous: dict) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        self.pending = None


STOP = StopSignals()


def check_budget(seconds: float | None, text: str | None = None) -> float | None:
    """A person's --budget (None: no limit) when it holds a trial and the report; ConfigError
    saying the least that does otherwise. (A process a search starts takes what is left.)"""
    if seconds is not None and seconds < MIN_BUDGET_S:
        raise ConfigError(
            f"--budget {text or duration_text(seconds)} is too short to run a trial: a search "
            f"keeps its last {REPORT_MARGIN_S:.0f} s for the report and a trial takes "
            f"{MIN_TRIAL_S:.0f} s or more; give at least {duration_text(MIN_BUDGET_S)}"
        )
    return seconds


def hms(seconds: float) -> str:
    seconds = int(round(max(seconds, 0)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass(frozen=True)
class Cost:
    """Seconds a training takes: a fixed part (building and tracing the model, evaluating it on
    the test set) and a part per epoch (the training images and the validation)."""

    fixed: float
    per_epoch: float

    def seconds(self, epochs: float, scale: float = 1.0, fits: int = 1) -> float:
        """Of `epochs` epochs, each of `scale` times the images, in `fits` separate fits (each
        traces afresh: its own fixed part)."""
        return self.fixed * fits + self.per_epoch * scale * epochs


def fit_cost(trainings: Iterable[tuple[float, float]]) -> Cost | None:
    """The cost model fitted by least squares to (epochs, seconds) of finished trainings, so
    that a short training's fixed part is not counted once per epoch of a long one. None with
    fewer than MIN_FIT_TRAININGS of lengths that differ by MIN_EPOCH_SPREAD, or when the
    longer ones were not slower; a fixed part below zero (noise) makes the line through 0."""
    points = [(e, s) for e, s in trainings if e and e > 0 and s and s > 0]
    if len(points) < MIN_FIT_TRAININGS:
        return None
    epochs = [e for e, _ in points]
    if max(epochs) < MIN_EPOCH_SPREAD * min(epochs):
        return None
    mean_e = sum(epochs) / len(points)
    mean_s = sum(s for _, s in points) / len(points)
    spread = sum((e - mean_e) ** 2 for e in epochs)
    slope = sum((e - mean_e) * (s - mean_s) for e, s in points) / spread
    if slope <= 0:
        return None
    fixed = mean_s - slope * mean_e
    if fixed < 0:
        return Cost(0.0, sum(e * s for e, s in points) / sum(e * e for e in epochs))
    return Cost(fixed, slope)


@dataclass
class Budget:
    """A deadline for this invocation; None seconds means no limit."""

    seconds: float | None
    start: float = field(default_factory=time.monotonic)
    margin: float = REPORT_MARGIN_S
    longest_trial: float = 0.0  # the longest trial of this invocation: the next one's estimate
    # The most seconds an epoch took, trial overheads included: the estimate for trials of a
    # known budget (a rung of asha) until a cost model can be fitted (estimate).
    longest_epoch: float = 0.0
    reserve: float = 0.0  # seconds the search leaves for what follows it (the confirmation)
    kept_for: str = ""  # what the reserve is for, in words: "the confirmation (8 retrainings)"
    # A cost model to start from until this invocation's trials fit one: asha's calibration.
    prior: Cost | None = None
    # (epochs, seconds) of this invocation's trials that trained at least part of an epoch.
    trainings: list[tuple[float, float]] = field(default_factory=list)

    def left(self) -> float | None:
        if self.seconds is None:
            return None
        return self.seconds - (time.monotonic() - self.start)

    def note_trial(self, seconds: float, epochs: float | None = None) -> None:
        """A trial of this invocation took `seconds` for `epochs` (a share of one for a screen
        shorter than an epoch; None or 0 for one that failed before training)."""
        self.longest_trial = max(self.longest_trial, seconds)
        if epochs:
            self.longest_epoch = max(self.longest_epoch, seconds / epochs)
            self.trainings.append((epochs, seconds))

    def keep(self, seconds: float, kept_for: str = "") -> None:
        """Leave `seconds` at the end for what follows the search, named in words."""
        self.reserve, self.kept_for = seconds, kept_for

    def cost(self) -> Cost | None:
        """The cost model of a trial here: fitted to this invocation's trials, else the prior."""
        return fit_cost(self.trainings) or self.prior

    def estimate(self, epochs: float | None = None) -> float:
        """Seconds a next trial may take: of `epochs` epochs, a trial's fixed part once and
        each epoch at the slowest rate net of it that a trial of an epoch or more showed (a
        screen's tracing spread over a third of an epoch would make every epoch of a long
        trial look three times as long); before a cost model, the slowest epoch so far times
        `epochs`; without epochs, as long as the longest trial."""
        if not epochs:
            return self.longest_trial
        cost = self.cost()
        if cost is None:
            return self.longest_epoch * epochs or self.longest_trial
        rates = [(s - cost.fixed) / e for e, s in self.trainings if e >= MIN_RATE_EPOCHS]
        return cost.fixed + max([cost.per_epoch, *rates]) * epochs

    def fits_another_trial(self, epochs: int | None = None) -> bool:
        """Whether a trial of `epochs` epochs (None: as long as the longest so far) ends
        before the margin and the reserve."""
        return self.fits(self.estimate(epochs) + self.reserve)

    def fits(self, seconds: float) -> bool:
        """Whether work of `seconds` ends before the margin."""
        left = self.left()
        return left is None or left - self.margin > seconds

    def left_words(self) -> str:
        """The time left, and how much of it the reserve keeps for what: "3118 s left, 2890 s
        of it kept for the confirmation (8 retrainings) and the release"."""
        left = self.left()
        text = "no time limit" if left is None else f"{left:.0f} s left"
        if left is None or not (self.reserve > 0 and self.kept_for):
            return text
        kept = "all of it" if self.reserve >= left else f"{self.reserve:.0f} s of it"
        return f"{text}, {kept} kept for {self.kept_for}"

    def no_room_words(self, epochs: float | None = None) -> str:
        """Why a trial of `epochs` epochs does not start: the time left and, once a trial has
        shown how long one takes, the estimate ("the next trial may take 0 s" says nothing)."""
        words = f"time budget: {self.left_words()}"
        estimate = self.estimate(epochs)
        if estimate >= 1:
            return f"{words}; the next trial may take {estimate:.0f} s"
        return f"{words}; too little for a trial beside the {self.margin:.0f} s kept for the report"

    def check(self) -> None:
        """Raise BudgetSpent once only the margin is left (called between batches)."""
        left = self.left()
        if left is not None and left <= self.margin:
            raise BudgetSpent
