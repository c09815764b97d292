"""bench.perf.policy_stats: the field's figures, paired tests, ranks over time and the rule,
on runs whose numbers are chosen so that every expected value can be worked out by hand."""

import math

import pytest

from bench.perf import doc_tables, policy_stats

T_95_2_DF = 4.303  # Student's t, 97.5th percentile, 2 degrees of freedom
T_95_1_DF = 12.706  # the same, 1 degree of freedom
INCUMBENT = "asha-continue"


def run(policy, seed, test, curve=None, configurations=10, wall_minutes=15.0) -> dict:
    """A run whose pick (test accuracy `test`) came at minute 1, its validation the same."""
    return {
        "policy": policy,
        "seed": seed,
        "search_seed": (seed + 1) * 1_000_000,
        "trials": configurations,
        "epochs": 6 * configurations,
        "best_val_accuracy": test,
        "configurations": configurations,
        "wall_minutes": wall_minutes,
        "test_accuracy_of_pick": test,
        "curve": [[1.0, test, test]] if curve is None else curve,
    }


def field_of(**tests) -> list[dict]:
    """Runs of each policy (underscores for hyphens) at seeds 0, 1, ... with these picks."""
    return [
        run(policy.replace("_", "-"), seed, test)
        for policy, values in tests.items()
        for seed, test in enumerate(values)
    ]


def test_the_auc_is_the_mean_best_validation_over_a_span_common_to_the_runs():
    curve = [[2.0, 0.90, 0.985], [4.0, 0.95, 0.991], [8.0, 0.97, 0.996]]
    # From its own first event: (0.90 * 2 + 0.95 * 4 + 0.97 * 2) / 8 minutes.
    assert policy_stats.auc(curve, 10.0) == pytest.approx(0.9425)
    # From minute 3, when a later run had its first pick: (0.90 + 0.95 * 4 + 0.97 * 2) / 7.
    assert policy_stats.auc(curve, 10.0, 3.0) == pytest.approx(6.64 / 7)
    assert policy_stats.auc([[5.0, 0.9, 0.9], [12.0, 1.0, 1.0]], 10.0) == pytest.approx(0.9)
    assert policy_stats.auc([], 10.0) is None
    late = {"curve": [[3.0, 0.99, 0.99]]}
    assert policy_stats.common_start([{"curve": curve}, late, {"curve": []}]) == 3.0


def test_each_policys_figures_over_its_seeds():
    b_curves = [
        [[1.0, 0.98, 0.985], [3.0, 0.99, 0.991]],
        [[5.0, 0.99, 0.992]],
        [[2.0, 0.97, 0.980]],
    ]
    runs = [
        *(run("a", s, t) for s, t in enumerate((0.995, 0.996, 0.997))),
        *(run("b", s, c[-1][2], curve=c, wall_minutes=7.5) for s, c in enumerate(b_curves)),
        *(run("c", s, t) for s, t in enumerate((0.970, 0.971, 0.972))),
    ]
    stats = policy_stats.field(runs, budget_s=600, incumbent="a")
    a, b = stats["policies"]["a"], stats["policies"]["b"]
    assert a["pick_test"]["mean"] == pytest.approx(0.996)
    half = (a["pick_test"]["high"] - a["pick_test"]["low"]) / 2
    assert half == pytest.approx(T_95_2_DF * 0.001 / math.sqrt(3), rel=1e-3)
    # Every run is scored from minute 5, b's latest first pick: b's AUCs 0.99, 0.99 and 0.97.
    assert b["auc"]["mean"] == pytest.approx((0.99 + 0.99 + 0.97) / 3)
    assert a["auc"]["mean"] == pytest.approx(0.996)
    assert b["configs_per_hour"] == pytest.approx(80.0)  # 10 in 7.5 minutes
    assert b["minutes_to"]["0.990"] == {"mean": 4.0, "reached": 2, "of": 3}  # minutes 3 and 5
    assert b["minutes_to"]["0.995"] == {"mean": None, "reached": 0, "of": 3}
    # a > b > c at every seed: rank sums 3, 6, 9; chi-square 12/36 * 126 - 36 = 6 on 2 df.
    assert stats["friedman"]["pick_test"] == pytest.approx(math.exp(-3.0))
    assert b["against_incumbent"]["ahead"] == 0
    assert b["against_incumbent"]["wilcoxon_pick_test"] == pytest.approx(2 / 2**3)
    assert a["against_incumbent"] is None
    assert stats["winner"] is None and stats["verdict"].startswith("no verdict: 3 seeds")


LEADS = dict(
    asha_continue=(0.990, 0.990, 0.990, 0.990, 0.990),
    optuna=(0.992, 0.993, 0.994, 0.995, 0.989),  # ahead at 4 of 5 seeds
    random=(0.980, 0.981, 0.982, 0.983, 0.984),  # behind at every seed
)


def test_a_policy_ahead_at_four_of_five_seeds_with_a_small_friedman_p_wins():
    stats = policy_stats.field(field_of(**LEADS), budget_s=900)
    # Rank sums optuna 4 * 1 + 2, asha-continue 4 * 2 + 1, random 15: chi-square 8.4 on 2 df.
    assert stats["friedman"]["pick_test"] == pytest.approx(math.exp(-4.2))
    optuna = stats["policies"]["optuna"]["against_incumbent"]
    assert (optuna["ahead"], optuna["seeds"]) == (4, 5)
    # Signed ranks 2, 3, 4, 5 against 1: 2 of the 32 sign patterns are as uneven, doubled.
    assert optuna["wilcoxon_pick_test"] == pytest.approx(4 / 32)
    # Behind at all 5 seeds is as far as Wilcoxon goes with 5 seeds: p = 0.0625, not < 0.05.
    behind = stats["policies"]["random"]["against_incumbent"]["wilcoxon_pick_test"]
    assert behind == pytest.approx(2 / 32)
    assert stats["winner"] == "optuna"
    assert stats["verdict"] == f"optuna replaces {INCUMBENT}"


def test_a_policy_that_leads_on_the_mean_by_one_lucky_seed_does_not_win():
    lucky = {**LEADS, "optuna": (0.989, 0.989, 0.989, 0.989, 0.999)}  # mean 0.991 > 0.990
    stats = policy_stats.field(field_of(**lucky), budget_s=900)
    line = stats["policies"]["optuna"]
    assert line["pick_test"]["mean"] > stats["policies"][INCUMBENT]["pick_test"]["mean"]
    assert stats["friedman"]["pick_test"] < policy_stats.SIGNIFICANCE
    assert line["against_incumbent"]["ahead"] == 1
    assert stats["winner"] is None
    assert stats["verdict"] == f"no policy meets the rule; {INCUMBENT} stays"


def test_the_rule_also_asks_for_the_auc_five_seeds_and_a_field_of_three():
    runs = field_of(**LEADS)
    slow = [
        {**r, "curve": [[1.0, 0.95, 0.95], [14.0, 0.999, r["test_accuracy_of_pick"]]]}
        if r["policy"] == "optuna"
        else r
        for r in runs
    ]  # the same picks, found at minute 14 of 15: its AUC, (0.95 * 13 + 0.999) / 14, is lower
    assert policy_stats.field(slow, budget_s=900)["winner"] is None
    four_seeds = [r for r in runs if r["seed"] < 4]  # optuna ahead at all 4
    assert policy_stats.field(four_seeds, budget_s=900)["winner"] is None
    two = [r for r in runs if r["policy"] != "random"]
    stats = policy_stats.field(two, budget_s=900)
    assert stats["friedman"]["pick_test"] is None and stats["winner"] is None
    alone = policy_stats.field([r for r in runs if r["policy"] != INCUMBENT], budget_s=900)
    assert alone["verdict"] == f"no verdict: {INCUMBENT}, the incumbent, was not run"


def test_ranks_over_time_average_each_seeds_ranking_and_bands_its_mean():
    runs = [
        run("p", 0, 0.9, curve=[[0.3, 0.90, 0.9]]),
        run("q", 0, 0.9, curve=[[0.6, 0.95, 0.9]]),
        run("r", 0, None, curve=[]),  # no result at all: last throughout
        run("p", 1, 0.9, curve=[[0.2, 0.97, 0.9]]),
        run("q", 1, 0.9, curve=[[0.2, 0.96, 0.9]]),
        run("r", 1, 0.9, curve=[[0.2, 0.97, 0.9]]),  # ties p
        run("q", 2, 0.9, curve=[[0.1, 0.99, 0.9]]),  # a seed not every policy ran
    ]
    best = policy_stats.best_so_far(runs, budget_minutes=1.0)
    assert sorted(set(best["minutes"])) == [0.25, 0.5, 0.75, 1.0]
    ranks = policy_stats.rank_over_time(best).set_index(["policy", "minutes"])["rank"]
    # At 0.25 seed 0 has no result yet: all three tie at 2; seed 1: p and r 1.5, q 3.
    assert [ranks["p", 0.25], ranks["q", 0.25], ranks["r", 0.25]] == [1.75, 2.5, 1.75]
    # At 0.5 seed 0 has only p: 1, q and r 2.5.
    assert [ranks["p", 0.5], ranks["q", 0.5], ranks["r", 0.5]] == [1.25, 2.75, 2.0]
    assert [ranks["p", 0.75], ranks["q", 0.75], ranks["r", 0.75]] == [1.75, 2.0, 2.25]
    bands = policy_stats.curve_bands(best).set_index(["policy", "minutes"])
    p = bands.loc[("p", 0.75)]
    assert p["mean"] == pytest.approx(0.935) and p["seeds"] == 2
    sd = math.sqrt(2 * 0.035**2)
    assert p["high"] - p["mean"] == pytest.approx(T_95_1_DF * sd / math.sqrt(2), rel=1e-3)
    q = bands.loc[("q", 0.5)]  # seed 1's 0.96 and seed 2's 0.99; seed 0 had no result yet
    assert q["seeds"] == 2 and q["mean"] == pytest.approx(0.975)
    assert ("r", 0.25) in bands.index and bands.loc[("r", 0.25)]["seeds"] == 1
    assert math.isnan(bands.loc[("r", 0.25)]["low"])


def test_the_tables_show_each_policy_with_friedman_the_rule_and_the_verdict():
    result = {
        "command": "make bench-search",
        "measured_at": "2026-12-01T16:00:00",
        "budget_seconds": 900,
        "runs": field_of(**LEADS),
    }
    rendered = doc_tables.table("search", result)
    header, separator, *rows = rendered.split("\n\n")[0].split("\n")
    assert header.count("|") == separator.count("|") == rows[0].count("|")
    assert [row.split(" | ")[3] for row in rows] == [INCUMBENT, "optuna", "random"]
    optuna = rows[1].split(" | ")[3:]
    assert optuna[:2] == ["optuna", "5"]
    assert optuna[2].startswith("0.9926 ± ")
    assert optuna[5:] == ["1.0 (4 of 5)", "1.0 (1 of 5)", "4 of 5", "0.125, 0.125 |"]
    assert "Friedman over 3 policies and 5 seeds: p = 0.015 (pick's test accuracy)" in rendered
    assert f"verdict: optuna replaces {INCUMBENT}" in rendered
    runs = rendered.split("\n\n")[-1].split("\n")[2:]  # then every run, in the order it ran
    assert len(runs) == 15
    assert (
        runs[9]
        == "| optuna | 4 | 5000000 | 10 | 10 | 60 | 0.9890 | 0.9890 | not reached | not reached |"
    )
    printed = policy_stats.text_table(policy_stats.field(result["runs"], 900)).splitlines()
    assert len(printed) == 1 + 3 + 3 and printed[2].startswith("optuna ")
    assert printed[-1] == f"verdict: optuna replaces {INCUMBENT}"
