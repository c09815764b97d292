"""bench.report.compare: runs against each other, confirmed configurations over seeds."""

from __future__ import annotations

import math

import pytest

from bench.core import records
from bench.report import columns, compare
from tests.factories import fake_record


def _trial(run, trial_id, space, accuracy, loss, filters=32):
    hps = {} if space == "seed" else {"conv_blocks": 1, "filters_0": filters}
    return fake_record(
        run=run,
        trial_id=trial_id,
        space=space,
        hyperparameters=hps,
        test_accuracy=accuracy,
        test_loss=loss,
    )


def test_changes_per_space_and_common_architectures_flag_regressions():
    before = [
        _trial("mon", "00", "cnn", 0.9950, 0.020),
        _trial("mon", "01", "cnn", 0.9900, 0.030, filters=64),
        _trial("mon", "02", "tiny", 0.9800, 0.060),
        _trial("mon", "seed", "seed", 0.9920, 0.025),
    ]
    after = [
        _trial("tue", "00", "cnn", 0.9930, 0.021),  # same architecture, 0.2 points worse
        _trial("tue", "01", "cnn", 0.9945, 0.030, filters=64),  # 0.05 points: noise
        fake_record(run="tue", trial_id="02", space="tiny", status="failed"),
        _trial("tue", "seed", "seed", 0.9921, 0.030),  # loss up 20%
    ]
    df = columns.trials_frame([("mon", before), ("tue", after)])
    spaces = compare.changes_per_space(df, "mon", "tue").set_index("space")
    assert spaces.loc["cnn", "change_points"] == pytest.approx(-0.05)
    assert spaces.loc["cnn", "regression"] == ""
    assert spaces.loc["tiny", "regression"] == "no finished trial"
    assert spaces.loc["seed", "regression"] == "loss up"
    common = compare.common_architectures(df, "mon", "tue")
    flags = dict(zip(common["architecture"], common["regression"], strict=True))
    assert len(flags) == 3  # tiny finished only in mon
    assert flags[columns.architecture(after[0])] == "accuracy down"
    assert flags[columns.architecture(after[1])] == ""


def _confirmed(
    trial_id: str, seed: int, test_accuracy: float, test_loss: float, val_accuracy: float = 0.99
) -> dict:
    return {
        "run": "r",
        "trial_id": trial_id,
        "seed": seed,
        "space": "cnn",
        "hyperparameters": {"units": 64},
        "architecture": f"label of {trial_id}",
        "val_accuracy": val_accuracy,
        "val_loss": 1.0 - val_accuracy,
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
    }


def test_confirmed_configurations_rank_by_mean_validation_accuracy_never_by_test():
    confirmed = [
        _confirmed("01", 11, 0.990, 0.03, val_accuracy=0.995),
        _confirmed("01", 12, 0.992, 0.05, val_accuracy=0.993),
        _confirmed("02", 11, 0.995, 0.02, val_accuracy=0.992),  # the better test, ranked second
    ]
    ranking = compare.confirmed_table(confirmed)
    assert list(ranking.columns) == list(compare.CONFIRMED_COLUMNS)
    assert ranking["trial_id"].tolist() == ["01", "02"]
    assert ranking["rank"].tolist() == [1, 2]
    assert ranking["architecture"].tolist() == ["label of 01", "label of 02"]
    two = ranking.set_index("trial_id").loc["01"]
    assert (two["seeds"], two["test_accuracy"], two["test_loss"]) == pytest.approx((2, 0.991, 0.04))
    assert two["val_accuracy"] == pytest.approx(0.994)
    assert two["test_accuracy_low"] < 0.991 < two["test_accuracy_high"]
    assert math.isnan(ranking.set_index("trial_id").loc["02", "test_accuracy_sd"])  # one seed


def test_per_run_best_picks_by_validation_and_counts_failures():
    trials = [
        fake_record(run="a", trial_id="00", val_accuracy=0.98, test_accuracy=0.999),
        fake_record(run="a", trial_id="01", val_accuracy=0.99, test_accuracy=0.97),
        fake_record(run="a", trial_id="02", status=records.STATUS_FAILED),
    ]
    best = compare.per_run_best(columns.trials_frame([("a", trials), ("b", [])]))
    row = best.set_index("run").loc["a"]
    assert (row["trial_id"], row["finished"], row["failed"]) == ("01", 2, 1)
    assert len(best) == 1  # a run without records has no row
