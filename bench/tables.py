"""Tidy pandas tables prepared from trial records: one function per report table or figure."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from bench import records

NUM_CLASSES = 10
SEED_SPACE = "seed"
SEED_LABEL = "seed baseline"
HP_PREFIX = "hp_"
TUNER_HP_PREFIX = "tuner/"  # KerasTuner bookkeeping (hyperband epochs, bracket), not a model choice
TOP_N = 10
CURVES_N = 5
SECONDS_PER_HOUR = 3600.0
SIGNIFICANT_DIGITS = 3
SCIENTIFIC_BELOW = 0.01  # small floats read better as 1e-3 than as 0.001
SCIENTIFIC_HPS = ("learning_rate",)  # always 1e-2, never 0.01, so rates line up

_FILTERS = re.compile(r"filters_(\d+)")
# (hyperparameter, token prefix) in the order they appear in an architecture string.
_ARCH_TOKENS = (
    ("kernel_size", "k"),
    ("batch_norm", "bn"),
    ("conv_dropout", "drop"),
    ("dense_units", "dense"),
    ("dense_dropout", "drop"),
    ("optimizer", ""),
    ("learning_rate", "lr"),
)
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
)
INT_COLUMNS = ("params", "epochs_run", "best_epoch", "initial_epoch")
# Record fields the frame keeps but trials.csv leaves out (nested or file names).
EXTRA_COLUMNS = ("initial_epoch", "history", "predictions", "eval_seconds", "oracle_seconds")
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
    "epochs_run",
    "train_seconds",
    "baseline",
)
CURVE_COLUMNS = ("run", "trial_id", "architecture", "label", "epoch", "split", "accuracy", "loss")
EFFECT_COLUMNS = ("hyperparameter", "value", "kind", "val_accuracy", "run")
PER_RUN_FIELDS = (
    "trial_id",
    "architecture",
    "val_accuracy",
    "test_accuracy",
    "test_loss",
    "params",
)


def architecture(hyperparameters: dict | None, space: str | None = None) -> str:
    """A short readable name of a configuration, e.g. "3x[32,64,128] k3 bn drop0.25 adam lr1e-3".

    Filters of blocks beyond conv_blocks are left out: they were sampled but never built.
    """
    if space == SEED_SPACE:
        return SEED_LABEL
    hp = {k: v for k, v in (hyperparameters or {}).items() if not k.startswith(TUNER_HP_PREFIX)}
    filters = sorted((k for k in hp if _FILTERS.fullmatch(k)), key=_block_index)
    blocks = hp.get("conv_blocks")
    active = filters if blocks is None else [f"filters_{i}" for i in range(int(blocks))]
    tokens = []
    if filters:
        tokens.append(f"{len(active)}x[{','.join(format_value(hp.get(k, '?')) for k in active)}]")
    elif blocks is not None:
        tokens.append(f"{blocks}blocks")
    for name, prefix in _ARCH_TOKENS:
        if name in hp:
            tokens.append(_token(prefix, hp[name], scientific=name in SCIENTIFIC_HPS))
    known = {"conv_blocks", *filters, *(name for name, _ in _ARCH_TOKENS)}
    tokens += [f"{k}={format_value(hp[k])}" for k in sorted(hp) if k not in known]
    return " ".join(t for t in tokens if t) or "default"


def _block_index(name: str) -> int:
    return int(_FILTERS.fullmatch(name).group(1))


def _token(prefix: str, value, scientific: bool = False) -> str:
    if isinstance(value, bool):
        return prefix if value else ""
    return f"{prefix}{format_value(value, scientific)}"


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
    hp_columns = sorted(c for c in df.columns if c.startswith(HP_PREFIX))
    df = df[[*base, *EXTRA_COLUMNS, *hp_columns]].copy()
    for column in FLOAT_COLUMNS:
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    # Integer columns stay integers (not 3.0) in trials.csv even where some trials lack a value.
    int_hps = [c for c in hp_columns if all(_is_int(r[c]) for r in rows if r.get(c) is not None)]
    for column in [*INT_COLUMNS, *int_hps]:
        df[column] = pd.to_numeric(df[column], errors="coerce").astype("Int64")
    return _add_timing(df)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _trial_row(run_name: str, record: dict) -> dict:
    row = {key: record.get(key) for key in CSV_COLUMNS + EXTRA_COLUMNS}
    process = record.get("process") or {}
    row.update(worker=process.get("worker"), oracle_seconds=process.get("oracle_seconds"))
    hyperparameters = record.get("hyperparameters") or {}
    row.update(run=run_name, architecture=architecture(hyperparameters, record.get("space")))
    row.update({HP_PREFIX + name: value for name, value in hyperparameters.items()})
    return row


def _add_timing(df: pd.DataFrame) -> pd.DataFrame:
    run_order = pd.Index(pd.unique(df["run"])).get_indexer(df["run"])
    keys = pd.DataFrame(
        {"run": run_order, "started": _utc(df["started_at"]), "trial_id": df["trial_id"]}
    )
    order = keys.sort_values(["run", "started", "trial_id"], na_position="last").index
    df = df.loc[order].reset_index(drop=True)
    df.insert(2, "trial_number", (df.groupby("run", sort=False).cumcount() + 1).astype("Int64"))
    started, finished = _utc(df["started_at"]), _utc(df["finished_at"])
    first = started.groupby(df["run"], sort=False).transform("min")
    df["elapsed_hours"] = (finished - first).dt.total_seconds() / SECONDS_PER_HOUR
    return df[[*CSV_COLUMNS, *(c for c in df.columns if c not in CSV_COLUMNS)]]


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")


def _completed(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == records.STATUS_COMPLETED].copy()


def hp_columns(df: pd.DataFrame) -> list[str]:
    """The hp_<name> columns of a trials_frame(), in frame order."""
    return [c for c in df.columns if c.startswith(HP_PREFIX)]


def leaderboard(df: pd.DataFrame) -> pd.DataFrame:
    """Completed trials ranked by test accuracy (ties: lower test loss); seed rows stay as baseline.

    `val_rank` ranks the same trials by validation accuracy, the way the release is chosen.
    """
    done = _completed(df).sort_values(
        ["test_accuracy", "test_loss", "run", "trial_id"], ascending=[False, True, True, True]
    )
    by_val = done.sort_values(
        ["val_accuracy", "val_loss", "run", "trial_id"], ascending=[False, True, True, True]
    ).index
    positions = np.arange(1, len(done) + 1)
    done["rank"] = positions
    done["val_rank"] = pd.Series(positions, index=by_val)
    done["baseline"] = done["space"] == SEED_SPACE
    return done[list(LEADERBOARD_COLUMNS)].reset_index(drop=True)


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


def pareto_front(df: pd.DataFrame) -> pd.DataFrame:
    """Completed trials with `pareto`: True when no other trial is at least as small and as
    accurate (test accuracy) while strictly better in one of the two."""
    columns = ["run", "trial_id", "architecture", "params", "test_accuracy", "space"]
    done = _completed(df)[columns].dropna(subset=["params", "test_accuracy"])
    done = done.assign(params=done["params"].astype(float), baseline=done["space"] == SEED_SPACE)
    done = done.sort_values(["params", "test_accuracy"], ascending=[True, False])
    group_best = done.groupby("params")["test_accuracy"].transform("max")
    # Best accuracy among strictly smaller models: a tie with a smaller model also dominates.
    best_smaller = done.groupby("params")["test_accuracy"].max().cummax().shift(1)
    prior = done["params"].map(best_smaller)
    done["pareto"] = (done["test_accuracy"] == group_best) & ~(prior >= done["test_accuracy"])
    return done.drop(columns="space").reset_index(drop=True)


def hyperparameter_effects(df: pd.DataFrame) -> pd.DataFrame:
    """Tidy (hyperparameter, value, kind, val_accuracy, run) rows of completed trials.

    kind is "numeric" (drawn as a scatter) or "categorical" (strings and booleans).
    """
    done = _completed(df)
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
    if not _FILTERS.fullmatch(name) or blocks not in done:
        return pd.Series(True, index=done.index)
    blocks_built = pd.to_numeric(done[blocks], errors="coerce").astype(float).fillna(np.inf)
    return blocks_built > _block_index(name)


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
    done = _completed(df).sort_values(["test_accuracy", "test_loss"], ascending=[False, True])
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


def confusion(y_true, y_pred, num_classes: int = NUM_CLASSES) -> pd.DataFrame:
    """Counts of (true, predicted) label pairs as a num_classes x num_classes frame."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred {y_pred.shape}")
    counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2)
    labels = range(num_classes)
    return pd.DataFrame(
        counts.reshape(num_classes, num_classes),
        index=pd.Index(labels, name="true"),
        columns=pd.Index(labels, name="predicted"),
    )


# Probabilities are clipped to [PROB_EPSILON, 1 - PROB_EPSILON] before the log, as Keras does:
# a confident wrong answer (stored float16 probabilities round to 0) costs a finite loss.
PROB_EPSILON = 1e-7


def per_image_loss(probs, labels) -> np.ndarray:
    """Each image's cross-entropy: -log of the probability given to its true class."""
    probs = np.asarray(probs, dtype=np.float64)
    picked = np.clip(probs[np.arange(len(labels)), labels], PROB_EPSILON, 1 - PROB_EPSILON)
    return -np.log(picked)


def test_metrics(probs, labels) -> tuple[float, float]:
    """Accuracy and sparse categorical cross-entropy of class probabilities."""
    accuracy = float(np.mean(np.asarray(probs).argmax(axis=1) == labels))
    return accuracy, float(np.mean(per_image_loss(probs, labels)))


CONFUSED_PAIRS_N = 10
MISCLASSIFIED_N = 40


def per_class(matrix: pd.DataFrame, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Per true class of a confusion() frame: test images, errors and accuracy; with names
    (Fashion-MNIST's "Trouser", ...), a name column too."""
    counts = matrix.to_numpy()
    images = pd.Series(counts.sum(axis=1))
    correct = pd.Series(np.diag(counts))
    frame = pd.DataFrame(
        {
            "class": matrix.index.to_numpy(),
            "images": images,
            "errors": images - correct,
            "accuracy": correct / images.where(images > 0),  # a class with no images: NaN
        }
    )
    if names is not None:
        frame.insert(1, "name", list(names))
    return frame


def confused_pairs(matrix: pd.DataFrame, top: int = CONFUSED_PAIRS_N) -> pd.DataFrame:
    """The most frequent mistakes of a confusion() frame: (true, predicted, count, share), where
    share is the pair's part of all errors; most first, ties in digit order."""
    pairs = matrix.stack().rename("count").reset_index()
    pairs = pairs[(pairs["true"] != pairs["predicted"]) & (pairs["count"] > 0)]
    pairs = pairs.assign(share=pairs["count"] / pairs["count"].sum())
    ordered = pairs.sort_values(["count", "true", "predicted"], ascending=[False, True, True])
    return ordered.head(top).reset_index(drop=True)


def misclassified(y_true, y_pred, probs, limit: int = MISCLASSIFIED_N) -> pd.DataFrame:
    """Test images the model got wrong (index, true, predicted, confidence), the most confident
    mistakes first: those are the likeliest to be mislabelled digits."""
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    wrong = np.flatnonzero(y_pred != y_true)
    frame = pd.DataFrame(
        {
            "index": wrong,
            "true": y_true[wrong],
            "predicted": y_pred[wrong],
            "confidence": np.asarray(probs, dtype=np.float64)[wrong, y_pred[wrong]],
        }
    )
    return frame.sort_values(["confidence", "index"], ascending=[False, True]).head(limit)


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
            "change_points": (both["accuracy_after"] - both["accuracy_before"]) * 100.0,
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
    done = _completed(df)
    parts = [_best_by(done[done["run"] == run], ["space"]) for run in (before, after)]
    return _changes(*parts, how="outer")[["space", *CHANGE_COLUMNS]]


def common_architectures(df: pd.DataFrame, before: str, after: str) -> pd.DataFrame:
    """Architectures finished in both runs, with each run's best test accuracy and loss for
    it: the same configuration measured twice, so a drop points at the code or the machine."""
    done = _completed(df)
    keys = ["space", "architecture"]
    parts = [_best_by(done[done["run"] == run], keys) for run in (before, after)]
    changes = _changes(*parts, how="inner")
    columns = [*keys, "before_rank", "after_rank", *CHANGE_COLUMNS]
    return changes.sort_values("after_accuracy", ascending=False)[columns]


CONFIRMED_COLUMNS = (
    "rank",
    "run",
    "trial_id",
    "architecture",
    "seeds",
    "test_accuracy",
    "test_accuracy_sd",
    "test_accuracy_low",
    "test_accuracy_high",
    "test_loss",
    "test_loss_sd",
    "test_loss_low",
    "test_loss_high",
    "val_accuracy",
)


def confirmed_ranking(confirmed: Sequence[dict]) -> pd.DataFrame:
    """One row per confirmed configuration (bench confirm records): mean test accuracy and
    loss over its seeds with standard deviation and 95% interval (low, high), and its mean
    validation accuracy; ranked by mean test accuracy (ties: lower mean test loss)."""
    from bench import stats  # scipy and statsmodels load only for confirmed runs

    groups: dict[tuple, list[dict]] = {}
    for record in confirmed:
        groups.setdefault((record["run"], record["trial_id"]), []).append(record)
    rows = []
    for (run, trial_id), seeds in groups.items():
        row = {
            "run": run,
            "trial_id": trial_id,
            "architecture": architecture(seeds[0]["hyperparameters"], seeds[0]["space"]),
            "seeds": len(seeds),
            "val_accuracy": float(np.mean([r["val_accuracy"] for r in seeds])),
        }
        for metric in ("test_accuracy", "test_loss"):
            summary = stats.mean_interval([r[metric] for r in seeds])
            row.update(
                {
                    metric: summary["mean"],
                    f"{metric}_sd": summary["sd"],
                    f"{metric}_low": summary["low"],
                    f"{metric}_high": summary["high"],
                }
            )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[c for c in CONFIRMED_COLUMNS if c != "rank"])
    frame = frame.sort_values(["test_accuracy", "test_loss"], ascending=[False, True])
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.reset_index(drop=True)


def failures(df: pd.DataFrame) -> pd.DataFrame:
    """Failed trials (run, trial_id, architecture, error); `count` trials share each error."""
    failed = df[df["status"] == records.STATUS_FAILED][["run", "trial_id", "architecture", "error"]]
    failed = failed.assign(error=failed["error"].fillna("(no reason recorded)"))
    failed["count"] = failed.groupby("error")["trial_id"].transform("size")
    return failed.sort_values(
        ["count", "error", "run", "trial_id"], ascending=[False, True, True, True]
    ).reset_index(drop=True)


def per_run_best(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: trial counts and its best trial by validation accuracy."""
    rows = []
    for run, part in df.groupby("run", sort=False):
        done = _completed(part).sort_values(["val_accuracy", "val_loss"], ascending=[False, True])
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
        wall = (
            _utc(in_run["finished_at"]).max() - _utc(in_run["started_at"]).min()
        ).total_seconds()
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


WORKER_COLUMNS = ("run", "worker", "trials", "failed", "busy_hours", "busy_share", "oracle_wait_s")

# The test accuracies the report times a run to: the baseline's level, then the goals beyond.
TIME_TO_TARGETS = (0.990, 0.993, 0.995, 0.996)
TIME_TO_COLUMNS = ("run", "target", "minutes", "trials", "trial_id", "test_accuracy")


def time_to_accuracy(df: pd.DataFrame, targets: Sequence[float] = TIME_TO_TARGETS) -> pd.DataFrame:
    """Per run and target: how long until the best-so-far test accuracy first reached it.

    minutes run from the run's first trial start (wall clock, so a run that was stopped and
    resumed counts its pause) to the end of the first finished trial at or above the target,
    in the order trials finished (workers finish out of start order); trials counts the
    trials finished by then, failed ones included. A target never reached has no minutes.
    """
    rows = []
    for run, part in df.groupby("run", sort=False):
        start = _utc(part["started_at"]).min()
        ends = _utc(part["finished_at"])
        done = _completed(part).assign(_end=ends).sort_values("_end", kind="stable")
        for target in targets:
            hit = done[done["test_accuracy"] >= target - 1e-12]
            row = {"run": run, "target": target, "minutes": np.nan, "trials": pd.NA}
            if len(hit):
                first = hit.iloc[0]
                row.update(
                    minutes=(first["_end"] - start).total_seconds() / 60.0,
                    trials=int((ends <= first["_end"]).sum()),
                    trial_id=first["trial_id"],
                    test_accuracy=first["test_accuracy"],
                )
            rows.append(row)
    return pd.DataFrame(rows, columns=TIME_TO_COLUMNS)
