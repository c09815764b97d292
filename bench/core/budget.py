"""Keeping time over a night: the run's time budget and the signals that stop it."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field

# Kept free at the end of a budget for the last records and the report.
REPORT_MARGIN_S = 30.0


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


def hms(seconds: float) -> str:
    seconds = int(round(max(seconds, 0)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass
class Budget:
    """A deadline for this invocation; None seconds means no limit."""

    seconds: float | None
    start: float = field(default_factory=time.monotonic)
    margin: float = REPORT_MARGIN_S
    longest_trial: float = 0.0  # the longest trial of this invocation: the next one's estimate
    # The most seconds an epoch took, trial overheads included: the estimate for trials of a
    # known budget (a rung of asha), whose lengths differ by design.
    longest_epoch: float = 0.0
    reserve: float = 0.0  # seconds the search leaves for what follows it (the confirmation)

    def left(self) -> float | None:
        if self.seconds is None:
            return None
        return self.seconds - (time.monotonic() - self.start)

    def note_trial(self, seconds: float, epochs: int | None = None) -> None:
        self.longest_trial = max(self.longest_trial, seconds)
        if epochs:
            self.longest_epoch = max(self.longest_epoch, seconds / epochs)

    def estimate(self, epochs: int | None = None) -> float:
        """Seconds a next trial may take: of `epochs` epochs, or as long as the longest."""
        if epochs and self.longest_epoch:
            return self.longest_epoch * epochs
        return self.longest_trial

    def fits_another_trial(self, epochs: int | None = None) -> bool:
        """Whether a trial of `epochs` epochs (None: as long as the longest so far) ends
        before the margin and the reserve."""
        return self.fits(self.estimate(epochs) + self.reserve)

    def fits(self, seconds: float) -> bool:
        """Whether work of `seconds` ends before the margin."""
        left = self.left()
        return left is None or left - self.margin > seconds

    def check(self) -> None:
        """Raise BudgetSpent once only the margin is left (called between batches)."""
        left = self.left()
        if left is not None and left <= self.margin:
            raise BudgetSpent
