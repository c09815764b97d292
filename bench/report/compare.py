"""Tables that compare: runs against each other, and confirmed configurations over their seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench.core import records
from bench.report.columns import architecture, completed

PERCENTAGE_POINTS = 100.0  # an accuracy difference of 0.001 is 0.1 points

# A later run's best test accuracy that falls more than this (0.1 percentage points, 10 of
# 10,000 test digits) is flagged; at 99.5% one model's binomial standard error is already
# 0.07 points, so smaller moves are noise. Test loss is flagged when it rises more than 10%.
REGRESSION_ACCURACY = 0.001
REGRESSION_LOSS_RATIO = 1.10
CHANGE_COLUMNS = (
    "before_accuracy",
    "after_accuracy",
    "change_points",
    "before_loss",
    "after_loss",
    "regression",
)


def _best_by(done: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return done.groupby(keys).agg(accuracy=("test_accuracy", "max"), loss=("test_loss", "min"))


def _changes(before: pd.DataFrame, after: pd.DataFrame, how: str) -> pd.DataFrame:
    # Rank within each run by best test accuracy: across datasets, ranks are what compare.
    before = before.assign(rank=before["accuracy"].rank(ascending=False, method="min"))
    after = after.assign(rank=after["accuracy"].rank(ascending=False, method="min"))
    both = before.add_suffix("_before").join(after.add_suffix("_after"), how=how)
    frame = pd.DataFrame(
        {
            "before_rank": both["rank_before"],
            "after_rank": both["rank_after"],
            "before_accuracy": both["accuracy_before"],
            "after_accuracy": both["accuracy_after"],
            "change_points": (both["accuracy_after"] - both["accuracy_before"]) * PERCENTAGE_POINTS,
            "before_loss": both["loss_before"],
            "after_loss": both["loss_after"],
        }
    )
    frame["regression"] = [_regression(row) for row in frame.itertuples()]
    return frame.reset_index()


def _regression(row) -> str:
    if pd.isna(row.after_accuracy):
        return "no finished trial"
    if pd.isna(row.before_accuracy):
        return ""  # new here
    flags = []
    if row.after_accuracy < row.before_accuracy - REGRESSION_ACCURACY:
        flags.append("accuracy down")
    if row.after_loss > row.before_loss * REGRESSION_LOSS_RATIO:
        flags.append("loss up")
    return ", ".join(flags)


def changes_per_space(df: pd.DataFrame, before: str, after: str) -> pd.DataFrame:
    """Per space in either run: the best test accuracy and lowest test loss of run `before`
    and of run `after`, the accuracy change in percentage points, and what regressed."""
    done = completed(df)
    parts = [_best_by(done[done["run"] == run], ["space"]) for run in (before, after)]
    return _changes(*parts, how="outer")[["space", *CHANGE_COLUMNS]]


def common_architectures(df: pd.DataFrame, before: str, after: str) -> pd.DataFrame:
    """Architectures finished in both runs, with each run's best test accuracy and loss for
    it: the same configuration measured twice, so a drop points at the code or the machine."""
    done = completed(df)
    keys = ["space", "architecture"]
    parts = [_best_by(done[done["run"] == run], keys) for run in (before, after)]
    changes = _changes(*parts, how="inner")
    columns = [*keys, "before_rank", "after_rank", *CHANGE_COLUMNS]
    return changes.sort_values("after_accuracy", ascending=False)[columns]


PER_RUN_FIELDS = (
    "trial_id",
    "architecture",
    "val_accuracy",
    "test_accuracy",
    "test_loss",
    "params",
)
CONFIRMED_COLUMNS = (
    "rank",
    "run",
    "trial_id",
    "architecture",
    "seeds",
    "val_accuracy",
    "val_loss",
    "test_accuracy",
    "test_accuracy_sd",
    "test_accuracy_low",
    "test_accuracy_high",
    "test_loss",
    "test_loss_sd",
    "test_loss_low",
    "test_loss_high",
)


def confirmed_table(confirmed: Sequence[dict]) -> pd.DataFrame:
    """One row per confirmed configuration (bench confirm records): mean validation accuracy
    and loss over its seeds, mean test accuracy and loss with standard deviation and 95%
    interval (low, high); ranked as the release picks (bench.release.choose.confirmed_ranking:
    mean validation accuracy, ties lower mean validation loss). The test set never ranks."""
    from bench.release import choose  # reads records only

    groups: dict[tuple, list[dict]] = {}
    for record in confirmed:
        groups.setdefault((record["run"], record["trial_id"]), []).append(record)
    order = choose.confirmed_ranking(list(confirmed))
    rows = [_confirmed_row(groups[key]) for key in order]
    frame = pd.DataFrame(rows, columns=[c for c in CONFIRMED_COLUMNS if c != "rank"])
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.reset_index(drop=True)


def _confirmed_row(seeds: list[dict]) -> dict:
    from bench.core import stats  # scipy and statsmodels load only for confirmed runs

    first = seeds[0]
    row = {
        "run": first["run"],
        "trial_id": first["trial_id"],
        "architecture": architecture(first),
        "seeds": len(seeds),
        "val_accuracy": float(np.mean([r["val_accuracy"] for r in seeds])),
        "val_loss": float(np.mean([r["val_loss"] for r in seeds])),
    }
    for metric in ("test_accuracy", "test_loss"):
        summary = stats.mean_interval([r[metric] for r in seeds])
        row[metric] = summary["mean"]
        row.update({f"{metric}_{part}": summary[part] for part in ("sd", "low", "high")})
    return row


def per_run_best(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: trial counts and its best trial by validation accuracy."""
    rows = []
    for run, part in df.groupby("run", sort=False):
        done = completed(part).sort_values(["val_accuracy", "val_loss"], ascending=[False, True])
        best = done.iloc[0] if len(done) else pd.Series(dtype=object)
        rows.append(
            {
                "run": run,
                "space": ", ".join(pd.unique(part["space"].astype(str))),
                "finished": len(done),
                "failed": int((part["status"] == records.STATUS_FAILED).sum()),
                **{key: best.get(key) for key in PER_RUN_FIELDS},
            }
        )
    return pd.DataFrame(rows)
