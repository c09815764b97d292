"""Tidy pandas tables prepared from a trials frame: one function per report table or figure."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from bench.core import records
from bench.report.columns import (
    COST_COLUMNS,
    HP_PREFIX,
    SECONDS_PER_HOUR,
    SEED_SPACE,
    completed,
    hp_columns,
    trials_frame,
    utc,
)

TOP_N = 10
CURVES_N = 5
SECONDS_PER_MINUTE = 60.0
# A target counts as reached this little below it: a mean of right answers can come out
# one float rounding step under a target it equals.
TARGET_TOLERANCE = 1e-12
_FILTERS = re.compile(r"filters_(\d+)")  # one per block; blocks from conv_blocks on are unbuilt
LEADERBOARD_COLUMNS = (
    "rank",
    "run",
    "trial_id",
    "architecture",
    "test_accuracy",
    "test_loss",
    "val_accuracy",
    "val_rank",
    "params",
    "latency_ms",
    "images_per_second",
    "inference_bytes",
    "flops",
    "epochs_run",
    "train_seconds",
    "baseline",
)
CURVE_COLUMNS = ("run", "trial_id", "architecture", "label", "epoch", "split", "accuracy", "loss")
EFFECT_COLUMNS = ("hyperparameter", "value", "kind", "val_accuracy", "run")
FAILURE_COLUMNS = ("run", "trial_id", "architecture", "error")
NO_REASON = "(no reason recorded)"
WORKER_COLUMNS = ("run", "worker", "trials", "failed", "busy_hours", "busy_share", "oracle_wait_s")
# The test accuracies the report times a run to: the baseline's level, then the goals beyond.
TIME_TO_TARGETS = (0.990, 0.993, 0.995, 0.996)


def leaderboard(df: pd.DataFrame) -> pd.DataFrame:
    """Completed trials ranked by test accuracy (ties: lower test loss); seed rows stay as baseline.

    `val_rank` ranks the same trials by validation accuracy, the way the release is chosen.
    """
    done = completed(df).sort_values(
        ["test_accuracy", "test_loss", "run", "trial_id"], ascending=[False, True, True, True]
    )
    by_val = done.sort_values(
        ["val_accuracy", "val_loss", "run", "trial_id"], ascending=[False, True, True, True]
    ).index
    positions = np.arange(1, len(done) + 1)
    done["rank"] = positions
    done["val_rank"] = pd.Series(positions, index=by_val)
    done["baseline"] = done["space"] == SEED_SPACE
    columns = list(LEADERBOARD_COLUMNS)
    if done["latency_ms"].isna().all():  # records from before inference cost was measured
        columns = [c for c in columns if c not in COST_COLUMNS]
    if done["rung_epochs"].notna().any():  # asha's and hyperband's trials differ in length
        columns.insert(columns.index("epochs_run") + 1, "rung_epochs")
    return done[columns].reset_index(drop=True)


def top_architectures(df: pd.DataFrame, n: int = TOP_N, by: str = "test_accuracy") -> pd.DataFrame:
    """The n best distinct architectures (per run) by `by`: test_accuracy or test_loss.

    Seed baseline rows are added as reference. Adds `label`: "run/trial_id: architecture".
    """
    lower_is_better = by == "test_loss"
    board = leaderboard(df).sort_values([by, "rank"], ascending=[lower_is_better, True])
    board = board.drop_duplicates(["run", "architecture"])
    top = pd.concat([board[~board["baseline"]].head(n), board[board["baseline"]]])
    top = top.sort_values([by, "rank"], ascending=[lower_is_better, True]).reset_index(drop=True)
    top["label"] = top["run"] + "/" + top["trial_id"] + ": " + top["architecture"]
    return top


def pareto_front(df: pd.DataFrame, cost: str = "params") -> pd.DataFrame:
    """Completed trials with `pareto`: True when no other trial is at least as cheap (`cost`:
    params or latency_ms) and as accurate (test accuracy) while strictly better in one of the
    two. Trials without the cost (records from before it was measured) are left out."""
    columns = ["run", "trial_id", "architecture", cost, "test_accuracy", "space"]
    done = completed(df)[columns].dropna(subset=[cost, "test_accuracy"])
    done = done.assign(**{cost: done[cost].astype(float)}, baseline=done["space"] == SEED_SPACE)
    done = done.sort_values([cost, "test_accuracy"], ascending=[True, False])
    group_best = done.groupby(cost)["test_accuracy"].transform("max")
    # Best accuracy among strictly cheaper models: a tie with a cheaper model also dominates.
    best_cheaper = done.groupby(cost)["test_accuracy"].max().cummax().shift(1)
    prior = done[cost].map(best_cheaper)
    done["pareto"] = (done["test_accuracy"] == group_best) & ~(prior >= done["test_accuracy"])
    return done.drop(columns="space").reset_index(drop=True)


def hyperparameter_effects(df: pd.DataFrame) -> pd.DataFrame:
    """Tidy (hyperparameter, value, kind, val_accuracy, run) rows of completed trials.

    kind is "numeric" (drawn as a scatter) or "categorical" (strings and booleans).
    """
    done = completed(df)
    frames = []
    for column in hp_columns(done):
        name = column[len(HP_PREFIX) :]
        mask = done[column].notna() & _active(done, name)
        if not mask.any():
            continue
        values = done.loc[mask, column].astype(object)
        part = done.loc[mask, ["val_accuracy", "run"]].assign(
            hyperparameter=name, value=values, kind=_hp_kind(values)
        )
        frames.append(part)
    if not frames:
        return pd.DataFrame(columns=list(EFFECT_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(EFFECT_COLUMNS)]


def _active(done: pd.DataFrame, name: str) -> pd.Series:
    # Filters of blocks beyond conv_blocks were sampled but never built: they only add noise.
    blocks = HP_PREFIX + "conv_blocks"
    block = _FILTERS.fullmatch(name)
    if block is None or blocks not in done:
        return pd.Series(True, index=done.index)
    blocks_built = pd.to_numeric(done[blocks], errors="coerce").astype(float).fillna(np.inf)
    return blocks_built > int(block.group(1))


def _hp_kind(values: pd.Series) -> str:
    inferred = pd.Series(list(values))
    numeric = pd.api.types.is_numeric_dtype(inferred) and not pd.api.types.is_bool_dtype(inferred)
    return "numeric" if numeric else "categorical"


def best_so_far(df: pd.DataFrame) -> pd.DataFrame:
    """Per run and trial: best validation and best test accuracy reached so far."""
    frame = df[["run", "trial_number", "elapsed_hours", "val_accuracy", "test_accuracy"]]
    grouped = frame.groupby("run", sort=False)
    out = frame[["run", "trial_number", "elapsed_hours"]].copy()
    out["best_val_accuracy"] = grouped["val_accuracy"].cummax()
    out["best_test_accuracy"] = grouped["test_accuracy"].cummax()
    # cummax leaves failed trials empty; the best so far is still the earlier one.
    best = ["best_val_accuracy", "best_test_accuracy"]
    out[best] = out.groupby("run", sort=False)[best].ffill()
    return out.reset_index(drop=True)


def learning_curves(data: pd.DataFrame | Sequence[dict], n: int = CURVES_N) -> pd.DataFrame:
    """Per-epoch train/val accuracy and loss of the n best completed trials by test accuracy."""
    df = data if isinstance(data, pd.DataFrame) else trials_frame(_by_run(data))
    if "history" not in df:
        return pd.DataFrame(columns=list(CURVE_COLUMNS))
    done = completed(df).sort_values(["test_accuracy", "test_loss"], ascending=[False, True])
    rows = [row for trial in done.head(n).to_dict("records") for row in _curve_rows(trial)]
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def _by_run(trial_records: Sequence[dict]) -> list[tuple[str, list[dict]]]:
    names = dict.fromkeys(r["run"] for r in trial_records)
    return [(name, [r for r in trial_records if r["run"] == name]) for name in names]


def _curve_rows(trial: dict) -> Iterable[dict]:
    history = trial["history"] if isinstance(trial["history"], dict) else {}
    # Hyperband continues earlier trials: their epochs do not restart at 1.
    offset = 0 if pd.isna(trial["initial_epoch"]) else int(trial["initial_epoch"])
    label = f"{trial['run']}/{trial['trial_id']}: {trial['architecture']}"
    for split, prefix in (("train", ""), ("val", "val_")):
        accuracy = history.get(prefix + "accuracy") or []
        loss = history.get(prefix + "loss") or []
        # Curves of unequal length (a history cut short) are drawn as far as both go.
        for index, (acc, los) in enumerate(zip(accuracy, loss, strict=False)):
            yield {
                "run": trial["run"],
                "trial_id": trial["trial_id"],
                "architecture": trial["architecture"],
                "label": label,
                "epoch": offset + index + 1,
                "split": split,
                "accuracy": acc,
                "loss": los,
            }


def failures(df: pd.DataFrame) -> pd.DataFrame:
    """Failed trials (run, trial_id, architecture, error); `count` trials share each error."""
    failed = df[df["status"] == records.STATUS_FAILED][list(FAILURE_COLUMNS)]
    failed = failed.assign(error=failed["error"].fillna(NO_REASON))
    failed["count"] = failed.groupby("error")["trial_id"].transform("size")
    return failed.sort_values(
        ["count", "error", "run", "trial_id"], ascending=[False, True, True, True]
    ).reset_index(drop=True)


def workers(df: pd.DataFrame) -> pd.DataFrame:
    """One row per worker of a distributed run: its trials, failures and busy time.

    busy_hours adds up training and test evaluation; busy_share divides it by the run's
    wall time (first trial's start to last trial's end); oracle_wait_s is the mean time a
    trial's worker spent in calls to the chief (its overhead per trial).
    """
    part = df[df["worker"].notna()]
    rows = []
    for (run, worker), trials in part.groupby(["run", "worker"], sort=True):
        in_run = df[df["run"] == run]
        wall = (utc(in_run["finished_at"]).max() - utc(in_run["started_at"]).min()).total_seconds()
        busy = trials["train_seconds"].fillna(0).sum() + trials["eval_seconds"].fillna(0).sum()
        rows.append(
            {
                "run": run,
                "worker": worker,
                "trials": len(trials),
                "failed": int((trials["status"] == records.STATUS_FAILED).sum()),
                "busy_hours": busy / SECONDS_PER_HOUR,
                "busy_share": busy / wall if wall > 0 else np.nan,
                "oracle_wait_s": trials["oracle_seconds"].mean(),
            }
        )
    return pd.DataFrame(rows, columns=WORKER_COLUMNS)
