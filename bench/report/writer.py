"""What people read: an HTML/Markdown report, trials.csv and figures built from trial records."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.core import faults, metrics, records, swap
from bench.errors import ReportError
from bench.report import confirmed, plots, released, sections, summary, tables, time_spent
from bench.report.columns import CSV_COLUMNS, hp_columns
from bench.report.loading import NO_TRIAL, Context, load_context, load_test_images
from bench.report.render import Block, Figure, Heading, to_html, to_markdown
from bench.report.sections import ENVIRONMENT_FIELDS

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

# Names the CLI and tests reach through this module.
__all__ = [
    "ENVIRONMENT_FIELDS",
    "ERROR_FIGURES",
    "FIGURES",
    "INDEX_HTML",
    "NO_TRIAL",
    "REPORT_MD",
    "TRIALS_CSV",
    "ReportError",
    "write_report",
]

TRIALS_CSV = "trials.csv"
REPORT_MD = "report.md"
INDEX_HTML = "index.html"
REPORT_TEXT = (TRIALS_CSV, REPORT_MD, INDEX_HTML)
# faults points: some files of the new report written; the old report out of the way.
WRITING_POINT, SWAPPING_POINT = "report.writing", "report.swapping"
FOREIGN_SHOWN = 3  # names of files that are not a report's, in the refusal


# Each figure builder returns a matplotlib figure, or a one-line reason why it was skipped.


def _fig_top_accuracy(ctx: Context) -> MplFigure | str:
    return plots.plot_top_architectures(tables.top_architectures(ctx.df), "test_accuracy")


def _fig_top_loss(ctx: Context) -> MplFigure | str:
    return plots.plot_top_architectures(
        tables.top_architectures(ctx.df, by="test_loss"), "test_loss"
    )


def _fig_pareto(ctx: Context) -> MplFigure | str:
    return plots.plot_pareto(tables.pareto_front(ctx.df))


def _fig_latency(ctx: Context) -> MplFigure | str:
    front = tables.pareto_front(ctx.df, "latency_ms")
    if front.empty:
        return "Accuracy vs latency skipped: no finished trial has a measured latency."
    return plots.plot_pareto(front, "latency_ms")


def _fig_effects(ctx: Context) -> MplFigure | str:
    effects = tables.hyperparameter_effects(ctx.df)
    if effects.empty:
        return "Hyperparameter effects skipped: the finished trials have no hyperparameters."
    return plots.plot_hyperparameter_effects(effects)


def _fig_progress(ctx: Context) -> MplFigure | str:
    return plots.plot_best_so_far(tables.best_so_far(ctx.df))


def _fig_curves(ctx: Context) -> MplFigure | str:
    curves = tables.learning_curves(ctx.df)
    if curves.empty:
        return "Learning curves skipped: the top trials recorded no history."
    return plots.plot_learning_curves(curves)


def _fig_confusion(ctx: Context) -> MplFigure | str:
    if isinstance(ctx.predictions, str):
        return f"Confusion matrix skipped: {ctx.predictions}."
    run, record = ctx.choice
    matrix = metrics.confusion(ctx.predictions["y_true"], ctx.predictions["y_pred"])
    return plots.plot_confusion(
        matrix,
        f"Confusion matrix of the recommended trial {run.name}/{record['trial_id']} (test set)",
    )


def _fig_misclassified(ctx: Context) -> MplFigure | str:
    if isinstance(ctx.predictions, str):
        return f"Misclassified digits skipped: {ctx.predictions}."
    run, record = ctx.choice
    y_true, y_pred = ctx.predictions["y_true"], ctx.predictions["y_pred"]
    examples = metrics.misclassified(y_true, y_pred, ctx.predictions["probs"])
    if examples.empty:
        return "Misclassified digits: none, the recommended trial got every test image right."
    images = load_test_images(run, record, y_true)
    if isinstance(images, str):
        return f"Misclassified digits skipped: {images}."
    title = (
        f"Test digits trial {run.name}/{record['trial_id']} got wrong, most confident first "
        f"({len(examples)} of {int((y_pred != y_true).sum())})"
    )
    return plots.plot_misclassified(images, examples, title)


FIGURES: tuple[tuple[str, str, Callable[[Context], Figure | str]], ...] = (
    ("top_test_accuracy.png", "Top architectures by test accuracy", _fig_top_accuracy),
    ("top_test_loss.png", "Top architectures by test loss", _fig_top_loss),
    ("accuracy_vs_params.png", "Test accuracy vs parameter count", _fig_pareto),
    ("accuracy_vs_latency.png", "Test accuracy vs CPU latency", _fig_latency),
    ("hyperparameter_effects.png", "Hyperparameter effects on validation accuracy", _fig_effects),
    ("best_so_far.png", "Best so far", _fig_progress),
    ("learning_curves.png", f"Learning curves of the top {tables.CURVES_N}", _fig_curves),
    ("confusion_matrix.png", "Confusion matrix of the recommended trial", _fig_confusion),
    ("misclassified.png", "Misclassified test digits", _fig_misclassified),
)
# Shown in the section on the recommended trial's mistakes rather than under Figures.
ERROR_FIGURES = ("confusion_matrix.png", "misclassified.png")


def _fig_rung_curves(ctx: Context) -> Figure | None:
    curves = time_spent.rung_curves(ctx.df)
    return None if curves.empty else plots.plot_rung_curves(curves)


# Drawn only where they apply (runs of the asha tuner), in the section on the search.
SEARCH_FIGURES: tuple[tuple[str, str, Callable[[Context], Figure | None]], ...] = (
    ("rung_curves.png", "Learning curves by the rung each configuration reached", _fig_rung_curves),
)
FIGURE_FILES = frozenset(name for name, _, _ in (*FIGURES, *SEARCH_FIGURES))


def write_report(run_dirs: Sequence[Path], out_dir: Path) -> Path:
    """Write trials.csv, report.md, a self-contained index.html and PNG figures into out_dir.

    Reads the records of one or several runs (never trains). The report is made in a folder
    beside out_dir and then replaces it whole, so that out_dir always holds a complete report,
    the earlier one or this one, whatever stops the writing (a full disk, a kill). Returns the
    path of index.html. Raises ReportError for a run directory that is missing or has no
    config.json, and for an out_dir that holds more than a report.
    """
    ctx = load_context(run_dirs)
    out_dir = Path(out_dir)
    target = report_folder(out_dir)
    figures, notes = _draw_figures(ctx)
    searched = _draw_search_figures(ctx)
    blocks = report_blocks(ctx, figures, notes, searched, out_dir)
    csv = ctx.df[[*CSV_COLUMNS, *hp_columns(ctx.df)]].to_csv(index=False)
    try:
        with swap.replaced(target, SWAPPING_POINT) as partial:
            records.atomic_write_text(partial / TRIALS_CSV, csv)
            for figure in [*figures, *searched]:
                records.atomic_write_bytes(partial / figure.filename, figure.png)
            faults.point(WRITING_POINT)
            records.atomic_write_text(partial / REPORT_MD, to_markdown(blocks))
            records.atomic_write_text(
                partial / INDEX_HTML, to_html(blocks, sections.title(ctx.runs))
            )
    except PermissionError as exc:
        raise ReportError(
            f"cannot write the report beside {target} ({exc.strerror}): it is made in a folder "
            "next to it, then swapped in; give --out a folder whose parent you may write in"
        ) from None
    except OSError as exc:
        raise records.disk_full_or(exc, target) from None
    return out_dir / INDEX_HTML


def report_folder(out_dir: Path) -> Path:
    """The folder a report replaces (out_dir, a link to it followed); ReportError for one
    that holds anything but an earlier report's files."""
    target = Path(out_dir).resolve()
    if not target.name:
        raise ReportError(f"{out_dir} cannot hold a report: give --out a folder of its own")
    if not target.is_dir():
        if target.exists():
            raise ReportError(f"{out_dir} is a file, not a folder; give --out a folder")
        return target
    names = [entry.name for entry in os.scandir(target)]
    reported = any(name in REPORT_TEXT for name in names)
    foreign = sorted(n for n in names if not _report_file(target / n, reported))
    if foreign:
        shown = ", ".join(foreign[:FOREIGN_SHOWN]) + (
            ", ..." if len(foreign) > FOREIGN_SHOWN else ""
        )
        raise ReportError(
            f"{out_dir} holds files that are not a report's ({shown}); a report replaces its "
            "folder whole: give --out a new or empty folder, or move those out"
        )
    return target


def _report_file(path: Path, reported: bool) -> bool:
    """Whether path is one a report writes (any figure, in a folder a report made), or a
    temporary file of an interrupted one."""
    if not path.is_file() or path.is_symlink():
        return False
    name = path.name
    if name in REPORT_TEXT or name in FIGURE_FILES or (reported and name.endswith(".png")):
        return True
    return bool(swap.SCRATCH.match(name) or swap.UNNAMED_TEMP.match(name))


def _draw_figures(ctx: Context) -> tuple[list[Figure], list[str]]:
    """Each of FIGURES as PNG bytes, and the notes on those that were skipped."""
    if ctx.choice is None:
        return [], []
    figures, notes = [], []
    for filename, title, build in FIGURES:
        result = build(ctx)
        if isinstance(result, str):
            notes.append(result)
        else:
            figures.append(Figure(filename, title, plots.figure_png(result)))
    return figures, notes


def _draw_search_figures(ctx: Context) -> list[Figure]:
    """The SEARCH_FIGURES that apply to these runs, as PNG bytes."""
    drawn = ((name, title, build(ctx)) for name, title, build in SEARCH_FIGURES)
    return [Figure(name, title, plots.figure_png(fig)) for name, title, fig in drawn if fig]


def report_blocks(
    ctx: Context,
    figures: list[Figure],
    notes: list[str],
    searched: list[Figure] = (),
    out_dir: Path | None = None,
) -> list[Block]:
    """The whole report in reading order; the figures of mistakes go to their own section.
    Links to the shipped model are relative to out_dir, the report's folder."""
    mistakes = [f for f in figures if f.filename in ERROR_FIGURES]
    others = [f for f in figures if f.filename not in ERROR_FIGURES]
    return [
        Heading(sections.title(ctx.runs), 1),
        *summary.section(ctx),
        *released.section(ctx, out_dir),
        *sections.damaged(ctx),
        *sections.recommended(ctx),
        *sections.runs_table(ctx.runs),
        *sections.leaderboard(ctx),
        *confirmed.section(ctx.runs),
        *sections.between_runs(ctx),
        *sections.environment(ctx.runs),
        *sections.time_to_accuracy(ctx),
        *sections.the_search(ctx, list(searched)),
        *sections.mistakes(ctx, mistakes),
        *sections.failures(ctx),
        *sections.workers(ctx),
        *sections.figures(ctx, others, notes),
    ]
