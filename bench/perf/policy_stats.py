"""The field of `make bench-search` over its seeds: each policy's figures, paired tests, ranks
over time, and the rule by which a policy replaces the incumbent.

The rule is stated before the runs (RULE): a policy replaces the incumbent only if its mean
test accuracy of the pick and its mean area under the best-so-far validation curve are both
higher than the incumbent's, Friedman's test over all the policies gives p < 0.05 on the pick's
test accuracy, and its pick beats the incumbent's at 4 of 5 seeds at least. The lead is a count
of seeds rather than a Wilcoxon signed-rank p: with 5 seeds the smallest two-sided p Wilcoxon
can give is 2 / 2**5 = 0.0625, so no lead over 5 seeds reaches p < 0.05 that way. Its p is
shown beside the count all the same.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench.core.stats import mean_interval
from bench.perf import policies

SIGNIFICANCE = 0.05
RULE_SEEDS = 5  # the seeds the rule was stated for: fewer decide nothing
AHEAD = (4, 5)  # the share of the paired seeds at which the pick must beat the incumbent's
MIN_FRIEDMAN_POLICIES = 3  # scipy's friedmanchisquare takes three samples at least
MIN_PAIRED_SEEDS = 2
GRID_STEP_MINUTES = 0.25  # the common grid of the curves and ranks over time
MINUTES_PER_HOUR = 60.0
RULE = (
    f"{policies.INCUMBENT} (what `make search` runs) is replaced only by a policy whose mean "
    "test accuracy of the pick and mean area under the best-so-far validation curve are both "
    f"higher than its own, with Friedman's test over all policies at p < {SIGNIFICANCE} on the "
    f"pick's test accuracy, and whose pick beats its pick at {AHEAD[0]} of {AHEAD[1]} seeds at "
    f"least (a Wilcoxon p cannot fall below 0.0625 with 5 seeds); of several, the best mean "
    f"pick. Fewer than {RULE_SEEDS} seeds decide nothing."
)
TARGET_KEYS = tuple(policies.target_key(t) for t in policies.TARGETS)
FRAME_COLUMNS = ("policy", "seed", "pick_test", "auc", "configs_per_hour", *TARGET_KEYS)


def auc(curve: list, budget_minutes: float, start: float | None = None) -> float | None:
    """The area under a run's best-so-far validation accuracy over wall time from `start` to
    the budget's end, divided by that span, so a mean accuracy: the step function of the
    curve's [minutes, best val, its test] events. `start` is the same for every run compared
    (runs_frame: the latest first event of them all), so that each has a pick over the whole
    span and a run that starts late is not judged over a shorter, later one; before a run's
    own first event it counts 0. None (the default) starts at the run's first event. An event
    past the end counts at the end. None for a run without events."""
    if not curve:
        return None
    minutes = np.minimum([event[0] for event in curve], budget_minutes)
    values = np.array([event[1] for event in curve], dtype=np.float64)
    start = minutes[0] if start is None else min(start, budget_minutes)
    if budget_minutes - start <= 0:
        return float(values[-1])
    edges = np.clip(np.append(minutes, budget_minutes), start, budget_minutes)
    return float(np.sum(values * np.diff(edges)) / (budget_minutes - start))


def common_start(runs: list[dict]) -> float | None:
    """The latest first event of the runs: from then on every run that has events has a pick."""
    firsts = [run["curve"][0][0] for run in runs if run["curve"]]
    return max(firsts) if firsts else None


def runs_frame(runs: list[dict], budget_minutes: float) -> pd.DataFrame:
    """One row per run: the pick's test accuracy, the AUC, configurations per hour of the run's
    wall time, and the minutes to each test-accuracy target (NaN where not reached). A run that
    finished no trial scores 0: it lost its seed."""
    rows, start = [], common_start(runs)
    for run in runs:
        hours = run["wall_minutes"] / MINUTES_PER_HOUR
        reached = {
            policies.target_key(t): policies.minutes_to(run["curve"], t) for t in policies.TARGETS
        }
        rows.append(
            {
                "policy": run["policy"],
                "seed": run["seed"],
                "pick_test": run["test_accuracy_of_pick"] or 0.0,
                "auc": auc(run["curve"], budget_minutes, start) or 0.0,
                "configs_per_hour": run["configurations"] / hours if hours > 0 else math.nan,
                **{key: math.nan if m is None else m for key, m in reached.items()},
            }
        )
    return pd.DataFrame(rows, columns=FRAME_COLUMNS).astype({k: float for k in TARGET_KEYS})


def blocks(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """metric as a policies x seeds table over the seeds that every policy ran."""
    order = list(dict.fromkeys(frame["policy"]))
    table = frame.pivot(index="policy", columns="seed", values=metric).reindex(order)
    return table.dropna(axis=1)


def friedman(table: pd.DataFrame) -> float | None:
    """Friedman's p over the policies (rows) across the seeds (columns); None for fewer than 3
    policies or 2 seeds; 1.0 when every seed ties them all."""
    if table.shape[0] < MIN_FRIEDMAN_POLICIES or table.shape[1] < MIN_PAIRED_SEEDS:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 when every seed is a tie
        p = float(sps.friedmanchisquare(*table.to_numpy()).pvalue)
    return 1.0 if math.isnan(p) else p


def wilcoxon(a, b) -> float | None:
    """The two-sided Wilcoxon signed-rank p of paired a and b; None for fewer than 2 pairs,
    1.0 when they are all equal."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < MIN_PAIRED_SEEDS:
        return None
    if not np.any(a != b):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ties and zeros: scipy says it falls back, as it should
        return float(sps.wilcoxon(a, b).pvalue)


def _interval(values) -> dict:
    line = mean_interval(values)
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in line.items()}


def _against(tests, aucs, policy: str, incumbent: str) -> dict | None:
    """The policy's pick and AUC seed by seed against the incumbent's."""
    if policy == incumbent or incumbent not in tests.index:
        return None
    ours, theirs = tests.loc[policy], tests.loc[incumbent]
    return {
        "seeds": len(ours),
        "ahead": int((ours > theirs).sum()),
        "wilcoxon_pick_test": wilcoxon(ours, theirs),
        "wilcoxon_auc": wilcoxon(aucs.loc[policy], aucs.loc[incumbent]),
    }


def policy_line(part: pd.DataFrame) -> dict:
    """One policy's figures over its seeds: means with 95% t intervals, configurations per
    hour, and for each target the mean minutes over the seeds that reached it, and how many."""
    reached = {
        key: {
            "mean": None if part[key].isna().all() else float(part[key].mean()),
            "reached": int(part[key].notna().sum()),
            "of": len(part),
        }
        for key in TARGET_KEYS
    }
    rate = part["configs_per_hour"].dropna()
    return {
        "seeds": len(part),
        "pick_test": _interval(part["pick_test"]),
        "auc": _interval(part["auc"]),
        "configs_per_hour": float(rate.mean()) if len(rate) else None,
        "minutes_to": reached,
    }


def field(runs: list[dict], budget_s: float, incumbent: str = policies.INCUMBENT) -> dict:
    """The field's statistics from the per-run rows, the winner by RULE and its verdict."""
    frame = runs_frame(runs, budget_s / 60.0)
    tests, aucs = blocks(frame, "pick_test"), blocks(frame, "auc")
    lines = {}
    for policy, part in frame.groupby("policy", sort=False):
        lines[policy] = policy_line(part)
        lines[policy]["against_incumbent"] = _against(tests, aucs, policy, incumbent)
    stats = {
        "incumbent": incumbent,
        "paired_seeds": [int(s) for s in tests.columns],
        "friedman": {"pick_test": friedman(tests), "auc": friedman(aucs)},
        "policies": lines,
        "rule": RULE,
    }
    stats["winner"] = winner(stats)
    stats["verdict"] = verdict(stats)
    return stats


def _meets_rule(stats: dict, policy: str) -> bool:
    lines, against = stats["policies"], stats["policies"][policy]["against_incumbent"]
    if against is None or against["seeds"] < RULE_SEEDS:
        return False
    ours, theirs = lines[policy], lines[stats["incumbent"]]
    return (
        against["ahead"] * AHEAD[1] >= AHEAD[0] * against["seeds"]
        and ours["pick_test"]["mean"] > theirs["pick_test"]["mean"]
        and ours["auc"]["mean"] > theirs["auc"]["mean"]
    )


def winner(stats: dict) -> str | None:
    """The policy that replaces the incumbent by RULE, from the field's statistics (never
    from one seed); None when none does and the incumbent stays."""
    p = stats["friedman"]["pick_test"]
    if stats["incumbent"] not in stats["policies"] or p is None or p >= SIGNIFICANCE:
        return None
    passing = [name for name in stats["policies"] if _meets_rule(stats, name)]
    return max(passing, key=lambda name: stats["policies"][name]["pick_test"]["mean"], default=None)


def verdict(stats: dict) -> str:
    """The rule's verdict in words."""
    incumbent, seeds = stats["incumbent"], len(stats["paired_seeds"])
    if incumbent not in stats["policies"]:
        return f"no verdict: {incumbent}, the incumbent, was not run"
    if seeds < RULE_SEEDS:
        return (
            f"no verdict: {seeds} seeds paired, the rule asks for {RULE_SEEDS}; {incumbent} stays"
        )
    if stats["winner"]:
        return f"{stats['winner']} replaces {incumbent}"
    return f"no policy meets the rule; {incumbent} stays"


# -- over time --------------------------------------------------------------------------------


def grid(budget_minutes: float) -> np.ndarray:
    """The minutes the curves and ranks are read at: every GRID_STEP_MINUTES to the budget."""
    count = max(1, math.floor(budget_minutes / GRID_STEP_MINUTES + 1e-9))
    return GRID_STEP_MINUTES * np.arange(1, count + 1)


def best_so_far(runs: list[dict], budget_minutes: float) -> pd.DataFrame:
    """Tidy rows (policy, seed, minutes, val): each run's best-so-far validation accuracy at
    each minute of the grid, NaN before its first event."""
    minutes, frames = grid(budget_minutes), []
    for run in runs:
        times = np.array([event[0] for event in run["curve"]], dtype=np.float64)
        values = np.array([event[1] for event in run["curve"]] or [math.nan], dtype=np.float64)
        at = np.searchsorted(times, minutes, side="right") - 1
        val = np.where(at >= 0, values[np.maximum(at, 0)], math.nan)
        frames.append(
            pd.DataFrame(
                {"policy": run["policy"], "seed": run["seed"], "minutes": minutes, "val": val}
            )
        )
    return pd.concat(frames, ignore_index=True)


def rank_over_time(best: pd.DataFrame) -> pd.DataFrame:
    """Tidy rows (policy, minutes, rank): each policy's rank among the policies by best-so-far
    validation accuracy at each minute (1 the best; ties share their mean rank; no result yet
    ranks below every result), averaged over the seeds that every policy ran."""
    count = best["policy"].nunique()
    complete = best.groupby("seed")["policy"].nunique()
    part = best[best["seed"].isin(complete.index[complete == count])]
    ranks = part.groupby(["seed", "minutes"])["val"].rank(
        ascending=False, method="average", na_option="bottom"
    )
    ranked = part.assign(rank=ranks).groupby(["policy", "minutes"], sort=False, as_index=False)
    return ranked["rank"].mean()


def curve_bands(best: pd.DataFrame) -> pd.DataFrame:
    """Tidy rows (policy, minutes, mean, low, high, seeds): the mean best-so-far validation
    accuracy over the seeds with a result by then, and its 95% t interval (NaN for one seed)."""
    rows = []
    for (policy, minutes), part in best.groupby(["policy", "minutes"], sort=False):
        values = part["val"].dropna()
        if len(values):
            line = mean_interval(values)
            rows.append(
                {
                    "policy": policy,
                    "minutes": minutes,
                    "mean": line["mean"],
                    "low": line["low"],
                    "high": line["high"],
                    "seeds": line["n"],
                }
            )
    return pd.DataFrame(rows, columns=["policy", "minutes", "mean", "low", "high", "seeds"])


# -- tables -------------------------------------------------------------------------------------

COLUMNS = (
    "policy", "seeds", "pick's test accuracy (95% interval)", "AUC of best val (95% interval)",
    "configurations/h", *(f"minutes to test {key} (seeds)" for key in TARGET_KEYS),
    "ahead of the incumbent (seeds)", "Wilcoxon p vs the incumbent: test, AUC",
)  # fmt: skip


def cells(policy: str, line: dict) -> list[str]:
    """The per-policy cells of COLUMNS, for the printed table and the doc's."""
    against = line["against_incumbent"]
    reached = line["minutes_to"]
    return [
        policy,
        str(line["seeds"]),
        _plus_minus(line["pick_test"]),
        _plus_minus(line["auc"]),
        "" if line["configs_per_hour"] is None else f"{line['configs_per_hour']:.0f}",
        *(_reached(reached[key]) for key in TARGET_KEYS),
        "incumbent" if against is None else f"{against['ahead']} of {against['seeds']}",
        ""
        if against is None
        else f"{_p(against['wilcoxon_pick_test'])}, {_p(against['wilcoxon_auc'])}",
    ]


def footer(stats: dict) -> list[str]:
    """The lines under the table: Friedman's test, the rule and its verdict."""
    tests = stats["friedman"]
    return [
        f"Friedman over {len(stats['policies'])} policies and {len(stats['paired_seeds'])} "
        f"seeds: p = {_p(tests['pick_test'])} (pick's test accuracy), {_p(tests['auc'])} (AUC)",
        f"rule: {stats['rule']}",
        f"verdict: {stats['verdict']}",
    ]


def text_table(stats: dict) -> str:
    """The field as the command prints it: one line per policy, then the footer."""
    rows = [list(COLUMNS), *(cells(name, line) for name, line in stats["policies"].items())]
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join([*(line.rstrip() for line in lines), *footer(stats)])


def _plus_minus(line: dict) -> str:
    if line["low"] is None:
        return f"{line['mean']:.4f}"
    return f"{line['mean']:.4f} ± {(line['high'] - line['low']) / 2:.4f}"


def _reached(target: dict) -> str:
    minutes = "not reached" if target["mean"] is None else f"{target['mean']:.1f}"
    return f"{minutes} ({target['reached']} of {target['of']})"


def _p(value) -> str:
    return "-" if value is None else f"{value:.3g}"
