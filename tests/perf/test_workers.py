"""bench.perf.workers: the arithmetic of the workers benchmark (its timings are measured by
`make bench-workers`, not tested)."""

import math

import pytest

from bench.perf import workers
from tests.factories import fake_record


def timed_record(trial_id: str, start: str, end: str, wait: float | None) -> dict:
    record = fake_record(trial_id=trial_id, started_at=start, finished_at=end, train_seconds=10.0)
    record["process"] = {"worker": "w0", "oracle_seconds": wait}
    return record


def test_trials_per_hour():
    assert workers.trials_per_hour(10, 1800.0) == 20.0
    assert math.isnan(workers.trials_per_hour(3, 0.0))


def test_the_span_runs_from_the_first_start_to_the_last_end():
    done = [
        timed_record("0", "2026-11-27T01:00:10+00:00", "2026-11-27T01:00:40+00:00", 0.2),
        timed_record("1", "2026-11-27T01:00:00+00:00", "2026-11-27T01:01:30+00:00", 0.4),
    ]
    assert workers.span_seconds(done) == 90.0
    figures = workers.layout_figures("2x1", 2, 1, wall=120.0, done=done)
    assert figures["trials"] == 2 and figures["completed"] == 2
    assert figures["trials_per_hour"] == pytest.approx(60.0)  # 2 trials in 2 minutes
    assert figures["trials_per_hour_working"] == pytest.approx(80.0)  # 2 in 90 s
    assert figures["chief_seconds_per_trial"] == pytest.approx(0.3)


def test_a_single_process_run_has_no_chief_wait():
    done = [timed_record("0", "2026-11-27T01:00:00+00:00", "2026-11-27T01:00:30+00:00", None)]
    assert (
        workers.layout_figures("1x2", 1, 2, wall=60.0, done=done)["chief_seconds_per_trial"] is None
    )


def test_ratios_divide_the_split_layout_by_the_single_one():
    single = {"trials_per_hour": 40.0, "trials_per_hour_working": 50.0}
    split = {"trials_per_hour": 60.0, "trials_per_hour_working": 55.0}
    assert workers.compare(single, split) == {
        "trials_per_hour_ratio": 1.5,
        "working_ratio": pytest.approx(1.1),
    }


def test_the_table_shows_each_layout_and_the_ratio():
    row = {
        "layout": "1x2",
        "trials": 8,
        "wall_seconds": 100.0,
        "trials_per_hour": 288.0,
        "trials_per_hour_working": 320.0,
        "chief_seconds_per_trial": None,
    }
    other = {**row, "layout": "2x1", "trials_per_hour": 360.0, "chief_seconds_per_trial": 0.05}
    text = workers.table(
        {"layouts": [row, other], "trials_per_hour_ratio": 1.25, "working_ratio": 1.1}
    )
    assert "1x2" in text and "0.0500" in text
    assert "ratio 2x1 / 1x2: 1.25x trials per hour (1.10x over the trials' own span)" in text


# -- make bench (bench.perf.suite): arithmetic only ----------------------------------------
