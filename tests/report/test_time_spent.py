"""How a search spent its time: configurations per hour, asha's rungs, curves by rung."""

from datetime import timedelta

import pandas as pd
import pytest

from bench.core import records
from bench.report import columns, tables, time_spent, writer
from tests import factories
from tests.factories import fake_record


def asha_trial(trial_id, rung, hp, lineage, promoted_from=None, minutes=0, val=0.99):
    state = {"epochs": 3**rung, "round": rung, "lineage": lineage}
    if promoted_from:
        state["promoted_from"] = promoted_from
    start = factories.RUN_START + timedelta(minutes=minutes)
    epochs = 3**rung
    record = fake_record(
        "a",
        trial_id,
        tuner="asha",
        hyperparameters=hp,
        tuner_state=state,
        val_accuracy=val,
        epochs_run=epochs,
        history={"accuracy": [0.9] * epochs, "loss": [0.3] * epochs},
        started_at=start.isoformat(),
        finished_at=(start + timedelta(minutes=10)).isoformat(),
    )
    record["history"].update(val_accuracy=[val] * epochs, val_loss=[0.3] * epochs)
    return record


ONE, TWO, THREE = {"x": 1}, {"x": 2}, {"x": 3}
TRIALS = [
    asha_trial("0", 0, ONE, "0", minutes=0, val=0.97),
    asha_trial("1", 1, ONE, "0", promoted_from="0", minutes=10, val=0.98),
    asha_trial("2", 0, TWO, "2", minutes=20, val=0.99),
    asha_trial("3", 0, THREE, "3", minutes=30, val=0.96),
    asha_trial("4", 1, TWO, "2", promoted_from="2", minutes=40, val=0.995),
]


def test_pace_counts_configurations_once_whatever_their_rungs():
    (row,) = time_spent.pace(columns.trials_frame([("a", TRIALS)])).to_dict("records")
    assert (row["trials"], row["configurations"]) == (5, 3)
    assert row["hours"] == pytest.approx(50 / 60)  # the first start to the last end
    assert row["configurations_per_hour"] == pytest.approx(3 / (50 / 60))


def test_rungs_count_trials_and_promotions_and_the_best_validation():
    table = time_spent.rungs(columns.trials_frame([("a", TRIALS)])).set_index("rung")
    assert list(table["trials"]) == [3, 2] and list(table["epochs"]) == [1, 3]
    assert list(table["promoted"]) == [2, 0]
    assert table.loc[1, "best_val_accuracy"] == pytest.approx(0.995)


def test_a_rung_of_a_share_of_an_epoch_shows_that_share_not_the_epoch_it_ran():
    screen = asha_trial("0", 0, ONE, "0")
    screen["tuner_state"]["epochs"] = 0.3333  # one epoch of a third of the batches
    table = time_spent.rungs(columns.trials_frame([("a", [screen, *TRIALS[1:2]])])).set_index(
        "rung"
    )
    assert list(table["epochs"]) == [0.3333, 3]
    curves = time_spent.rung_curves(columns.trials_frame([("a", [screen, *TRIALS[1:2]])]))
    assert list(curves.loc[curves["trial_id"] == "0", "epoch"]) == [0.3333]  # a third of one
    assert list(curves.loc[curves["trial_id"] == "1", "epoch"]) == [1, 2, 3]


def test_a_promotion_that_continued_its_parents_weights_is_drawn_where_the_parent_stopped():
    screen = asha_trial("0", 0, ONE, "0")
    screen["tuner_state"]["epochs"] = 0.3333
    on = asha_trial("1", 1, ONE, "0", promoted_from="0")
    on["tuner_state"].update(epochs=1, trained_epochs=0.3333, trial_id="0")  # 2/3 of an epoch
    further = asha_trial("2", 2, ONE, "0", promoted_from="1")
    further["tuner_state"].update(epochs=3, trained_epochs=1, trial_id="1")  # epochs 2, 3 of 3
    for record, epochs in ((on, 1), (further, 2)):
        record["history"] = {k: v[:epochs] for k, v in record["history"].items()}
    curves = time_spent.rung_curves(columns.trials_frame([("a", [screen, on, further])]))
    epochs = curves.groupby("trial_id")["epoch"].apply(list).to_dict()
    assert epochs == {"0": [0.3333], "1": [pytest.approx(1.0)], "2": [2, 3]}


def test_the_leaderboard_shows_each_trials_rung_budget_only_for_runs_with_rungs():
    screen = asha_trial("0", 0, ONE, "0")
    screen["tuner_state"]["epochs"] = 0.3333
    board = tables.leaderboard(columns.trials_frame([("a", [screen, *TRIALS[1:]])]))
    by_trial = dict(zip(board["trial_id"], board["rung_epochs"], strict=True))
    assert by_trial["0"] == 0.3333 and by_trial["4"] == 3
    plain = [fake_record("r", str(i), val_accuracy=0.99) for i in range(2)]
    assert "rung_epochs" not in tables.leaderboard(columns.trials_frame([("r", plain)]))


def test_curves_are_coloured_by_the_highest_rung_of_their_configuration():
    curves = time_spent.rung_curves(columns.trials_frame([("a", TRIALS)]))
    reached = curves.groupby("trial_id")["reached"].first().to_dict()
    assert reached == {"0": 1, "1": 1, "2": 1, "3": 0, "4": 1}
    assert len(curves) == 3 * 1 + 2 * 3  # one point per epoch of each trial


def test_runs_of_other_tuners_have_no_rungs():
    df = columns.trials_frame([("r", [fake_record("r", "0"), fake_record("r", "1")])])
    assert time_spent.rungs(df).empty and time_spent.rung_curves(df).empty
    assert len(time_spent.pace(df)) == 1


def test_the_report_of_an_asha_run_shows_its_rungs_and_curves(tmp_path):
    run_dir = tmp_path / "a"
    records.atomic_write_json(run_dir / records.CONFIG_FILE, {"run": "a", "tuner": "asha"})
    for record in TRIALS:
        records.write_record(run_dir, record)
    writer.write_report([run_dir], tmp_path / "out")
    text = (tmp_path / "out" / writer.REPORT_MD).read_text()
    assert "## The search" in text and "### Rungs" in text
    assert (tmp_path / "out" / "rung_curves.png").is_file()


def _at(minutes: float) -> str:
    return (factories.RUN_START + timedelta(minutes=minutes)).isoformat()


def _finished(trial_id, minutes, val, test):
    """A search trial of run "r" that ran 10 minutes and ended `minutes` into the run."""
    return fake_record(
        "r",
        trial_id,
        val_accuracy=val,
        val_loss=0.05,
        test_accuracy=test,
        started_at=_at(minutes - 10),
        finished_at=_at(minutes),
    )


def _retrained(trial_id, seed, minutes, val, test):
    """A confirmation record of run "r": trial_id retrained with `seed`, ended `minutes` in."""
    return {
        "run": "r",
        "trial_id": trial_id,
        "seed": seed,
        "epochs": 9,
        "val_accuracy": val,
        "val_loss": 0.05,
        "test_accuracy": test,
        "test_loss": 0.03,
        "started_at": _at(minutes - 10),
        "finished_at": _at(minutes),
    }


def test_time_to_accuracy_counts_the_confirmation_and_the_release_as_each_finished(tmp_path):
    from bench.report.loading import Run

    trials = [_finished("00", 10, 0.995, 0.9931), _finished("01", 20, 0.993, 0.9950)]
    confirmed = [
        _retrained("00", 1001, 30, 0.994, 0.9940),  # alone: the confirmed pick, 99.40
        _retrained("01", 1001, 40, 0.996, 0.9960),  # better by validation: the pick, 99.60
        _retrained("01", 1002, 50, 0.996, 0.9966),  # its mean: 99.63
        _retrained("02", 1001, 55, 0.990, 0.9990),  # the best test score, but never the pick
    ]
    release = {"run": "r", "trial_id": "01", "test_accuracy": 0.9972, "finished_at": _at(70)}
    records.atomic_write_json(tmp_path.joinpath(*time_spent.RELEASE_CONFIG), release)
    run = Run("r", tmp_path, {}, trials, [], confirmed)
    df = columns.trials_frame([("r", trials)])
    targets = (0.993, 0.995, 0.9963, 0.997, 0.998)
    got = time_spent.time_to_accuracy(df, [run], targets).set_index("target")
    assert got.loc[0.993, ["minutes", "trial_id", "by"]].tolist() == [10.0, "00", "search"]
    assert got.loc[0.995, ["minutes", "trial_id", "by"]].tolist() == [40.0, "01", "confirmation"]
    assert got.loc[0.9963, "minutes"] == pytest.approx(50.0)
    assert got.loc[0.9963, "test_accuracy"] == pytest.approx(0.9963)
    assert got.loc[0.997, ["minutes", "test_accuracy", "by"]].tolist() == [70.0, 0.9972, "release"]
    assert got.loc[0.997, "trials"] == 2  # the search trials finished by then
    assert pd.isna(got.loc[0.998, "minutes"])  # trial 02's 99.90 does not count
    # Without its confirmation and release the run reaches only what its search trials did.
    alone = time_spent.time_to_accuracy(df, [], targets).set_index("target")
    assert alone["minutes"].isna().tolist() == [False, True, True, True, True]


def test_a_release_of_another_trial_than_the_pick_does_not_count(tmp_path):
    from bench.report.loading import Run

    trials = [_finished("00", 10, 0.995, 0.9931), _finished("01", 20, 0.993, 0.9950)]
    release = {"run": "r", "trial_id": "01", "test_accuracy": 0.9972, "finished_at": _at(30)}
    records.atomic_write_json(tmp_path.joinpath(*time_spent.RELEASE_CONFIG), release)
    df = columns.trials_frame([("r", trials)])
    got = time_spent.time_to_accuracy(df, [Run("r", tmp_path, {}, trials, [], [])])
    assert got["minutes"].notna().tolist() == [True, True, False, False]  # 99.31 alone
    assert set(got["by"].dropna()) == {"search"}
