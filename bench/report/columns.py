"""The trials frame: one row per trial record, its columns, labels and value formatting."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from bench.core import records

SEED_SPACE = "seed"
SEED_LABEL = "seed baseline"
DEFAULT_LABEL = "default"  # a configuration with no hyperparameters of its own
HP_PREFIX = "hp_"
SECONDS_PER_HOUR = 3600.0
SIGNIFICANT_DIGITS = 3
SCIENTIFIC_BELOW = 0.01  # small floats read better as 1e-3 than as 0.001
SCIENTIFIC_HPS = ("learning_rate",)  # always 1e-2, never 0.01, so rates line up

# What a finished trial measured, in the order tables show it.
RESULT_COLUMNS = (
    "val_accuracy",
    "val_loss",
    "test_accuracy",
    "test_loss",
    "params",
    "epochs_run",
    "best_epoch",
    "train_seconds",
)
# What the trial's model costs to serve (the record's `inference`; empty for schema-1 records).
COST_COLUMNS = ("latency_ms", "images_per_second", "inference_bytes", "flops", "inference_threads")
CSV_COLUMNS = (
    "run",
    "trial_id",
    "trial_number",
    "status",
    "space",
    "tuner",
    "worker",
    "architecture",
    *RESULT_COLUMNS,
    *COST_COLUMNS,
    "started_at",
    "finished_at",
    "elapsed_hours",
    "error",
)
FLOAT_COLUMNS = (
    "val_accuracy",
    "val_loss",
    "test_accuracy",
    "test_loss",
    "train_seconds",
    "eval_seconds",
    "oracle_seconds",
    "latency_ms",
    "images_per_second",
)
INT_COLUMNS = (
    "params",
    "epochs_run",
    "best_epoch",
    "initial_epoch",
    "inference_bytes",
    "flops",
    "inference_threads",
)
# Record fields the frame keeps but trials.csv leaves out (nested or file names).
EXTRA_COLUMNS = (
    "initial_epoch",
    "history",
    "predictions",
    "eval_seconds",
    "oracle_seconds",
    "rung",  # asha's rung (0 the lowest) from the record's tuner_state; hyperband's round
    "rung_epochs",  # the epochs of that rung (asha: 1/3 is one epoch of a third of the batches)
    "promoted_from",  # asha: the trial of the rung below that this one went on from
    "lineage",  # asha: the trial that first tried this configuration
    "trained_epochs",  # asha continuing a promotion: the epochs its starting weights had
    "beside_training",  # the latency was measured while other workers trained (--workers)
)


def architecture(record: dict) -> str:
    """A short readable name of a trial's configuration.

    The record's own label (its space's describe(hp)) when it has one; records written before
    labels were kept get "seed baseline" for the seed space, else name=value of each
    hyperparameter, or "default" when there are none.
    """
    label = record.get("architecture")
    if label:
        return str(label)
    if record.get("space") == SEED_SPACE:
        return SEED_LABEL
    hp = record.get("hyperparameters") or {}
    tokens = [
        f"{name}={format_value(hp[name], scientific=name in SCIENTIFIC_HPS)}"
        for name in sorted(hp)
        if not name.startswith(records.TUNER_STATE_PREFIX)
    ]
    return " ".join(tokens) or DEFAULT_LABEL


def format_value(value, scientific: bool = False) -> str:
    """A value as short text: floats to SIGNIFICANT_DIGITS, small ones as 1.4e-3.

    Dropout steps come out of KerasTuner as 0.15000000000000002; nobody wants to read that.
    """
    if isinstance(value, float):
        digits = SIGNIFICANT_DIGITS - 1
        if value != 0 and (scientific or abs(value) < SCIENTIFIC_BELOW):
            return np.format_float_scientific(value, precision=digits, trim="-", exp_digits=1)
        # Significant digits below 1 (0.993); above it, decimals, so 123456.789 keeps its digits
        big = abs(value) >= 1
        return np.format_float_positional(
            value, precision=SIGNIFICANT_DIGITS, fractional=big, trim="-"
        )
    return str(value)


def trials_frame(runs: Iterable[tuple[str, Sequence[dict]]]) -> pd.DataFrame:
    """One row per trial of (run_name, records) pairs, with hp_<name> columns.

    Adds `architecture`, `trial_number` (1-based start order within the run) and
    `elapsed_hours` (finish time since the run's first trial started).
    """
    rows = [_trial_row(name, record) for name, trial_records in runs for record in trial_records]
    base = [c for c in CSV_COLUMNS if c not in ("trial_number", "elapsed_hours")]
    df = pd.DataFrame(rows, columns=None if rows else [*base, *EXTRA_COLUMNS])
    hp_names = sorted(c for c in df.columns if c.startswith(HP_PREFIX))
    df = df[[*base, *EXTRA_COLUMNS, *hp_names]].copy()
    for column in FLOAT_COLUMNS:
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    # Integer columns stay integers (not 3.0) in trials.csv even where some trials lack a value.
    int_hps = [c for c in hp_names if all(_is_int(r[c]) for r in rows if r.get(c) is not None)]
    for column in [*INT_COLUMNS, *int_hps]:
        df[column] = pd.to_numeric(df[column], errors="coerce").astype("Int64")
    return _add_timing(df)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _trial_row(run_name: str, record: dict) -> dict:
    row = {key: record.get(key) for key in CSV_COLUMNS + EXTRA_COLUMNS}
    process = record.get("process") or {}
    row.update(worker=process.get("worker"), oracle_seconds=process.get("oracle_seconds"))
    cost = record.get("inference") or {}
    row.update(
        latency_ms=cost.get("latency_ms"),
        images_per_second=cost.get("images_per_second"),
        inference_bytes=cost.get("bytes"),
        flops=cost.get("flops"),
        inference_threads=cost.get("threads"),
        beside_training=cost.get("beside_training"),
    )
    state = record.get("tuner_state") or {}
    row.update(
        rung=state.get("round"),
        rung_epochs=state.get("epochs"),
        promoted_from=state.get("promoted_from"),
        lineage=state.get("lineage") or record.get("trial_id"),
        trained_epochs=state.get("trained_epochs") or 0,
    )
    row.update(run=run_name, architecture=architecture(record))
    hyperparameters = record.get("hyperparameters") or {}
    row.update({HP_PREFIX + name: value for name, value in hyperparameters.items()})
    return row


def _add_timing(df: pd.DataFrame) -> pd.DataFrame:
    run_order = pd.Index(pd.unique(df["run"])).get_indexer(df["run"])
    keys = pd.DataFrame(
        {"run": run_order, "started": utc(df["started_at"]), "trial_id": df["trial_id"]}
    )
    order = keys.sort_values(["run", "started", "trial_id"], na_position="last").index
    df = df.loc[order].reset_index(drop=True)
    df.insert(2, "trial_number", (df.groupby("run", sort=False).cumcount() + 1).astype("Int64"))
    started, finished = utc(df["started_at"]), utc(df["finished_at"])
    first = started.groupby(df["run"], sort=False).transform("min")
    df["elapsed_hours"] = (finished - first).dt.total_seconds() / SECONDS_PER_HOUR
    return df[[*CSV_COLUMNS, *(c for c in df.columns if c not in CSV_COLUMNS)]]


def utc(values: pd.Series) -> pd.Series:
    """ISO 8601 timestamps as UTC datetimes; missing or unreadable ones as NaT."""
    return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")


def completed(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of the frame's completed trials."""
    return df[df["status"] == records.STATUS_COMPLETED].copy()


def hp_columns(df: pd.DataFrame) -> list[str]:
    """The hp_<name> columns of a trials_frame(), in frame order."""
    return [c for c in df.columns if c.startswith(HP_PREFIX)]
