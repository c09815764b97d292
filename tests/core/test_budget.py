"""The time budget's cost model of a trial, its estimates and the words of its stop line."""

import re

import pytest

from bench.core.budget import MIN_BUDGET_S, Budget, Cost, check_budget, fit_cost
from bench.errors import ConfigError

FIXED_S, EPOCH_S = 15.0, 20.0  # a trial's fixed seconds (tracing, evaluation), an epoch's


def seconds(epochs: float) -> float:
    return FIXED_S + EPOCH_S * epochs


def test_a_cost_model_tells_a_trials_fixed_seconds_from_its_epochs():
    cost = fit_cost((e, seconds(e)) for e in (1 / 3, 1 / 3, 2 / 3, 2, 6))
    assert cost.fixed == pytest.approx(FIXED_S) and cost.per_epoch == pytest.approx(EPOCH_S)
    assert cost.seconds(9, scale=1.2, fits=2) == pytest.approx(2 * FIXED_S + 1.2 * 9 * EPOCH_S)
    assert fit_cost([(1, 35.0), (3, 75.0)]) is None  # too few trainings
    assert fit_cost([(3, 70.0), (3, 75.0), (3, 80.0)]) is None  # all of one length
    assert fit_cost([(1, 90.0), (2, 60.0), (3, 30.0)]) is None  # longer, yet faster: noise
    through_zero = fit_cost([(1, 9.0), (2, 21.0), (3, 30.0)])  # a fixed part below zero
    assert through_zero.fixed == 0.0 and through_zero.per_epoch == pytest.approx(141 / 14)


def test_a_screens_fixed_seconds_do_not_make_every_epoch_of_a_long_trial_as_long():
    budget = Budget(3600.0)
    for epochs in (1 / 3, 1 / 3, 2 / 3, 2):  # screens, a promotion to 1 and one to 3 epochs
        budget.note_trial(seconds(epochs), epochs)
    # The slowest epoch, fixed seconds included, was a screen's: 21.7 s for a third of one,
    # 65 s an epoch. A trial of 9 epochs takes 195 s, not 585.
    assert budget.longest_epoch == pytest.approx(seconds(1 / 3) * 3)
    assert budget.estimate(9) == pytest.approx(seconds(9))
    assert budget.estimate(1 / 3) == pytest.approx(seconds(1 / 3))
    budget.note_trial(seconds(1) + 10.0, 1)  # a slower configuration: 30 s an epoch
    assert budget.estimate(3) == pytest.approx(budget.cost().fixed + 3 * 30.0, rel=0.05)


def test_before_its_trials_fit_a_model_the_budget_goes_by_the_calibration():
    budget = Budget(3600.0, prior=Cost(FIXED_S, EPOCH_S))
    assert budget.estimate(9) == pytest.approx(seconds(9))
    budget.note_trial(seconds(1) + 10.0, 1)  # slower than the calibration said
    assert budget.estimate(9) == pytest.approx(FIXED_S + 9 * (EPOCH_S + 10.0))
    assert Budget(3600.0).estimate(9) == 0.0  # nothing known: the first trial just starts


def test_the_time_left_says_what_the_reserve_keeps_it_for():
    budget = Budget(3600.0)
    assert re.fullmatch(r"(3600|3599) s left", budget.left_words())
    budget.keep(2890.0, "the confirmation (8 retrainings) and the release")
    assert budget.reserve == 2890.0
    assert re.fullmatch(
        r"(3600|3599) s left, 2890 s of it kept for the confirmation \(8 retrainings\) and "
        r"the release",
        budget.left_words(),
    )
    budget.keep(5000.0, "the release")
    assert budget.left_words().endswith(" s left, all of it kept for the release")
    assert Budget(None).left_words() == "no time limit"


def test_a_budget_without_room_for_a_trial_never_says_it_may_take_0_s():
    spent = Budget(seconds=1.0)
    assert "may take 0 s" not in spent.no_room_words()
    assert "too little for a trial" in spent.no_room_words()
    spent.note_trial(12.0, 1)
    assert spent.no_room_words(1).endswith("the next trial may take 12 s")


def test_a_persons_budget_must_hold_a_trial_and_the_report():
    assert check_budget(None) is None
    assert check_budget(MIN_BUDGET_S) == MIN_BUDGET_S
    with pytest.raises(ConfigError, match=r"^--budget 32s is too short .* at least 33s$"):
        check_budget(MIN_BUDGET_S - 1)
