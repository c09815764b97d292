"""Budgets and the progress line."""

import io
import re
import time

import pytest

from bench.core.budget import Budget, BudgetSpent
from bench.core.config import ConfigError, parse_duration
from bench.search.progress import STARTED_ENV, Progress


@pytest.mark.parametrize(
    "text, seconds", [("7h30m", 27000), ("45m", 2700), ("90s", 90), ("1h0m5s", 3605)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "7x", "h", "0m", "1d", "-5m", "5m 3"])
def test_bad_durations(text):
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


def test_no_budget_always_fits():
    budget = Budget(None)
    budget.note_trial(1e9)
    assert budget.fits_another_trial() and budget.left() is None
    budget.check()


def test_a_trial_fits_only_if_as_long_as_the_longest_leaves_the_margin():
    budget = Budget(100.0, margin=30.0)
    assert budget.fits_another_trial()  # nothing known yet: try
    budget.note_trial(60.0)
    assert budget.fits_another_trial()  # 100 - 30 > 60
    budget.note_trial(75.0)
    assert not budget.fits_another_trial()  # 100 - 30 < 75
    budget.note_trial(20.0)
    assert budget.longest_trial == 75.0


def test_trials_of_known_epochs_are_judged_by_their_own_length():
    # After a 15-epoch trial of 150 s, a one-epoch screen still fits in 80 s; a full one not.
    budget = Budget(110.0, margin=30.0)
    budget.note_trial(150.0, epochs=15)
    budget.note_trial(12.0, epochs=1)  # the slowest epoch so far: 12 s
    assert not budget.fits_another_trial()  # as long as the longest: 150 s
    assert budget.fits_another_trial(epochs=1) and budget.estimate(epochs=1) == 12.0
    assert not budget.fits_another_trial(epochs=15)  # 180 s
    budget.note_trial(5.0, epochs=0)  # a trial that failed before its first epoch
    assert budget.longest_epoch == 12.0


def test_check_raises_once_only_the_margin_is_left():
    budget = Budget(0.05, margin=0.0)
    budget.check()
    time.sleep(0.1)
    with pytest.raises(BudgetSpent):
        budget.check()
    assert not issubclass(BudgetSpent, Exception)  # KerasTuner must not catch it


def test_progress_counts_a_rerun_trial_once_and_shows_time_left():
    out = io.StringIO()
    progress = Progress(total=3, stream=out, budget=Budget(3600.0))
    progress.resume_from([{"trial_id": "1", "status": "completed", "val_accuracy": 0.9}])
    rerun = {"trial_id": "1", "status": "completed", "val_accuracy": 0.9, "test_accuracy": 0.8}
    progress.update(rerun)
    assert progress.done == 1
    assert out.getvalue().startswith("trial 1/3 [1]")
    assert re.search(r"\| left (1:00:00|0:59:\d\d) \|", out.getvalue())


def test_the_search_leaves_its_reserve_for_what_follows():
    budget = Budget(200.0, margin=30.0)
    budget.note_trial(50.0)
    assert budget.fits_another_trial()  # 170 > 50
    budget.reserve = 130.0  # the confirmation's
    assert not budget.fits_another_trial()  # 170 - 130 < 50
    assert budget.fits(160.0)  # the confirmation itself may use it


def completed(trial_id: str) -> dict:
    return {"trial_id": trial_id, "status": "completed", "val_accuracy": 0.9, "test_accuracy": 0.8}


def test_the_eta_is_the_budgets_end_when_that_comes_before_the_trials_end(monkeypatch):
    clock = {"now": 1000.0}
    monkeypatch.setattr(time, "monotonic", lambda: clock["now"])
    # 10 trials planned, one done in 600 s: 5,400 s more by the count, 3,000 s by the budget.
    budget = Budget(3600.0, start=clock["now"])
    progress = Progress(total=10, stream=io.StringIO(), budget=budget, start=clock["now"])
    clock["now"] += 600.0
    progress.update(completed("0"))
    assert progress.eta() == pytest.approx(3000.0)
    assert "eta 0:50:00 | left 0:50:00" in progress.stream.getvalue()
    roomy = Progress(
        total=2,
        stream=io.StringIO(),
        budget=Budget(36000.0, start=clock["now"]),
        start=clock["now"],
    )
    clock["now"] += 600.0
    roomy.update(completed("0"))
    assert roomy.eta() == pytest.approx(600.0)  # the count's end comes first
    assert Progress(total=None, budget=Budget(None)).eta() is None


def test_a_later_process_of_the_same_search_counts_the_searchs_elapsed_time(monkeypatch):
    monkeypatch.setenv(STARTED_ENV, str(time.time() - 7200.0))  # began two hours ago
    progress = Progress(total=None, stream=io.StringIO())
    progress.update(completed("5"))
    assert re.search(r"\| elapsed 2:00:0\d \|", progress.stream.getvalue())
    monkeypatch.delenv(STARTED_ENV)
    fresh = Progress(total=None, stream=io.StringIO())
    fresh.update(completed("6"))
    assert "| elapsed 0:00:00 |" in fresh.stream.getvalue()
