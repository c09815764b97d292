"""bench confirm: repeated seeds of a run's top trials, resumable, and what reads them."""

import io
import json

import numpy as np
import pytest

from bench.core import records
from bench.core.config import SearchConfig
from bench.release import choose, export
from bench.report import writer
from bench.search import confirm, tuning
from tests import factories

TINY = dict(train_limit=300, val_size=200, test_limit=200, max_epochs=1, batch_size=64)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    config = SearchConfig(
        run="c", space="tiny", tuner="random", max_trials=3, seed=5, results=str(results), **TINY
    ).validate()
    assert tuning.run_search(config, stream=io.StringIO()) is True
    return config.run_dir


def test_top_trials_get_fresh_seeds_and_a_rerun_adds_only_what_is_missing(run_dir):
    out = io.StringIO()
    confirmed = confirm.confirm_run(run_dir, top=2, seeds=2, stream=out)
    top = [r["trial_id"] for r in records.ranked_by_validation(records.load_records(run_dir))][:2]
    seeds = confirm.confirm_seeds(5, 2)
    assert 5 not in seeds and len(set(seeds)) == 2
    assert sorted((r["trial_id"], r["seed"]) for r in confirmed) == sorted(
        (t, s) for t in top for s in seeds
    )
    for record in confirmed:
        arrays = records.load_confirmed_predictions(run_dir, record)
        assert len(arrays["y_true"]) == TINY["test_limit"]
        assert np.mean(arrays["y_pred"] == arrays["y_true"]) == pytest.approx(
            record["test_accuracy"]
        )
    assert "4 to train" in out.getvalue()
    first = records.confirm_dir(run_dir) / f"{confirm.record_stem(top[0], seeds[0])}.json"
    before = first.read_text()
    out = io.StringIO()
    assert len(confirm.confirm_run(run_dir, top=2, seeds=3, stream=out)) == 6
    assert "2 to train" in out.getvalue()  # one new seed for each of the two trials
    assert first.read_text() == before


def test_the_report_ranks_confirmed_configurations_and_tests_them(run_dir):
    confirm.confirm_run(run_dir, top=2, seeds=2, stream=io.StringIO())
    out = run_dir / "report"
    writer.write_report([run_dir], out)
    text = (out / writer.REPORT_MD).read_text()
    section = text.split("## Confirmed with repeated seeds")[1].split("\n## ")[0]
    assert "test_accuracy_ci95" in section and "McNemar" in section
    assert "more seeds (bench confirm): mean test accuracy" in text.split("## Recommended")[0]
    ranks = [line for line in section.splitlines() if line.startswith("| 1 |")]
    assert len(ranks) == 1
    pair = next(line for line in section.splitlines() if line.startswith("| #1 "))
    assert "| #2 " in pair and ("significant" in pair)


def test_a_confirmed_run_ships_and_recommends_its_confirmed_winner(run_dir):
    confirm.confirm_run(run_dir, top=2, seeds=2, stream=io.StringIO())
    best_single = records.best_by_validation(records.load_records(run_dir))["trial_id"]
    # Make the runner-up the better one over its seeds.
    for path in records.confirm_dir(run_dir).glob("*.json"):
        result = json.loads(path.read_text())
        if result["trial_id"] != best_single:
            records.atomic_write_json(path, {**result, "val_accuracy": 1.0})
    out = export.export_run(run_dir)  # no flag: the confirmation decides
    shipped = json.loads((out / "config.json").read_text())
    winner = shipped["trial_id"]
    assert winner != best_single
    seeds = [r for r in records.load_confirmed(run_dir) if r["trial_id"] == winner]
    assert f"over {len(seeds)} confirmation retraining(s)" in shipped["selection"]
    assert shipped["selection"] in (out / "model_card.md").read_text()
    assert choose.winner(run_dir, choose.SINGLE)[0]["trial_id"] == best_single
    # The report recommends the same trial, and names the single-trial pick beside it.
    report = run_dir / "report"
    writer.write_report([run_dir], report)
    summary = (report / writer.REPORT_MD).read_text().split("## Recommended")[0]
    assert f"Recommended configuration to release: trial {winner} of run" in summary
    assert "chosen by the confirmation" in summary
    assert f"best validation accuracy is another: trial {best_single}" in summary
    assert "--single-trial" in summary


@pytest.mark.parametrize(("top", "seeds", "message"), [(0, 1, "at least 1"), (1, 0, "at least 1")])
def test_bad_counts_are_refused(run_dir, top, seeds, message):
    with pytest.raises(confirm.ConfirmError, match=message):
        confirm.confirm_run(run_dir, top=top, seeds=seeds, stream=io.StringIO())


def test_a_run_without_confirmations_cannot_export_confirmed(tmp_path):
    from tests.factories import fake_run

    run_dir = fake_run(tmp_path, n=2, failed=0)
    with pytest.raises(export.ExportError, match="run `bench confirm` first"):
        export.export_run(run_dir, pick="confirmed")


def _rung(trial_id: str, val: float, epochs: int, hp: dict) -> dict:
    return factories.fake_record(
        trial_id=trial_id,
        val_accuracy=val,
        hyperparameters=hp,
        tuner_state={"epochs": epochs},
    )


def test_a_night_confirms_its_best_full_trials_and_the_defaults():
    defaults, other = {"x": 1}, {"x": 2}
    trials = [
        _rung("0", 0.90, 1, defaults),  # the first configuration: the defaults
        _rung("1", 0.99, 1, other),  # a one-epoch screen: not full fidelity
        _rung("2", 0.95, 9, defaults),
        _rung("3", 0.97, 9, other),
        _rung("4", 0.96, 9, {"x": 3}),
    ]
    chosen = confirm.night_choice(trials, top=1, full_epochs=9)
    assert [r["trial_id"] for r in chosen] == ["3", "2"]  # the best, then the defaults
    assert [r["trial_id"] for r in confirm.night_choice(trials, 3, 9)] == ["3", "4", "2"]
    # Fewer configurations reached full fidelity than the night confirms: the best of the
    # rung below come next, and a configuration counts once, by its highest rung (trial 1's
    # screen of "other" scored best of all, yet "other" is trial 3).
    trials.append(_rung("5", 0.98, 3, {"x": 4}))
    trials.append(_rung("6", 0.999, 1, {"x": 5}))
    chosen = confirm.night_choice(trials, 5, 9)
    assert [r["trial_id"] for r in chosen] == ["3", "4", "2", "5", "6"]


def test_the_night_keeps_back_what_its_confirmation_still_needs(tmp_path):
    timed = {"eval_seconds": 0.0}
    defaults = {**_rung("0", 0.99, 9, {"x": 1}), "train_seconds": 100.0, "epochs_run": 9, **timed}
    screen = {**_rung("1", 0.95, 0.3333, {"x": 2}), "train_seconds": 10.0, "epochs_run": 1, **timed}
    config = {"tuner": "asha", "seed": 0}
    needs = confirm.night_seconds(tmp_path, [defaults, screen], 2, 2, config, 9)
    assert needs == pytest.approx(2 * 100.0 + 2 * 10.0 * 9 / 0.3333)
    # One retraining done: it is no longer kept back.
    folder = records.confirm_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / f"{confirm.record_stem('0', confirm.confirm_seeds(0, 1)[0])}.json").write_text("{}")
    after = confirm.night_seconds(tmp_path, [defaults, screen], 2, 2, config, 9)
    assert after == pytest.approx(needs - 100.0)


def test_a_retraining_is_expected_to_last_its_trials_time_scaled_to_its_epochs():
    screen = {"train_seconds": 20.0, "epochs_run": 1, "tuner_state": {"epochs": 0.5}}
    assert confirm.expected_seconds(screen, 9) == pytest.approx(360.0)
    full = {"train_seconds": 90.0, "epochs_run": 3}  # a random search's trial: no rung
    assert confirm.expected_seconds(full, None) == 90.0
    assert confirm.expected_seconds(full, 6) == pytest.approx(180.0)
    continued = {"train_seconds": 60.0, "epochs_run": 2}  # epochs 2 and 3 from the parent's 1
    continued["tuner_state"] = {"epochs": 3, "trained_epochs": 1}
    assert confirm.expected_seconds(continued, 9) == pytest.approx(270.0)


def test_a_night_with_confirm_seeds_confirms_itself_under_its_own_lock(tmp_path):
    config = SearchConfig(
        run="n",
        space="tiny",
        tuner="asha",
        max_trials=4,
        confirm_top=1,
        confirm_seeds=1,
        results=str(tmp_path),
        **{**TINY, "max_epochs": 2},
    ).validate()
    out = io.StringIO()
    assert tuning.run_search(config, stream=out) is True
    trials = records.load_records(config.run_dir)
    expected = confirm.night_choice(trials, 1, 2)
    confirmed = records.load_confirmed(config.run_dir)
    assert sorted(r["trial_id"] for r in confirmed) == sorted(r["trial_id"] for r in expected)
    # asha's are retrained at its top rung's epochs, whatever rung they reached.
    assert all(r["epochs"] == 2 and r["architecture"] for r in confirmed)
    assert "confirming run n" in out.getvalue()


# A night on a machine where a trial costs FIXED_S (building, tracing, the test evaluation)
# and each epoch EPOCH_S: asha's rungs of 1/3, 1, 3 and 9 epochs, promotions continuing.
FIXED_S, EPOCH_S, EVAL_S = 15.0, 20.0, 3.0
NIGHT = {"tuner": "asha", "seed": 0, "confirm_top": 3, "confirm_seeds": 2, "train_limit": None}


def _timed_rung(trial_id: str, hp: dict, val: float, epochs: float, trained: float = 0.0):
    """An asha trial of `epochs` that continued from `trained`: it trained what they differ
    by (below one epoch, one epoch of that share of the batches) at this machine's cost."""
    added = round(epochs - trained, 4)
    state = {"epochs": epochs, **({"trained_epochs": trained} if trained else {})}
    return factories.fake_record(
        trial_id=trial_id,
        tuner="asha",
        hyperparameters=hp,
        val_accuracy=val,
        tuner_state=state,
        epochs_run=max(round(added), 1),
        best_epoch=max(round(epochs), 1),
        train_seconds=FIXED_S - EVAL_S + EPOCH_S * added,
        eval_seconds=EVAL_S,
        dataset={**factories.DATASET, "train": 50_000, "val": 10_000},
    )


def _night_trials() -> list[dict]:
    """The defaults reached 9 epochs, "a" 3, "b" and "c" one; the rest were screens."""
    ladder = [(0.3333, 0.0), (1, 0.3333), (3, 1), (9, 3)]
    reached = {"defaults": (4, 0.990), "a": (3, 0.992), "b": (2, 0.991), "c": (2, 0.989)}
    trials = []
    for name, (rungs, val) in reached.items():
        for epochs, trained in ladder[:rungs]:
            trials.append(_timed_rung(str(len(trials)), {"x": name}, val, epochs, trained))
    for screen in range(6):
        trials.append(_timed_rung(str(len(trials)), {"x": screen}, 0.95, 0.3333))
    return trials


def test_a_trials_fixed_seconds_are_kept_back_once_per_retraining_not_once_per_epoch(tmp_path):
    from bench.core.budget import Budget

    trials = _night_trials()
    reserve = confirm.night_reserve(tmp_path, trials, NIGHT, 9)
    # The defaults, "a" and "b" twice each, 9 epochs each: 6 x 195 s. Scaled by epochs, their
    # trials' times asked 198, 234 and 342 s each (a screen's tracing 27 times over): 1548 s.
    assert reserve.retrainings == 6 and reserve.release_seconds is None
    assert reserve.seconds == pytest.approx(6 * (FIXED_S + 9 * EPOCH_S))
    assert reserve.words() == "the confirmation (6 retrainings)"
    # 1300 s left: a screen still fits beside the confirmation; kept back as before, it did not.
    budget = Budget(1300.0, margin=30.0)
    budget.note_trial(FIXED_S + EPOCH_S / 3, 0.3333)
    budget.keep(reserve.seconds, reserve.words())
    assert budget.fits_another_trial(0.3333)


def test_finished_retrainings_are_the_evidence_for_the_rest_of_the_confirmation(tmp_path):
    trials = _night_trials()
    folder = records.confirm_dir(tmp_path)
    folder.mkdir(parents=True)
    for seed in confirm.confirm_seeds(0, 2):  # the defaults' two took 250 s, not 195
        stem = confirm.record_stem("3", seed)
        records.atomic_write_json(
            folder / f"{stem}.json",
            {
                "trial_id": "3",
                "seed": seed,
                "epochs": 9,
                "train_seconds": 230.0,
                "started_at": "2024-01-01T06:00:00+00:00",
                "finished_at": "2024-01-01T06:04:10+00:00",
            },
        )
    left = confirm.night_seconds(tmp_path, trials, 3, 2, NIGHT, 9)
    assert left == pytest.approx(4 * 250.0)  # "a" and "b" twice each, at the pace measured


def test_the_night_keeps_back_its_release_on_all_training_images(tmp_path):
    trials = _night_trials()
    night = {**NIGHT, "release": True, "release_epochs": None, "release_clean_epochs": 1}
    reserve = confirm.night_reserve(tmp_path, trials, night, 9)
    # The costliest that may win is the defaults: 9 epochs and a clean one, each of 60,000
    # images (1.2 search epochs), in two fits.
    assert reserve.release_seconds == pytest.approx(2 * FIXED_S + 1.2 * EPOCH_S * 10)
    assert reserve.words() == "the confirmation (6 retrainings) and the release"
    for trial in trials:
        records.write_record(tmp_path, trial)
    defaults = trials[3]
    seconds = confirm.release_seconds(tmp_path, night, defaults, epochs=25, clean_epochs=1)
    assert seconds == pytest.approx(2 * FIXED_S + 1.2 * EPOCH_S * 26)
    planned = {**night, "fidelity": {"rungs": [1], "release_left_out": True}}
    assert confirm.night_reserve(tmp_path, trials, planned, 9).release_seconds is None


def test_too_few_trials_for_a_cost_model_fall_back_on_the_calibration(tmp_path):
    trials = _night_trials()[3:4]  # the defaults' full trial alone
    timed = {**NIGHT, "fidelity": {"rungs": [9], "epoch_seconds": 10.0, "trial_seconds": 5.0}}
    costs = confirm.retrain_costs(tmp_path, trials, timed)
    assert costs.model.fixed == 5.0 and costs.model.per_epoch == 10.0
    # The trial was twice as slow as the calibrated defaults (135 s for 6 epochs, not 65).
    assert confirm.expected_seconds(trials[0], 9, costs) == pytest.approx(95 * 135 / 65)


def test_the_epochs_a_trial_trained_in_its_seconds():
    screen = {"epochs_run": 1, "tuner_state": {"epochs": 0.3333}}
    on = {"epochs_run": 1, "tuner_state": {"epochs": 1, "trained_epochs": 0.3333}}
    resumed = {"epochs_run": 5, "resumed_at_epoch": 2, "tuner_state": {}}
    trained = [confirm.trained_epochs(r) for r in (screen, on, resumed, {"epochs_run": None})]
    assert trained == [0.3333, pytest.approx(0.6667), 3, 0]
