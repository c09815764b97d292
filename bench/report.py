"""What people read: tables, figures and an HTML/Markdown report built from trial records."""

from __future__ import annotations

import base64
import html
import io
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

# Reports are made in batch jobs and tests: never depend on a display or on MPLBACKEND.
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from bench import records  # noqa: E402

NUM_CLASSES = 10
SEED_SPACE = "seed"
SEED_LABEL = "seed baseline"
NO_TRIAL = "No trial finished"
HP_PREFIX = "hp_"
TUNER_HP_PREFIX = "tuner/"  # KerasTuner bookkeeping (hyperband epochs, bracket), not a model choice
LEADERBOARD_SIZE = 20
TOP_N = 10
CURVES_N = 5
PERCENTAGE_POINTS = 100.0
SECONDS_PER_HOUR = 3600.0
SCIENTIFIC_BELOW = 0.01  # small floats read better as 1e-3 than as 0.001
SCIENTIFIC_HPS = ("learning_rate",)  # always 1e-2, never 0.01, so rates line up
LOG_SCALE_HPS = ("learning_rate",)
TRIALS_CSV = "trials.csv"
REPORT_MD = "report.md"
INDEX_HTML = "index.html"

DPI = 110
FIG_WIDTH = 11.0
PANEL_SIZE = (4.6, 3.4)
PANEL_COLUMNS = 3
PANEL_SPACING = {"left": 0.06, "right": 0.98, "hspace": 0.4, "wspace": 0.3}
PANEL_TOP_INCHES = 0.9  # room for the figure title, whatever the number of rows
PANEL_TITLE_INCHES = 0.15
PANEL_BOTTOM_INCHES = 0.45
BAR_INCHES = 0.38  # height per bar, so long leaderboards stay readable
BAR_BASE_INCHES = 1.4
CONFUSION_SIZE = (6.5, 5.5)
ZOOM_PAD = 0.25  # share of the accuracy range left around zoomed axes
ZOOM_MIN_SPAN = 0.005  # accuracies of near-identical trials still get a visible spread

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
CSV_COLUMNS = (
    "run",
    "trial_id",
    "trial_number",
    "status",
    "space",
    "tuner",
    "architecture",
    "val_accuracy",
    "val_loss",
    "test_accuracy",
    "test_loss",
    "params",
    "epochs_run",
    "best_epoch",
    "train_seconds",
    "started_at",
    "finished_at",
    "elapsed_hours",
    "error",
)
FLOAT_COLUMNS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "train_seconds")
INT_COLUMNS = ("params", "epochs_run", "best_epoch", "initial_epoch")
# Record fields the frame keeps but trials.csv leaves out (nested or file names).
EXTRA_COLUMNS = ("initial_epoch", "history", "predictions")
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
CELL_FORMATS = {
    "val_accuracy": "{:.4f}",
    "val_loss": "{:.4f}",
    "test_accuracy": "{:.4f}",
    "test_loss": "{:.4f}",
    "params": "{:,.0f}",
    "train_seconds": "{:.1f}",
}
RECOMMENDED_FIELDS = (
    "val_accuracy",
    "val_loss",
    "test_accuracy",
    "test_loss",
    "params",
    "epochs_run",
    "best_epoch",
    "train_seconds",
)
PER_RUN_FIELDS = (
    "trial_id",
    "architecture",
    "val_accuracy",
    "test_accuracy",
    "test_loss",
    "params",
)
RUN_FACTS = ("space", "tuner", "max_trials", "max_epochs", "batch_size", "seed", "dataset")


class ReportError(Exception):
    """A run cannot be reported on; the message is one line a person can act on."""


@dataclass(frozen=True)
class Run:
    name: str
    path: Path
    config: dict
    records: list


@dataclass(frozen=True)
class Figure:
    filename: str
    title: str
    png: bytes


# ---------------------------------------------------------------- preparation (pure pandas)


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
        tokens.append(f"{len(active)}x[{','.join(_fmt(hp.get(k, '?')) for k in active)}]")
    elif blocks is not None:
        tokens.append(f"{blocks}blocks")
    for name, prefix in _ARCH_TOKENS:
        if name in hp:
            tokens.append(_token(prefix, hp[name], scientific=name in SCIENTIFIC_HPS))
    known = {"conv_blocks", *filters, *(name for name, _ in _ARCH_TOKENS)}
    tokens += [f"{k}={_fmt(hp[k])}" for k in sorted(hp) if k not in known]
    return " ".join(t for t in tokens if t) or "default"


def _block_index(name: str) -> int:
    return int(_FILTERS.fullmatch(name).group(1))


def _token(prefix: str, value, scientific: bool = False) -> str:
    if isinstance(value, bool):
        return prefix if value else ""
    return f"{prefix}{_fmt(value, scientific)}"


def _fmt(value, scientific: bool = False) -> str:
    if isinstance(value, float):
        if value != 0 and (scientific or abs(value) < SCIENTIFIC_BELOW):
            return np.format_float_scientific(value, trim="-", exp_digits=1)
        return np.format_float_positional(value, trim="-")
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


def _hp_columns(df: pd.DataFrame) -> list[str]:
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
    for column in _hp_columns(done):
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


# ---------------------------------------------------------------- drawing (seaborn)


def figure_png(fig: plt.Figure) -> bytes:
    """Render a figure to PNG bytes and close it, so long reports don't leak figures."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _hue(frame: pd.DataFrame) -> str | None:
    return "run" if frame["run"].nunique() > 1 else None


def _subplots(*args, layout: str | None = "constrained", **kwargs) -> tuple[plt.Figure, object]:
    # One constrained layout pass at save time: tight_layout plus a tight bbox cost 3x as much.
    return plt.subplots(*args, layout=layout, **kwargs)


def _legend(show: bool) -> str | bool:
    # seaborn takes "auto" or False, not True.
    return "auto" if show else False


def _zoom(ax: plt.Axes, values: pd.Series, axis: str = "x") -> None:
    # Accuracies of good CNNs differ in the third decimal: bars from 0 would all look equal.
    low, high = float(values.min()), float(values.max())
    pad = max(high - low, ZOOM_MIN_SPAN) * ZOOM_PAD
    limits = (max(0.0, low - pad), min(1.0, high + pad) + pad)
    (ax.set_xlim if axis == "x" else ax.set_ylim)(*limits)


def plot_top_architectures(top: pd.DataFrame, metric: str = "test_accuracy") -> plt.Figure:
    """Horizontal bars of top_architectures(); seed baseline bars are hatched."""
    data = top.sort_values(metric, ascending=metric == "test_loss")
    labels = list(data["label"])
    height = BAR_BASE_INCHES + BAR_INCHES * len(labels)
    fig, ax = _subplots(figsize=(FIG_WIDTH, height))
    hue = _hue(data)
    sns.barplot(
        data=data,
        x=metric,
        y="label",
        order=labels,
        hue=hue,
        dodge=False,
        ax=ax,
        legend=_legend(hue is not None),
    )
    _mark_baseline(ax, labels, set(data.loc[data["baseline"], "label"]))
    for container in ax.containers:
        ax.bar_label(container, fmt="%.4f", padding=3, fontsize=8)
    if metric == "test_accuracy":
        _zoom(ax, data[metric])
    readable = metric.replace("_", " ")
    ax.set(xlabel=readable, ylabel="", title=f"Top architectures by {readable}")
    return fig


def _mark_baseline(ax: plt.Axes, labels: list[str], baseline: set[str]) -> None:
    for patch in ax.patches:
        index = int(round(patch.get_y() + patch.get_height() / 2))
        if 0 <= index < len(labels) and labels[index] in baseline:
            patch.set_hatch("//")
            patch.set_edgecolor("black")
    for tick in ax.get_yticklabels():
        if tick.get_text() in baseline:
            tick.set_fontstyle("italic")


def plot_pareto(front: pd.DataFrame) -> plt.Figure:
    """Test accuracy against parameter count (log x), with the Pareto front as a step line."""
    fig, ax = _subplots(figsize=(FIG_WIDTH, FIG_WIDTH * 0.5))
    sns.scatterplot(data=front, x="params", y="test_accuracy", hue=_hue(front), alpha=0.7, ax=ax)
    edge = front[front["pareto"]].sort_values("params")
    ax.step(
        edge["params"], edge["test_accuracy"], where="post", color="black", label="Pareto front"
    )
    base = front[front["baseline"]]
    if len(base):
        ax.scatter(
            base["params"],
            base["test_accuracy"],
            marker="*",
            s=200,
            color="red",
            label=SEED_LABEL,
            zorder=3,
        )
    ax.set_xscale("log")
    _zoom(ax, front["test_accuracy"], axis="y")
    ax.set(
        xlabel="parameters (log scale)", ylabel="test accuracy", title="Test accuracy vs model size"
    )
    ax.legend(loc="lower right")
    return fig


def _panels(count: int, title: str) -> tuple[plt.Figure, list[plt.Axes]]:
    rows = max(1, -(-count // PANEL_COLUMNS))
    width, height = PANEL_SIZE
    # Panels have short labels: fixed spacing is enough, and a layout engine would take
    # longer than drawing the whole grid.
    size = (width * PANEL_COLUMNS, height * rows + PANEL_TOP_INCHES + PANEL_BOTTOM_INCHES)
    fig, axes = _subplots(rows, PANEL_COLUMNS, figsize=size, squeeze=False, layout=None)
    top, bottom = 1 - PANEL_TOP_INCHES / size[1], PANEL_BOTTOM_INCHES / size[1]
    fig.subplots_adjust(**PANEL_SPACING, top=top, bottom=bottom)
    fig.suptitle(title, y=1 - PANEL_TITLE_INCHES / size[1], va="top")
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def plot_hyperparameter_effects(effects: pd.DataFrame) -> plt.Figure:
    """One panel per hyperparameter: validation accuracy by value (box+strip or scatter)."""
    names = list(dict.fromkeys(effects["hyperparameter"]))
    fig, axes = _panels(len(names), "Validation accuracy by hyperparameter value")
    hue = _hue(effects)
    for index, (ax, name) in enumerate(zip(axes, names, strict=True)):
        part = effects[effects["hyperparameter"] == name]
        draw = _draw_numeric if part["kind"].iat[0] == "numeric" else _draw_categorical
        draw(ax, part, hue, legend=hue is not None and index == 0)
        ax.set(title=name, xlabel="", ylabel="val accuracy")
    return fig


def _draw_numeric(ax: plt.Axes, part: pd.DataFrame, hue: str | None, legend: bool) -> None:
    data = part.assign(value=part["value"].astype(float))
    sns.scatterplot(
        data=data, x="value", y="val_accuracy", hue=hue, alpha=0.7, ax=ax, legend=_legend(legend)
    )
    if part["hyperparameter"].iat[0] in LOG_SCALE_HPS:
        ax.set_xscale("log")


def _draw_categorical(ax: plt.Axes, part: pd.DataFrame, hue: str | None, legend: bool) -> None:
    order = [str(v) for v in sorted(pd.unique(part["value"]), key=lambda v: (str(type(v)), v))]
    data = part.assign(value=part["value"].astype(str))
    with warnings.catch_warnings():
        # seaborn 0.13 still passes bxp(vert=...), deprecated in matplotlib 3.11: not ours to fix.
        warnings.filterwarnings("ignore", message="vert: bool", category=DeprecationWarning)
        sns.boxplot(
            data=data,
            x="value",
            y="val_accuracy",
            order=order,
            color="0.9",
            showfliers=False,
            ax=ax,
        )
    sns.stripplot(
        data=data,
        x="value",
        y="val_accuracy",
        order=order,
        hue=hue,
        ax=ax,
        legend=_legend(legend),
        alpha=0.8,
    )


def plot_best_so_far(progress: pd.DataFrame) -> plt.Figure:
    """Best accuracy so far against trial number and against wall-clock hours."""
    long = progress.melt(
        id_vars=["run", "trial_number", "elapsed_hours"],
        value_vars=["best_val_accuracy", "best_test_accuracy"],
        var_name="metric",
        value_name="accuracy",
    ).dropna(subset=["accuracy"])
    long["metric"] = long["metric"].map(
        {"best_val_accuracy": "validation", "best_test_accuracy": "test"}
    )
    long["trial_number"] = long["trial_number"].astype(float)
    fig, axes = _subplots(1, 2, figsize=(FIG_WIDTH, FIG_WIDTH * 0.38), sharey=True)
    for ax, x, label in zip(
        axes,
        ("trial_number", "elapsed_hours"),
        ("trial number", "hours since the first trial started"),
        strict=True,
    ):
        sns.lineplot(
            data=long.dropna(subset=[x]),
            x=x,
            y="accuracy",
            hue=_hue(long),
            style="metric",
            drawstyle="steps-post",
            estimator=None,
            ax=ax,
            legend=_legend(ax is axes[0]),
        )
        ax.set(xlabel=label, ylabel="best accuracy so far")
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("Best so far (validation chooses; test is shown for reference)")
    return fig


def plot_learning_curves(curves: pd.DataFrame) -> plt.Figure:
    """Train and validation accuracy/loss per epoch of the top trials."""
    fig, axes = _subplots(1, 2, figsize=(FIG_WIDTH, FIG_WIDTH * 0.4))
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        sns.lineplot(
            data=curves,
            x="epoch",
            y=metric,
            hue="label",
            style="split",
            marker="o",
            estimator=None,
            ax=ax,
            legend=_legend(ax is axes[0]),
        )
        ax.set(title=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # Trial labels are long: one legend under both panels keeps the plots wide.
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].get_legend().remove()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8)
    fig.suptitle("Learning curves of the top trials by test accuracy")
    return fig


def plot_confusion(matrix: pd.DataFrame, title: str = "Confusion matrix") -> plt.Figure:
    """Heatmap of a confusion() frame with the counts written in the cells."""
    fig, ax = _subplots(figsize=CONFUSION_SIZE)
    sns.heatmap(
        matrix,
        annot=True,
        fmt="d",
        cmap="Blues",
        cbar=False,
        square=True,
        ax=ax,
        annot_kws={"fontsize": 8},
    )
    ax.set(title=title, xlabel="predicted", ylabel="true")
    return fig


# ---------------------------------------------------------------- report assembly
# Each figure builder returns a Figure, or a one-line reason why it was skipped.


@dataclass(frozen=True)
class _Context:
    runs: list
    df: pd.DataFrame
    choice: tuple | None  # (Run, record) recommended by validation accuracy


def _fig_top_accuracy(ctx: _Context) -> plt.Figure | str:
    return plot_top_architectures(top_architectures(ctx.df), "test_accuracy")


def _fig_top_loss(ctx: _Context) -> plt.Figure | str:
    return plot_top_architectures(top_architectures(ctx.df, by="test_loss"), "test_loss")


def _fig_pareto(ctx: _Context) -> plt.Figure | str:
    return plot_pareto(pareto_front(ctx.df))


def _fig_effects(ctx: _Context) -> plt.Figure | str:
    effects = hyperparameter_effects(ctx.df)
    if effects.empty:
        return "Hyperparameter effects skipped: the finished trials have no hyperparameters."
    return plot_hyperparameter_effects(effects)


def _fig_progress(ctx: _Context) -> plt.Figure | str:
    return plot_best_so_far(best_so_far(ctx.df))


def _fig_curves(ctx: _Context) -> plt.Figure | str:
    curves = learning_curves(ctx.df)
    if curves.empty:
        return "Learning curves skipped: the top trials recorded no history."
    return plot_learning_curves(curves)


def _fig_confusion(ctx: _Context) -> plt.Figure | str:
    run, record = ctx.choice
    try:
        predictions = records.load_predictions(run.path, record)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        reason = f"predictions of trial {record['trial_id']} unreadable ({exc})"
        return f"Confusion matrix skipped: {reason}."
    if predictions is None:
        return f"Confusion matrix skipped: trial {record['trial_id']} stored no predictions."
    matrix = confusion(predictions["y_true"], predictions["y_pred"])
    return plot_confusion(
        matrix,
        f"Confusion matrix of the recommended trial {run.name}/{record['trial_id']} (test set)",
    )


FIGURES: tuple[tuple[str, str, Callable], ...] = (
    ("top_test_accuracy.png", "Top architectures by test accuracy", _fig_top_accuracy),
    ("top_test_loss.png", "Top architectures by test loss", _fig_top_loss),
    ("accuracy_vs_params.png", "Test accuracy vs parameter count", _fig_pareto),
    ("hyperparameter_effects.png", "Hyperparameter effects on validation accuracy", _fig_effects),
    ("best_so_far.png", "Best so far", _fig_progress),
    ("learning_curves.png", f"Learning curves of the top {CURVES_N}", _fig_curves),
    ("confusion_matrix.png", "Confusion matrix of the recommended trial", _fig_confusion),
)


def _render_figures(ctx: _Context) -> tuple[list[Figure], list[str]]:
    if ctx.choice is None:
        return [], []
    figures, notes = [], []
    for filename, title, build in FIGURES:
        result = build(ctx)
        if isinstance(result, str):
            notes.append(result)
        else:
            figures.append(Figure(filename, title, figure_png(result)))
    return figures, notes


def _load_run(run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    if not (run_dir / records.CONFIG_FILE).is_file():
        what = "does not exist" if not run_dir.exists() else f"has no {records.CONFIG_FILE}"
        raise ReportError(f"run directory {run_dir} {what}")
    try:
        config = records.load_config(run_dir)
        trial_records = records.load_records(run_dir)
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read run {run_dir}: {exc}") from exc
    return Run(str(config.get("run") or run_dir.name), run_dir, config, trial_records)


def _load_runs(run_dirs: Sequence[Path]) -> list[Run]:
    if not run_dirs:
        raise ReportError("no run directory given")
    runs = [_load_run(path) for path in run_dirs]
    names = [run.name for run in runs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ReportError(f"several run directories are named {', '.join(duplicates)}")
    return runs


def _recommend(runs: list[Run]) -> tuple[Run, dict] | None:
    bests = [(run, records.best_by_validation(run.records)) for run in runs]
    bests = [(run, best) for run, best in bests if best is not None]
    overall = records.best_by_validation([best for _, best in bests])
    return next(((run, best) for run, best in bests if best is overall), None)


def write_report(run_dirs: list[Path], out_dir: Path) -> Path:
    """Write trials.csv, report.md, a self-contained index.html and PNG figures into out_dir.

    Reads the records of one or several runs (never trains). Returns the path of index.html.
    Raises ReportError for a run directory that is missing or has no config.json.
    """
    runs = _load_runs(run_dirs)
    out_dir = Path(out_dir)
    df = trials_frame([(run.name, run.records) for run in runs])
    ctx = _Context(runs, df, _recommend(runs))
    figures, notes = _render_figures(ctx)
    blocks = _report_blocks(ctx, figures, notes)
    records.atomic_write_text(
        out_dir / TRIALS_CSV, df[[*CSV_COLUMNS, *_hp_columns(df)]].to_csv(index=False)
    )
    for figure in figures:
        records.atomic_write_bytes(out_dir / figure.filename, figure.png)
    # A figure that could not be drawn this time must not linger from an earlier report.
    drawn = {figure.filename for figure in figures}
    for filename, _, _ in FIGURES:
        if filename not in drawn:
            (out_dir / filename).unlink(missing_ok=True)
    records.atomic_write_text(out_dir / REPORT_MD, to_markdown(blocks))
    records.atomic_write_text(out_dir / INDEX_HTML, to_html(blocks, _title(runs)))
    return out_dir / INDEX_HTML


# A report is a list of blocks: ("h1"|"h2"|"h3"|"p", text), ("table", frame), ("figure", Figure).
# Markdown and HTML are both rendered from the same blocks.


def _title(runs: list[Run]) -> str:
    return "mnist-bench report: " + ", ".join(run.name for run in runs)


def _report_blocks(ctx: _Context, figures: list[Figure], notes: list[str]) -> list[tuple]:
    blocks = [("h1", _title(ctx.runs)), ("h2", "Summary"), *_summary_blocks(ctx)]
    blocks += [("h2", "Runs"), *_runs_blocks(ctx.runs)]
    board = leaderboard(ctx.df)
    if len(board):
        shown = board[(board["rank"] <= LEADERBOARD_SIZE) | board["baseline"]]
        blocks += [("h2", "Leaderboard"), ("p", _LEADERBOARD_NOTE), ("table", _cells(shown))]
    if len(ctx.runs) > 1:
        blocks += [
            ("h2", "Best trial of each run (by validation accuracy)"),
            ("table", _cells(per_run_best(ctx.df))),
        ]
    blocks += _failure_blocks(failures(ctx.df))
    blocks.append(("h2", "Figures"))
    if ctx.choice is None:
        blocks.append(("p", f"{NO_TRIAL}: there is nothing to draw."))
    blocks += [("p", note) for note in notes]
    blocks += [block for figure in figures for block in (("h3", figure.title), ("figure", figure))]
    return blocks


_LEADERBOARD_NOTE = (
    f"Finished trials ranked by test accuracy (ties: lower test loss), top {LEADERBOARD_SIZE}; "
    "val_rank is the rank by validation accuracy, which is what chooses the release. "
    "Seed baseline rows are kept as reference."
)


def _runs_blocks(runs: list[Run]) -> list[tuple]:
    rows = [
        {
            "run": run.name,
            "directory": str(run.path),
            **{key: _fact(run.config.get(key)) for key in RUN_FACTS},
        }
        for run in runs
    ]
    return [("table", _cells(pd.DataFrame(rows)))]


def _fact(value) -> str:
    if isinstance(value, dict):
        return str(value.get("name", value))
    return "" if value is None else str(value)


def _summary_blocks(ctx: _Context) -> list[tuple]:
    status = ctx.df["status"]
    finished = int((status == records.STATUS_COMPLETED).sum())
    failed = int((status == records.STATUS_FAILED).sum())
    counts = ("p", f"{finished} trial(s) finished, {failed} failed, in {len(ctx.runs)} run(s).")
    if ctx.choice is None:
        why = "no trial was recorded" if status.empty else f"all {failed} trial(s) failed"
        return [counts, ("p", f"{NO_TRIAL}: {why}. There is no configuration to recommend.")]
    run, record = ctx.choice
    name = architecture(record["hyperparameters"], record["space"])
    choice = (
        f"Recommended configuration to release: trial {record['trial_id']} of run {run.name} "
        f"({name}). It is chosen by VALIDATION accuracy, the best of all finished trials; "
        "the test set is reported, never used to choose."
    )
    return [
        counts,
        ("p", choice),
        ("table", _recommended_table(record)),
        ("p", _baseline_sentence(ctx, record)),
    ]


def _recommended_table(record: dict) -> pd.DataFrame:
    rows = [(key, _cell(key, record.get(key))) for key in RECOMMENDED_FIELDS]
    rows += [(f"hp {key}", _fmt(value)) for key, value in sorted(record["hyperparameters"].items())]
    return pd.DataFrame(rows, columns=["field", "value"])


def _baseline_sentence(ctx: _Context, record: dict) -> str:
    seeds = [r for run in ctx.runs for r in run.records if r.get("space") == SEED_SPACE]
    baseline = records.best_by_validation(seeds)
    if baseline is None:
        return "No finished seed baseline trial in these runs, so there is no baseline comparison."
    if baseline is record:
        return "The recommended configuration is the seed baseline itself."
    gain = (record["test_accuracy"] - baseline["test_accuracy"]) * PERCENTAGE_POINTS
    return (
        f"Against the seed baseline (trial {baseline['trial_id']}): test accuracy "
        f"{record['test_accuracy']:.4f} vs {baseline['test_accuracy']:.4f}, "
        f"{gain:+.2f} percentage points."
    )


def _failure_blocks(failed: pd.DataFrame) -> list[tuple]:
    if failed.empty:
        return []
    reasons = failed.drop_duplicates("error")[["count", "error"]]
    return [
        ("h2", f"Failures ({len(failed)})"),
        ("table", _cells(reasons)),
        ("h3", "Failed configurations"),
        ("table", _cells(failed[["run", "trial_id", "architecture", "error"]])),
    ]


def _cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as display strings, one format per column."""
    return pd.DataFrame({c: [_cell(c, v) for v in frame[c]] for c in frame.columns}, dtype=object)


def _cell(column: str, value) -> str:
    if value is None or (not isinstance(value, (str, dict, list)) and pd.isna(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if column in CELL_FORMATS:
        return CELL_FORMATS[column].format(value)
    return _fmt(value.item() if isinstance(value, np.generic) else value)


_MD_ESCAPES = str.maketrans({"|": "\\|", "<": "&lt;", ">": "&gt;", "\n": " ", "\r": " "})


def to_markdown(blocks: list[tuple]) -> str:
    """Render report blocks as Markdown; figures link to the PNG files beside it."""
    parts = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append("#" * int(kind[1]) + " " + content.translate(_MD_ESCAPES))
        elif kind == "p":
            parts.append(content.translate(_MD_ESCAPES))
        elif kind == "table":
            header = [str(c).translate(_MD_ESCAPES) for c in content.columns]
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += [
                "| " + " | ".join(str(v).translate(_MD_ESCAPES) for v in row) + " |"
                for row in content.itertuples(index=False)
            ]
            parts.append("\n".join(lines))
        elif kind == "figure":
            parts.append(f"![{content.title}]({content.filename})")
    return "\n\n".join(parts) + "\n"


HTML_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
.table { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; }
figure { margin: 1em 0; break-inside: avoid; }
@media print { body { max-width: none; margin: 0; } .table { overflow: visible; } }
"""


def to_html(blocks: list[tuple], title: str) -> str:
    """Render report blocks as one self-contained HTML page; every value is escaped."""
    esc = html.escape
    parts = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3", "p"):
            parts.append(f"<{kind}>{esc(content)}</{kind}>")
        elif kind == "table":
            head = "".join(f"<th>{esc(str(c))}</th>" for c in content.columns)
            body = "".join(
                "<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row) + "</tr>"
                for row in content.itertuples(index=False)
            )
            parts.append(
                f'<div class="table"><table><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>"
            )
        elif kind == "figure":
            data = base64.b64encode(content.png).decode("ascii")
            parts.append(
                f'<figure><img alt="{esc(content.title)}" '
                f'src="data:image/png;base64,{data}"></figure>'
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )
