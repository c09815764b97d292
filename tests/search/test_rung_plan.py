"""asha's rungs sized from the budget: the plan's arithmetic, the calibration, and a run that
freezes its plan and trains its lowest rung on a share of an epoch."""

import io
import re
from dataclasses import replace

import pytest

from bench.core import records
from bench.core.budget import Cost
from bench.core.config import SearchConfig
from bench.search import asha, rung_plan, tuning

FACTOR = 3


def cost_of_full_trials(top, epoch_s, trial_s, confirm_top, confirm_seeds):
    full = confirm_top + 1
    return (full + full * confirm_seeds) * rung_plan.trial_cost(top, epoch_s, trial_s)


@pytest.mark.parametrize(
    "seconds, epoch_s, trial_s, seeds",
    [(7200, 42, 8, 2), (27900, 230, 20, 2), (27900, 42, 8, 2), (7200, 230, 20, 0), (900, 42, 8, 2)],
)
def test_the_top_rung_is_the_longest_whose_full_trials_and_confirmation_fit(
    seconds, epoch_s, trial_s, seeds
):
    plan = rung_plan.plan(seconds, epoch_s, trial_s, 15, FACTOR, 3, seeds)
    top = plan.full_epochs
    share = rung_plan.FULL_SHARE * seconds
    assert 1 <= top <= 15
    if top > 1:  # it fits, and one epoch more would not (unless capped by --max-epochs)
        assert cost_of_full_trials(top, epoch_s, trial_s, 3, seeds) <= share
    if top < 15:
        assert cost_of_full_trials(top + 1, epoch_s, trial_s, 3, seeds) > share
    assert plan.rungs == rung_plan.ladder(top, FACTOR)
    assert plan.rungs[0] == pytest.approx(1 / FACTOR, abs=1e-4)


def test_a_slower_machine_gets_shorter_full_trials_and_confirmation_costs_epochs():
    fast = rung_plan.plan(27900, 42, 8, 15, FACTOR, 3, 2).full_epochs
    slow = rung_plan.plan(27900, 230, 20, 15, FACTOR, 3, 2).full_epochs
    unconfirmed = rung_plan.plan(27900, 230, 20, 15, FACTOR, 3, 0).full_epochs
    assert fast == 15 and slow < fast and unconfirmed > slow


def test_the_top_rung_leaves_room_for_the_release_on_all_training_images():
    release = rung_plan.Release(epochs=None, clean_epochs=1, scale=1.2)
    plan = rung_plan.plan(27900, 230, 20, 15, FACTOR, 3, 2, release=release)
    without = rung_plan.plan(27900, 230, 20, 15, FACTOR, 3, 2)
    top = plan.full_epochs
    assert top < without.full_epochs and not plan.release_left_out
    cost = Cost(20, 230)
    need = cost_of_full_trials(top, 230, 20, 3, 2) + release.seconds(cost, top)
    assert need <= rung_plan.FULL_SHARE * 27900
    need = cost_of_full_trials(top + 1, 230, 20, 3, 2) + release.seconds(cost, top + 1)
    assert need > rung_plan.FULL_SHARE * 27900
    # A release of 25 epochs and a clean one (26 x 1.2 x 42 s) cannot fit in 15 minutes even
    # beside one-epoch trials: the plan leaves it out and sizes the rungs without it.
    short = rung_plan.plan(900, 42, 8, 15, FACTOR, 3, 2, release=rung_plan.Release(25, 1, 1.2))
    assert short.release_left_out and short.rungs == rung_plan.plan(900, 42, 8, 15, 3, 3, 2).rungs
    assert rung_plan.describe(short).endswith("; the budget holds no release")
    assert rung_plan.release_scale(50_000, 10_000, limited=False) == pytest.approx(1.2)
    assert rung_plan.release_scale(384, 128, limited=True) == pytest.approx(60_000 / 384)


@pytest.mark.parametrize(
    "top, rungs",
    [(9, [0.3333, 1, 3, 9]), (15, [0.3333, 1, 2, 5, 15]), (1, [0.3333, 1]), (6, [0.3333, 1, 2, 6])],
)
def test_the_ladder_goes_down_to_a_third_of_an_epoch(top, rungs):
    assert rung_plan.ladder(top, FACTOR) == rungs
    assert rung_plan.describe(rung_plan.Plan(rungs)).startswith("1/3, 1")


@pytest.mark.parametrize(
    "top, batches, rungs",
    [
        (9, 391, [0.3333, 1, 3, 9]),  # full MNIST: a third of an epoch is 130 steps
        (6, 79, [2, 6]),
        (5, 79, [2, 5]),
        (3, 2, [3]),
        (9, 100, [1, 3, 9]),
    ],
)
def test_no_rung_below_the_top_trains_fewer_than_the_shortest_screen(top, batches, rungs):
    assert rung_plan.ladder(top, FACTOR, batches) == rungs
    short = [r for r in rungs[:-1] if r * batches < rung_plan.MIN_SCREEN_STEPS]
    assert not short
    plan = rung_plan.plan(7200, 42, 8, top, FACTOR, 3, 0, steps_per_epoch=batches)
    assert plan.rungs == rungs


def test_a_share_of_an_epoch_is_that_share_of_its_batches():
    import tensorflow as tf

    batches = tf.data.Dataset.range(300).batch(10)  # 30 batches
    assert asha.share_of_batches(batches, 1 / 3) == 10
    assert asha.share_of_batches(batches, 0.001) == 1
    assert asha.share_of_batches(batches.repeat(), 0.5) is None  # no known length: all of it


def budgeted(tmp_path, **changes) -> SearchConfig:
    config = SearchConfig(
        run="a",
        space="tiny",
        tuner="asha",
        max_trials=4,
        max_epochs=3,
        train_limit=384,
        val_size=128,
        test_limit=128,
        budget=3600.0,
        results=str(tmp_path),
    )
    return replace(config, **changes).validate()


def test_a_budgeted_run_freezes_its_rungs_and_screens_on_a_share_of_an_epoch(tmp_path, monkeypatch):
    steps = []
    fit = asha.kt.Tuner.run_trial

    def noting(self, trial, *args, **kwargs):
        trained = asha.trial_epochs(trial.hyperparameters.values)  # less what it continues
        steps.append((trained, kwargs.get("steps_per_epoch")))
        return fit(self, trial, *args, **kwargs)

    monkeypatch.setattr(asha.kt.Tuner, "run_trial", noting)
    monkeypatch.setattr(rung_plan, "MIN_SCREEN_STEPS", 0)  # three batches an epoch here
    config = budgeted(tmp_path)
    assert tuning.run_search(config, stream=io.StringIO()) is True
    saved = records.load_config(config.run_dir)[rung_plan.PLAN_KEY]
    assert saved["rungs"] == [0.3333, 1, 3] and saved["epoch_seconds"] > 0
    done = records.load_records(config.run_dir)
    assert done[0]["tuner_state"]["epochs"] == 0.3333 and done[0]["epochs_run"] == 1
    # 384 training images in batches of 128: three batches, a third of them is one.
    assert steps[0] == (0.3333, 1)
    assert all(s is None for e, s in steps if e >= 1)
    assert steps[1] == (0.6667, 2)  # the defaults continued to one epoch: two thirds more
    # A resume with another budget keeps the frozen rungs.
    monkeypatch.setattr(rung_plan, "calibrate", lambda *a: pytest.fail("calibrated again"))
    assert rung_plan.plan_of(replace(config, budget=60.0)).rungs == [0.3333, 1, 3]


def test_calibration_times_an_epoch_and_a_trials_fixed_cost(tmp_path):
    config = budgeted(tmp_path)
    epoch, fixed = rung_plan.calibrate(config, tuning.load_splits(config))
    assert epoch > 0 and fixed > 0


def test_without_a_budget_the_rungs_follow_max_epochs(tmp_path, monkeypatch):
    monkeypatch.setattr(rung_plan, "calibrate", lambda *a: pytest.fail("no budget, no calibration"))
    config = budgeted(tmp_path, budget=None, max_trials=2)
    assert tuning.run_search(config, stream=io.StringIO()) is True
    assert rung_plan.PLAN_KEY not in records.load_config(config.run_dir)
    assert rung_plan.plan_of(config).rungs == [1, 3]


@pytest.mark.parametrize("promotion, ceiling", [("retrain", 3), ("continue", 2)])
def test_before_each_trial_the_oracle_learns_the_longest_trial_the_budget_still_holds(
    tmp_path, promotion, ceiling
):
    from bench.core.budget import Budget
    from bench.search.progress import Progress
    from bench.search.recorder import TrialRecorder

    config = budgeted(tmp_path, budget=None, max_epochs=9, promotion=promotion)
    budget = Budget(100.0, margin=30.0)
    budget.longest_epoch = 20.0  # 70 s usable: a 3-epoch trial (60 s) fits, 9 epochs do not
    recorder = TrialRecorder(config, tuning.load_splits(config), Progress(None, budget=budget))
    tuner = tuning.make_tuner(config, recorder)
    assert tuner.oracle.rungs == [1, 3, 9]
    tuner.pre_create_trial()
    # Retraining, a promotion costs its rung's epochs (1, 3, 9); continuing, those it adds
    # (1, 2, 6): the longest that fits is 3 epochs afresh, or 2 on from the rung of 1.
    assert tuner.oracle.ceiling == ceiling


def test_the_stop_line_says_what_the_time_left_is_kept_for(tmp_path):
    from bench.core.budget import Budget
    from bench.search.progress import Progress
    from bench.search.recorder import StopSearch, TrialRecorder

    config = budgeted(tmp_path, budget=None, max_epochs=9)
    budget = Budget(100.0, margin=30.0)
    budget.longest_epoch = 20.0
    recorder = TrialRecorder(config, tuning.load_splits(config), Progress(None, budget=budget))
    tuner = tuning.make_tuner(config, recorder)
    budget.keep(60.0, "the confirmation (2 retrainings) and the release")
    with pytest.raises(StopSearch) as stop:
        tuner.pre_create_trial()  # 70 s usable: 60 kept, the next trial may take 20 s
    assert re.fullmatch(
        r"time budget: (100|99) s left, 60 s of it kept for the confirmation \(2 retrainings\) "
        r"and the release; the next trial may take 20 s",
        str(stop.value),
    )


def _trial(val_accuracy: list[float], initial_epoch: int = 0) -> dict:
    return {"initial_epoch": initial_epoch, "history": {"val_accuracy": val_accuracy}}


def test_a_budget_short_of_full_length_says_what_earlier_trials_reached_within_it():
    plan = rung_plan.Plan([1 / 3, 1, 3])
    earlier = [
        _trial([0.985, 0.991, 0.993, 0.994, 0.996]),
        _trial([0.980, 0.989, 0.992, 0.995]),
        _trial([0.999], initial_epoch=3),  # continued from its parent's epochs: not counted
        {"history": None},  # a trial that kept no history
    ]
    words = rung_plan.reach_words(plan, 10, earlier)
    assert words == (
        "this budget's longest training is 3 epochs, short of the 10 of a full-length trial; "
        "in 2 trials of earlier runs of this space on this data, the best validation accuracy "
        "within 3 epochs was 0.9930, and 99.0% took 2 at the fewest, 99.5% took 4 at the fewest"
    )
    assert rung_plan.reach_words(plan, 3, earlier) is None  # its top rung is full length
    first = rung_plan.reach_words(rung_plan.Plan([1 / 3]), 10, [])
    assert first.endswith("; no earlier run of this space on this data shows what that reaches")
    assert "longest training is 1/3 epochs" in first
    never = rung_plan.reach_words(rung_plan.Plan([1 / 3]), 10, [_trial([0.98])])
    assert (
        "in 1 trial of earlier runs of this space on this data, their histories count whole"
        in never
    )
    assert never.endswith("epochs only, and 99.0% never came, 99.5% never came")
