"""Seaborn figures drawn from the bench.report.tables frames and rendered to PNG bytes."""

from __future__ import annotations

import io
import textwrap
import warnings

import numpy as np
import pandas as pd
import seaborn as sns

# Figures are made with matplotlib's object-oriented API, never pyplot: a report then needs no
# display and no backend, and importing this module leaves the process's backend (a notebook's
# inline one) as it was. Each Figure belongs to its caller and goes with it.
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from bench.report.columns import SEED_LABEL

LOG_SCALE_HPS = ("learning_rate",)
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
# cnn_plus names run to ~180 characters: unwrapped, they took the whole width and the layout
# gave up ("constrained_layout not applied"), cutting the names off.
BAR_LABEL_CHARS = 60
CONFUSION_SIZE = (6.5, 5.5)
DIGIT_COLUMNS = 10
DIGIT_CELL_INCHES = 1.1  # one 28x28 digit and its two-line caption
DIGIT_TITLE_INCHES = 0.35
ZOOM_PAD = 0.25  # share of the accuracy range left around zoomed axes
ZOOM_MIN_SPAN = 0.005  # accuracies of near-identical trials still get a visible spread
MIN_ERROR = 1e-4  # a validation error of 0 still has a place on a log scale


def figure_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes (with Agg, whatever the process's backend)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _hue(frame: pd.DataFrame) -> str | None:
    return "run" if frame["run"].nunique() > 1 else None


def _subplots(
    *args, layout: str | None = "constrained", figsize=None, **kwargs
) -> tuple[Figure, object]:
    # One constrained layout pass at save time: tight_layout plus a tight bbox cost 3x as much.
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*args, **kwargs)


def _legend(show: bool) -> str | bool:
    # seaborn takes "auto" or False, not True.
    return "auto" if show else False


def _zoom(ax: Axes, values: pd.Series, axis: str = "x") -> None:
    # Accuracies of good CNNs differ in the third decimal: bars from 0 would all look equal.
    low, high = float(values.min()), float(values.max())
    pad = max(high - low, ZOOM_MIN_SPAN) * ZOOM_PAD
    limits = (max(0.0, low - pad), min(1.0, high + pad) + pad)
    (ax.set_xlim if axis == "x" else ax.set_ylim)(*limits)


def plot_top_architectures(top: pd.DataFrame, metric: str = "test_accuracy") -> Figure:
    """Horizontal bars of top_architectures(); seed baseline bars are hatched."""
    data = top.sort_values(metric, ascending=metric == "test_loss")
    data = data.assign(label=data["label"].map(_wrapped))
    labels = list(data["label"])
    height = BAR_BASE_INCHES + BAR_INCHES * sum(label.count("\n") + 1 for label in labels)
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


def _wrapped(label: str) -> str:
    return textwrap.fill(label, BAR_LABEL_CHARS, break_long_words=False)


def _mark_baseline(ax: Axes, labels: list[str], baseline: set[str]) -> None:
    for patch in ax.patches:
        index = int(round(patch.get_y() + patch.get_height() / 2))
        if 0 <= index < len(labels) and labels[index] in baseline:
            patch.set_hatch("//")
            patch.set_edgecolor("black")
    for tick in ax.get_yticklabels():
        if tick.get_text() in baseline:
            tick.set_fontstyle("italic")


# The cost axis of each Pareto figure: (label, title).
PARETO_AXES = {
    "params": ("parameters (log scale)", "Test accuracy vs model size"),
    "latency_ms": ("CPU latency per image at batch 1, ms (log scale)", "Test accuracy vs latency"),
}


def plot_pareto(front: pd.DataFrame, cost: str = "params") -> Figure:
    """Test accuracy against a cost (tables.pareto_front's: params or latency_ms, log x), with
    the Pareto front as a step line."""
    fig, ax = _subplots(figsize=(FIG_WIDTH, FIG_WIDTH * 0.5))
    sns.scatterplot(data=front, x=cost, y="test_accuracy", hue=_hue(front), alpha=0.7, ax=ax)
    edge = front[front["pareto"]].sort_values(cost)
    ax.step(edge[cost], edge["test_accuracy"], where="post", color="black", label="Pareto front")
    base = front[front["baseline"]]
    if len(base):
        ax.scatter(
            base[cost],
            base["test_accuracy"],
            marker="*",
            s=200,
            color="red",
            label=SEED_LABEL,
            zorder=3,
        )
    ax.set_xscale("log")
    _zoom(ax, front["test_accuracy"], axis="y")
    label, title = PARETO_AXES[cost]
    ax.set(xlabel=label, ylabel="test accuracy", title=title)
    ax.legend(loc="lower right")
    return fig


def _panels(count: int, title: str) -> tuple[Figure, list[Axes]]:
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


def plot_hyperparameter_effects(effects: pd.DataFrame) -> Figure:
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


def _draw_numeric(ax: Axes, part: pd.DataFrame, hue: str | None, legend: bool) -> None:
    data = part.assign(value=part["value"].astype(float))
    sns.scatterplot(
        data=data, x="value", y="val_accuracy", hue=hue, alpha=0.7, ax=ax, legend=_legend(legend)
    )
    if part["hyperparameter"].iat[0] in LOG_SCALE_HPS:
        ax.set_xscale("log")


def _draw_categorical(ax: Axes, part: pd.DataFrame, hue: str | None, legend: bool) -> None:
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


def plot_best_so_far(progress: pd.DataFrame) -> Figure:
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


def plot_learning_curves(curves: pd.DataFrame) -> Figure:
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


def plot_rung_curves(curves: pd.DataFrame) -> Figure:
    """Every trial's validation error per epoch on a log scale, coloured by the highest rung
    its configuration reached (pace.rung_curves); one panel per run. On a log scale the
    0.3-1% of the good configurations stand apart, and screens that failed stay in view."""
    names = list(dict.fromkeys(curves["run"]))
    fig, axes = _subplots(1, len(names), figsize=(FIG_WIDTH, FIG_WIDTH * 0.4), squeeze=False)
    curves = curves.assign(val_error=(1.0 - curves["val_accuracy"]).clip(lower=MIN_ERROR))
    for ax, name in zip(axes[0], names, strict=True):
        part = curves[curves["run"] == name]
        sns.lineplot(
            data=part,
            x="epoch",
            y="val_error",
            units="trial_id",
            hue="reached",
            palette="viridis",
            estimator=None,
            marker="o",
            ax=ax,
            legend=_legend(ax is axes[0][0]),
        )
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=1))
        ax.set(title=name, ylabel="validation error (log scale)")
    fig.suptitle("Every trial's learning curve, coloured by the highest rung it reached")
    return fig


def plot_search_benchmark(bands: pd.DataFrame, ranks: pd.DataFrame) -> Figure:
    """Left: each policy's mean best-so-far validation accuracy over the seeds against minutes,
    its 95% interval as a band; right: its average rank among the policies (1 the best).
    bands and ranks are bench.perf.policy_stats' curve_bands and rank_over_time."""
    names = list(dict.fromkeys([*bands["policy"], *ranks["policy"]]))
    palette = dict(zip(names, sns.color_palette(n_colors=len(names)), strict=True))
    fig, (left, right) = _subplots(1, 2, figsize=(FIG_WIDTH, FIG_WIDTH * 0.4))
    sns.lineplot(
        data=bands, x="minutes", y="mean", hue="policy", palette=palette,
        drawstyle="steps-post", estimator=None, ax=left,
    )  # fmt: skip
    for name, part in bands.groupby("policy", sort=False):
        left.fill_between(
            part["minutes"], part["low"], part["high"], step="post", alpha=0.2, lw=0,
            color=palette[name],
        )  # fmt: skip
    if len(bands):
        _zoom(left, bands["mean"], axis="y")
    left.set(title="best validation accuracy so far", xlabel="minutes", ylabel="mean over seeds")
    sns.lineplot(
        data=ranks, x="minutes", y="rank", hue="policy", palette=palette,
        drawstyle="steps-post", estimator=None, ax=right, legend=False,
    )  # fmt: skip
    right.invert_yaxis()  # the best, rank 1, on top
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.set(title="average rank by best validation so far", xlabel="minutes", ylabel="rank")
    fig.suptitle("Search policies side by side (bands: 95% interval over seeds)")
    return fig


def plot_confusion(matrix: pd.DataFrame, title: str = "Confusion matrix") -> Figure:
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


def plot_misclassified(images: np.ndarray, examples: pd.DataFrame, title: str) -> Figure:
    """A grid of test digits (misclassified() rows), each captioned true -> predicted and
    the model's confidence in its wrong answer."""
    rows = max(1, -(-len(examples) // DIGIT_COLUMNS))
    size = (DIGIT_COLUMNS * DIGIT_CELL_INCHES, rows * DIGIT_CELL_INCHES + DIGIT_TITLE_INCHES)
    fig, axes = _subplots(rows, DIGIT_COLUMNS, figsize=size, squeeze=False, layout=None)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, examples.itertuples(index=False), strict=False):
        ax.imshow(np.squeeze(images[row.index]), cmap="gray_r", vmin=0, vmax=255)
        caption = f"true {row.true}, said {row.predicted}\n{row.confidence:.0%} sure"
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 1 - DIGIT_TITLE_INCHES / size[1]))
    return fig
