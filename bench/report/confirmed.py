"""The report's section on `bench confirm` seeds: ranking with intervals, McNemar's tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.core import records
from bench.report.compare import confirmed_table
from bench.report.loading import UNREADABLE, Run, confirmed_correct
from bench.report.render import Block, Heading, Paragraph, Table, cells

SIGNIFICANCE_PAIRS = 3  # rank 1 vs 2, 2 vs 3, 3 vs 4 of the confirmed ranking
_CONFIRMED_NOTE = (
    "`bench confirm`, or the night itself with --confirm-seeds, retrained each of a run's top "
    "trials (by validation accuracy) with fresh seeds on the same splits; the search's own "
    "trial is not counted, since it was picked for being lucky too. Ranked by mean VALIDATION "
    "accuracy over the seeds (ties: lower mean validation loss), as the release picks; test "
    "accuracy beside it with the standard deviation and the 95% t interval of the mean (ci95; "
    "none for one seed); likewise test loss."
)
_PAIRS_VERDICT = (
    "better_only and worse_only count the digits only one of the two got right; p_value is the "
    "chance of a split at least this uneven if both were equally accurate."
)


def section(runs: list[Run]) -> list[Block]:
    """The confirmed ranking and, for its top neighbours, whether their difference is real."""
    confirmed = [record for run in runs for record in run.confirmed]
    if not confirmed:
        return []
    from bench.core import stats  # scipy and statsmodels load only for confirmed runs

    ranking = confirmed_table(confirmed)
    blocks: list[Block] = [
        Heading("Confirmed with repeated seeds", 2),
        Paragraph(_CONFIRMED_NOTE),
        Table(_with_intervals(cells(ranking))),
    ]
    pairs = _pairs(runs, ranking)
    if len(pairs):
        note = f"{stats.MCNEMAR} on the test digits, the matched seeds pooled. {_PAIRS_VERDICT}"
        blocks += [Heading("Are the differences real?", 3), Paragraph(note), Table(cells(pairs))]
        if verdict := defaults_verdict(pairs):
            blocks.append(Paragraph(verdict))
    return blocks


def defaults_verdict(pairs: pd.DataFrame) -> str | None:
    """One plain sentence on whether the winner beat the space's defaults, where both were
    confirmed."""
    winner = pairs[pairs["better"].str.startswith("#1 ")]
    if winner["better"].str.endswith("(the defaults)").any():
        return "The space's defaults are the confirmed winner: nothing confirmed beat them."
    against = winner[winner["worse"].str.endswith("(the defaults)")]
    if against.empty:
        return None
    row = against.iloc[0]
    if str(row["verdict"]).startswith("significant"):
        return f"The winner {row['better']} beats the space's defaults significantly."
    return (
        f"Nothing beat the space's defaults significantly: the winner {row['better']} against "
        f"{row['worse']} could be seed noise ({row['verdict']})."
    )


def _with_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """Low and high columns of a confirmed ranking's cells joined into one "low to high"."""
    for metric in ("test_accuracy", "test_loss"):
        low, high = table.pop(f"{metric}_low"), table.pop(f"{metric}_high")
        joined = [f"{a} to {b}" if a else "" for a, b in zip(low, high, strict=True)]
        table.insert(table.columns.get_loc(f"{metric}_sd") + 1, f"{metric}_ci95", joined)
    return table


def _pairs(runs: list[Run], ranking: pd.DataFrame) -> pd.DataFrame:
    """McNemar's test for neighbours in the confirmed ranking, over the seeds both have."""
    # (run, trial) -> {seed: (its run, its confirm record)}
    by_config: dict[tuple, dict] = {}
    for run in runs:
        for r in run.confirmed:
            by_config.setdefault((run.name, r["trial_id"]), {})[r["seed"]] = (run, r)
    top = ranking.head(SIGNIFICANCE_PAIRS + 1).to_dict("records")
    pairs = list(zip(top, top[1:], strict=False))
    rows = ranking.to_dict("records")
    defaults = defaults_of(runs)
    behind = [row for row in rows[1:] if (row["run"], row["trial_id"]) in defaults]
    if rows and behind and (rows[0], behind[0]) not in pairs:
        pairs.append((rows[0], behind[0]))  # the winner against the space's defaults
    return pd.DataFrame([_pair_row(by_config, better, worse, defaults) for better, worse in pairs])


def defaults_of(runs: list[Run]) -> set[tuple[str, str]]:
    """(run, trial id) of the confirmed trials that are their run's first configuration: the
    space's defaults."""
    found = set()
    for run in runs:
        first = records.defaults_hyperparameters(run.records)
        for record in run.records:
            if record["hyperparameters"] == first:
                found.add((run.name, record["trial_id"]))
    return found


def _pair_row(by_config: dict, better: dict, worse: dict, defaults: set) -> dict:
    pair = [by_config[(row["run"], row["trial_id"])] for row in (better, worse)]
    seeds = sorted(pair[0].keys() & pair[1].keys())
    test = _mcnemar(pair, seeds)
    return {
        "better": _name(better, defaults),
        "worse": _name(worse, defaults),
        "seeds": len(seeds),
        "better_only": test["a_only"],
        "worse_only": test["b_only"],
        "p_value": test["p_value"],
        "verdict": _verdict(test, len(seeds)),
    }


def _name(row: dict, defaults: set) -> str:
    name = f"#{row['rank']} {row['run']}/{row['trial_id']}"
    return f"{name} (the defaults)" if (row["run"], row["trial_id"]) in defaults else name


def _mcnemar(pair: list[dict], seeds: list) -> dict:
    """stats.mcnemar_pair over the pooled seeds; an "error" when predictions are unreadable."""
    from bench.core import stats

    test = {"a_only": None, "b_only": None, "p_value": None}
    if not seeds:
        return test
    try:
        correct = [np.concatenate([confirmed_correct(*side[s]) for s in seeds]) for side in pair]
        return stats.mcnemar_pair(*correct)
    except UNREADABLE as exc:
        return {**test, "error": str(exc)}


def _verdict(test: dict, seeds: int) -> str:
    from bench.core import stats

    if "error" in test:
        return f"not tested: predictions unreadable ({test['error']})"
    if not seeds:
        return "not tested: no seed in common"
    if test["p_value"] < stats.ALPHA:
        return f"significant at {stats.ALPHA:.0%}"
    return "not significant: could be seed noise"
