"""How a search spent its time: configurations per hour, asha's rungs and promotions, and
every trial's learning curve by the rung its configuration reached (tidy tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report.columns import SECONDS_PER_HOUR, completed, hp_columns, utc

PACE_COLUMNS = (
    "run",
    "tuner",
    "trials",
    "configurations",
    "hours",
    "configurations_per_hour",
    "trials_per_hour",
)
RUNG_COLUMNS = ("run", "rung", "epochs", "trials", "finished", "promoted", "best_val_accuracy")
RUNG_CURVE_COLUMNS = ("run", "trial_id", "epoch", "val_accuracy", "reached")
RUNG_TUNER = "asha"


def configuration_keys(df: pd.DataFrame) -> pd.Series:
    """One text key per trial for its hyperparameter values: equal keys, one configuration."""
    columns = ["space", *hp_columns(df)]
    keys = ["|".join(map(str, row)) for row in df[columns].itertuples(index=False)]
    return pd.Series(keys, index=df.index, dtype=object)


def pace(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: trials, distinct configurations, wall-clock hours from the first start to the
    last end, and configurations and trials per hour."""
    rows = []
    keys = configuration_keys(df)
    for run, part in df.groupby("run", sort=False):
        span = utc(part["finished_at"]).max() - utc(part["started_at"]).min()
        hours = span.total_seconds() / SECONDS_PER_HOUR if pd.notna(span) else np.nan
        configurations = int(keys[part.index].nunique())
        rows.append(
            {
                "run": run,
                "tuner": ", ".join(pd.unique(part["tuner"].astype(str))),
                "trials": len(part),
                "configurations": configurations,
                "hours": hours,
                "configurations_per_hour": _per_hour(configurations, hours),
                "trials_per_hour": _per_hour(len(part), hours),
            }
        )
    return pd.DataFrame(rows, columns=PACE_COLUMNS)


def _per_hour(count: int, hours: float) -> float:
    return count / hours if hours and hours > 0 else np.nan


def _rung_runs(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["tuner"] == RUNG_TUNER) & df["rung"].notna()]


def rungs(df: pd.DataFrame) -> pd.DataFrame:
    """Per asha run and rung: its epochs, trials, finished ones, how many went on to the next
    rung, and the best validation accuracy there (what promotion is decided on)."""
    part = _rung_runs(df)
    rows = []
    for (run, rung), trials in part.groupby(["run", "rung"], sort=True):
        went_on = set(part.loc[part["run"] == run, "promoted_from"].dropna())
        done = completed(trials)
        rows.append(
            {
                "run": run,
                "rung": int(rung),
                "epochs": _rung_epochs(trials),
                "trials": len(trials),
                "finished": len(done),
                "promoted": int(trials["trial_id"].isin(went_on).sum()),
                "best_val_accuracy": done["val_accuracy"].max() if len(done) else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=RUNG_COLUMNS)


def _rung_epochs(trials: pd.DataFrame):
    """A rung's epochs as its trials' tuner state says (a share of one below one epoch)."""
    budgets = pd.to_numeric(trials["rung_epochs"], errors="coerce").dropna()
    if len(budgets):
        return float(budgets.max())
    ran = pd.to_numeric(trials["epochs_run"], errors="coerce").dropna()
    return float(ran.max()) if len(ran) else np.nan


def rung_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Per epoch of every finished asha trial: its validation accuracy, and `reached`, the
    highest rung its configuration got to (what colours the curves). A screen of less than one
    epoch stands at its share of an epoch; a promotion that continued its parent's weights
    starts where the parent stopped."""
    done = completed(_rung_runs(df))
    if done.empty:
        return pd.DataFrame(columns=list(RUNG_CURVE_COLUMNS))
    reached = done.groupby(["run", "lineage"])["rung"].transform("max").astype(int)
    rows = [
        {
            "run": t.run,
            "trial_id": t.trial_id,
            "epoch": start + e * step,
            "val_accuracy": acc,
            "reached": r,
        }
        for t, r in zip(done.itertuples(), reached, strict=True)
        for start, step in [_epoch_axis(t)]
        for e, acc in enumerate((t.history or {}).get("val_accuracy") or [], start=1)
    ]
    return pd.DataFrame(rows, columns=list(RUNG_CURVE_COLUMNS))


def _epoch_axis(trial) -> tuple[float, float]:
    """Where a trial's curve starts (the epochs of the weights it started from, 0 for a fresh
    one) and how much of an epoch each of its epochs was: the share below one for a screen
    shorter than an epoch, else 1."""
    start = float(trial.trained_epochs)
    added = pd.to_numeric(trial.rung_epochs, errors="coerce") - start
    return start, float(added) if pd.notna(added) and 0 < added < 1 else 1.0
