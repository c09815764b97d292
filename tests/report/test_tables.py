"""Tests of bench.report.tables: each table prepared from a trials frame, without drawing."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from bench.core import records
from bench.report import columns, tables, time_spent
from tests import factories
from tests.factories import fake_record, fake_run


def frame_of(*trial_records: dict) -> pd.DataFrame:
    return tables.trials_frame([("r1", list(trial_records))])


def completed(trial_id: str, test_accuracy: float, test_loss: float, **fields) -> dict:
    return fake_record(
        trial_id=trial_id, test_accuracy=test_accuracy, test_loss=test_loss, **fields
    )


def test_leaderboard_ranks_by_test_accuracy_then_lower_test_loss():
    df = frame_of(
        completed("a", 0.99, 0.05, val_accuracy=0.995),
        completed("b", 0.99, 0.03, val_accuracy=0.990),
        completed("c", 0.98, 0.01, val_accuracy=0.999),
        fake_record(trial_id="d", status="failed"),
    )
    board = tables.leaderboard(df)
    assert list(board["trial_id"]) == ["b", "a", "c"]
    assert list(board["rank"]) == [1, 2, 3]
    assert dict(zip(board["trial_id"], board["val_rank"], strict=True)) == {"c": 1, "a": 2, "b": 3}
    assert list(board.columns) == list(tables.LEADERBOARD_COLUMNS)


def test_leaderboard_keeps_the_seed_baseline_as_a_flagged_row():
    df = frame_of(
        completed("a", 0.99, 0.05),
        completed("seed", 0.95, 0.20, space="seed"),
        completed("b", 0.97, 0.05),
    )
    board = tables.leaderboard(df).set_index("trial_id")
    assert board.loc["seed", "baseline"]
    assert not board.loc[["a", "b"], "baseline"].any()
    assert board.loc["seed", "rank"] == 3
    assert board.loc["seed", "architecture"] == columns.SEED_LABEL


def test_top_architectures_keeps_baseline_and_sorts_loss_ascending():
    trials = [completed(f"{i:02d}", 0.9 + i / 100, 0.5 - i / 100) for i in range(6)]
    df = frame_of(*trials, completed("seed", 0.5, 0.9, space="seed"))
    top = tables.top_architectures(df, n=3)
    assert list(top["trial_id"]) == ["05", "04", "03", "seed"]
    assert top["label"].is_unique
    by_loss = tables.top_architectures(df, n=2, by="test_loss")
    assert list(by_loss["trial_id"]) == ["05", "04", "seed"]


def test_pareto_front_on_a_hand_made_frame():
    points = {  # trial id: (params, test accuracy, on the front)
        "small": (50, 0.80, True),
        "a": (100, 0.90, True),
        "b": (200, 0.95, True),
        "b_worse": (200, 0.93, False),  # same size as b, less accurate
        "tie_bigger": (300, 0.95, False),  # as accurate as b but bigger
        "big": (400, 0.97, True),
        "big_twin": (400, 0.97, True),  # identical twins do not dominate each other
        "bloated": (500, 0.96, False),
    }
    df = frame_of(
        *(completed(k, acc, 0.1, params=p) for k, (p, acc, _) in points.items()),
        fake_record(trial_id="failed", status="failed"),
    )
    front = tables.pareto_front(df).set_index("trial_id")
    assert len(front) == len(points)
    assert front["pareto"].to_dict() == {k: on for k, (_, _, on) in points.items()}


def test_hyperparameter_effects_is_tidy_and_skips_unbuilt_filters():
    shared = {"kernel_size": 3, "optimizer": "adam", "learning_rate": 1e-3, "batch_norm": True}
    df = frame_of(
        completed(
            "a",
            0.99,
            0.1,
            hyperparameters={"conv_blocks": 1, "filters_0": 32, "filters_1": 64, **shared},
        ),
        completed(
            "b",
            0.98,
            0.1,
            hyperparameters={"conv_blocks": 2, "filters_0": 16, "filters_1": 32, **shared},
        ),
        completed("seed", 0.97, 0.1, space="seed"),
    )
    effects = tables.hyperparameter_effects(df)
    assert list(effects.columns) == list(tables.EFFECT_COLUMNS)
    kinds = effects.drop_duplicates("hyperparameter").set_index("hyperparameter")["kind"]
    assert kinds["learning_rate"] == "numeric"
    assert kinds["filters_0"] == "numeric"
    assert kinds["optimizer"] == "categorical"
    assert kinds["batch_norm"] == "categorical"
    # Trial a has one block: its filters_1 was sampled but never built.
    assert effects.loc[effects["hyperparameter"] == "filters_1", "value"].tolist() == [32]
    assert len(effects[effects["hyperparameter"] == "conv_blocks"]) == 2


def test_best_so_far_never_decreases(tmp_path):
    run_dir = fake_run(tmp_path, n=10, failed=3, with_seed_baseline=False)
    df = tables.trials_frame([("r1", records.load_records(run_dir))])
    progress = tables.best_so_far(df)
    assert len(progress) == 10
    for column, source in (
        ("best_val_accuracy", "val_accuracy"),
        ("best_test_accuracy", "test_accuracy"),
    ):
        values = progress[column].dropna().to_numpy()
        assert (np.diff(values) >= 0).all()
        assert values[-1] == df[source].max()
    assert progress["trial_number"].is_monotonic_increasing


def test_learning_curves_take_the_top_trials_from_a_frame_or_records():
    trial_records = [completed(f"{i:02d}", 0.9 + i / 100, 0.1) for i in range(7)]
    curves = tables.learning_curves(trial_records, n=2)
    assert set(curves["trial_id"]) == {"06", "05"}
    assert len(curves) == 2 * 2 * 3  # trials x splits x epochs
    assert set(curves["split"]) == {"train", "val"}
    record = trial_records[6]
    val = curves[(curves["trial_id"] == "06") & (curves["split"] == "val")]
    assert val["accuracy"].tolist() == record["history"]["val_accuracy"]
    assert val["epoch"].tolist() == [1, 2, 3]
    assert tables.learning_curves(frame_of(*trial_records), n=2).equals(curves)


def test_failures_counts_trials_by_error():
    df = frame_of(
        completed("ok", 0.99, 0.1),
        fake_record(trial_id="a", status="failed", error="OOM"),
        fake_record(trial_id="b", status="failed", error="NaN loss"),
        fake_record(trial_id="c", status="failed", error="OOM"),
    )
    failed = tables.failures(df)
    assert list(failed["trial_id"]) == ["a", "c", "b"]
    assert dict(zip(failed["error"], failed["count"], strict=True)) == {"OOM": 2, "NaN loss": 1}


def _timed(
    trial_id: str, minutes_in: float, minutes_end: float, accuracy, status="completed", val=0.99
):
    start = factories.RUN_START + timedelta(minutes=minutes_in)
    extra = {"test_accuracy": accuracy, "val_accuracy": val} if status == "completed" else {}
    return factories.fake_record(
        "r1",
        trial_id,
        status=status,
        started_at=start.isoformat(),
        finished_at=(factories.RUN_START + timedelta(minutes=minutes_end)).isoformat(),
        **extra,
    )


def test_time_to_accuracy_follows_the_order_trials_finished_in():
    trials = [
        _timed("00", 0, 30, 0.9912, val=0.990),  # worse by validation than 02: not the pick
        _timed("01", 1, 50, 0.9961, val=0.996),  # started second, but finished last
        _timed("02", 2, 20, 0.9950, val=0.995),
        _timed("03", 3, 40, None, status="failed"),
    ]
    got = time_spent.time_to_accuracy(tables.trials_frame([("r1", trials)]))
    by_target = got.set_index("target")
    assert list(by_target.index) == list(tables.TIME_TO_TARGETS)
    # 99.0, 99.3 and 99.5 are first reached by trial 02, which ended 20 minutes in.
    for target in (0.990, 0.993, 0.995):
        assert by_target.loc[target, "minutes"] == pytest.approx(20.0)
        assert by_target.loc[target, "trial_id"] == "02"
        assert by_target.loc[target, "trials"] == 1
    assert by_target.loc[0.996, "minutes"] == pytest.approx(50.0)
    assert by_target.loc[0.996, "trials"] == 4  # the failed trial had ended by then


def test_time_to_accuracy_follows_the_pick_by_validation_not_the_best_test_score():
    trials = [
        _timed("00", 0, 10, 0.9920, val=0.995),
        _timed("01", 1, 20, 0.9970, val=0.990),  # the best test score, but never the pick
        _timed("02", 2, 30, 0.9940, val=0.996),
    ]
    by_target = time_spent.time_to_accuracy(tables.trials_frame([("r1", trials)])).set_index(
        "target"
    )
    assert by_target.loc[0.990, "minutes"] == pytest.approx(10.0)
    assert (by_target.loc[0.993, "minutes"], by_target.loc[0.993, "trial_id"]) == (30.0, "02")
    assert by_target.loc[0.993, "trials"] == 3
    assert by_target.loc[[0.995, 0.996], "minutes"].isna().all()


def test_time_to_accuracy_leaves_unreached_targets_empty():
    got = time_spent.time_to_accuracy(tables.trials_frame([("r1", [_timed("00", 0, 9, 0.9931)])]))
    reached = got.set_index("target")["minutes"]
    assert reached[0.993] == pytest.approx(9.0)
    assert reached[[0.995, 0.996]].isna().all()
