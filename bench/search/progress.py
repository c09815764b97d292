"""The progress line after each trial, for people following a run."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from bench.core import records
from bench.core.budget import Budget, hms

# The wall-clock time a `bench search` began, passed to the processes it runs one after another
# (--trials-per-process), so that their lines count the run's elapsed time, not their own.
STARTED_ENV = "BENCH_SEARCH_STARTED"


def search_started() -> float:
    """When this search began (time.time()): the supervising process's start, else now."""
    try:
        return float(os.environ[STARTED_ENV])
    except (KeyError, ValueError):
        return time.time()


@dataclass
class Progress:
    """Counts finished trials and prints one line per trial for people following the run."""

    total: int | None
    stream: object = field(default_factory=lambda: sys.stdout)
    budget: Budget = field(default_factory=lambda: Budget(None))
    start: float = field(default_factory=time.monotonic)  # this process's: its trials' pace
    began: float = field(default_factory=search_started)  # the search's, for the elapsed time
    finished: dict = field(default_factory=dict)  # trial_id -> status; a rerun counts once
    earlier: int = 0  # trials finished by an earlier process of a resumed run
    ran: int = 0  # trials this process finished itself
    best: tuple[float, str] | None = None

    @property
    def done(self) -> int:
        return len(self.finished)

    def resume_from(self, existing: list[dict]) -> None:
        for record in existing:
            self._count(record)
        self.earlier = self.done

    def update(self, record: dict) -> None:
        self.ran += 1
        self.show(record)

    def show(self, record: dict) -> None:
        """Count a trial that finished (here or in another process) and print its line."""
        self._count(record)
        print(self.line(record), file=self.stream, flush=True)

    def refresh(self, existing: list[dict]) -> None:
        """Count what other processes of the same run have finished meanwhile."""
        for record in existing:
            self._count(record)

    def _count(self, record: dict) -> None:
        self.finished[record["trial_id"]] = record["status"]
        if record["status"] == records.STATUS_COMPLETED:
            if self.best is None or record["val_accuracy"] > self.best[0]:
                self.best = (record["val_accuracy"], record["trial_id"])

    def eta(self) -> float | None:
        """Seconds until the search ends: when its planned trials are done at this process's
        pace, or when its budget runs out, whichever comes first; None while unknown."""
        ends = [self.budget.left()]
        if self.total and self.done > self.earlier:
            per_trial = (time.monotonic() - self.start) / (self.done - self.earlier)
            ends.append(per_trial * max(self.total - self.done, 0))
        known = [seconds for seconds in ends if seconds is not None]
        return min(known) if known else None

    def line(self, record: dict) -> str:
        elapsed = time.time() - self.began
        of = f"/{self.total}" if self.total else ""
        eta = self.eta()
        eta = "?" if eta is None else hms(eta)
        left = self.budget.left()
        budget = "" if left is None else f" | left {hms(left)}"
        if record["status"] == records.STATUS_COMPLETED:
            result = f"val {record['val_accuracy']:.4f} test {record['test_accuracy']:.4f}"
        else:
            result = f"FAILED: {record['error']}"
        best = f"best val {self.best[0]:.4f} (trial {self.best[1]})" if self.best else "best -"
        worker = (record.get("process") or {}).get("worker")
        by = f" {worker}" if worker else ""
        return (
            f"trial {self.done}{of} [{record['trial_id']}]{by} | elapsed {hms(elapsed)} | "
            f"eta {eta}{budget} | {result} | {best}"
        )
