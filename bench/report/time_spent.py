"""How a search spent its time: configurations per hour, asha's rungs and promotions, every
trial's learning curve by the rung its configuration reached, and the time to accuracy of
what the night would have recommended, its confirmation and release included (tidy tables)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bench.release import choose
from bench.report.columns import SECONDS_PER_HOUR, completed, hp_columns, utc
from bench.report.tables import SECONDS_PER_MINUTE, TARGET_TOLERANCE, TIME_TO_TARGETS

if TYPE_CHECKING:
    from bench.report.loading import Run

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
# What made the pick at a moment: the search's best trial, the confirmation's best
# configuration (its mean over its retrainings so far), or the release of that pick.
BY_SEARCH, BY_CONFIRMATION, BY_RELEASE = "search", "confirmation", "release"
TIME_TO_COLUMNS = ("run", "target", "minutes", "trials", "trial_id", "test_accuracy", "by")
PICK_COLUMNS = ("_end", "trial_id", "test_accuracy", "by")
# The release's config.json under the run folder (bench.release.export.BEST_DIR; importing
# that module would import TensorFlow).
RELEASE_CONFIG = ("best", "config.json")


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


def time_to_accuracy(
    df: pd.DataFrame, runs: Sequence[Run] = (), targets: Sequence[float] = TIME_TO_TARGETS
) -> pd.DataFrame:
    """Per run and target: how long until what the run would have recommended at that moment
    first had a test accuracy at or above the target, its search trials, confirmation
    retrainings and release (of `runs`, by name) counted as each finished (picks_over_time).

    minutes run from the run's first trial start (wall clock: a pause of a resumed run counts)
    to the finish that made the pick; trials counts the search trials finished by then, failed
    ones included; by says what made it (BY_SEARCH, BY_CONFIRMATION, BY_RELEASE). A target
    never reached has no minutes. The test set never picks: taking the first test score that
    crossed a target would report the luckiest of many noisy scores.
    """
    extra = {run.name: run for run in runs}
    rows = []
    for run, part in df.groupby("run", sort=False):
        start = utc(part["started_at"]).min()
        ends = utc(part["finished_at"])
        other = extra.get(run)
        picks = picks_over_time(
            completed(part).assign(_end=ends),
            other.confirmed if other else [],
            released(other.path) if other else None,
        )
        for target in targets:
            hit = picks[picks["test_accuracy"] >= target - TARGET_TOLERANCE]
            row = {"run": run, "target": target, "minutes": np.nan, "trials": pd.NA}
            if len(hit):
                first = hit.iloc[0]
                row.update(
                    minutes=(first["_end"] - start).total_seconds() / SECONDS_PER_MINUTE,
                    trials=int((ends <= first["_end"]).sum()),
                    trial_id=first["trial_id"],
                    test_accuracy=first["test_accuracy"],
                    by=first["by"],
                )
            rows.append(row)
    return pd.DataFrame(rows, columns=TIME_TO_COLUMNS)


def picks_over_time(
    done: pd.DataFrame, confirmed: Sequence[dict] = (), release: dict | None = None
) -> pd.DataFrame:
    """At each finish of a run, in finishing order (its completed trials, column _end; its
    confirmation records; its release): what the run would recommend then and its test
    accuracy. Before any confirmation retraining, the trial best by validation so far (ties:
    lower validation loss) with its own test accuracy; after one, the configuration with the
    best mean validation accuracy over its retrainings so far (bench.release.choose), with
    their mean test accuracy; once a release of the pick finished, the release's own."""
    events = [(t["_end"], BY_SEARCH, t) for t in done.to_dict("records")]
    events += [(_when(r), BY_CONFIRMATION, r) for r in confirmed]
    events += [(_when(release), BY_RELEASE, release)] if release is not None else []
    kinds = (BY_SEARCH, BY_CONFIRMATION, BY_RELEASE)  # at one moment, in the order they happen
    events = sorted(
        (event for event in events if pd.notna(event[0])),  # an unknown end has no place
        key=lambda event: (event[0], kinds.index(event[1])),
    )
    rows, best, seen, shipped = [], None, [], None
    for end, kind, item in events:
        if kind == BY_SEARCH:
            best = item if best is None or _val_key(item) > _val_key(best) else best
        elif kind == BY_CONFIRMATION:
            seen.append(item)
        else:
            shipped = item
        pick = _pick(best, seen, shipped)
        if pick is not None:
            rows.append({"_end": end, **pick})
    return pd.DataFrame(rows, columns=list(PICK_COLUMNS))


def _pick(best: dict | None, seen: list[dict], shipped: dict | None) -> dict | None:
    """The recommendation from the search's best trial, the confirmation records so far and a
    finished release: trial_id, test_accuracy, and by what."""
    if seen:
        trial_id = choose.confirmed_by_val_accuracy(seen)[0]
        scores = [r["test_accuracy"] for r in seen if r["trial_id"] == trial_id]
        pick = {
            "trial_id": trial_id,
            "test_accuracy": float(np.mean(scores)),
            "by": BY_CONFIRMATION,
        }
    elif best is not None:
        pick = {
            "trial_id": best["trial_id"],
            "test_accuracy": best["test_accuracy"],
            "by": BY_SEARCH,
        }
    else:
        return None
    if shipped is not None and str(shipped.get("trial_id")) == str(pick["trial_id"]):
        pick.update(test_accuracy=shipped["test_accuracy"], by=BY_RELEASE)
    return pick


def _val_key(trial: dict) -> tuple[float, float]:
    loss = trial.get("val_loss")
    return trial["val_accuracy"], -(loss if pd.notna(loss) else 0)


def _when(item: dict):
    return pd.to_datetime(item.get("finished_at"), utc=True, errors="coerce", format="ISO8601")


def released(run_dir) -> dict | None:
    """The run's release (its best/config.json) once the night's release stage finished it
    (its finished_at) with a test accuracy; None otherwise. An unreadable file counts as no
    release here; the export that wrote it is the place to tell."""
    path = run_dir.joinpath(*RELEASE_CONFIG)
    try:
        shipped = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(shipped, dict) or shipped.get("test_accuracy") is None:
        return None
    return shipped if shipped.get("finished_at") else None
