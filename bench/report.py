"""What people read: an HTML/Markdown report, trials.csv and figures built from trial records."""

from __future__ import annotations

import base64
import html
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bench import plots, records, tables

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

NO_TRIAL = "No trial finished"
LEADERBOARD_SIZE = 20
PERCENTAGE_POINTS = 100.0
TRIALS_CSV = "trials.csv"
REPORT_MD = "report.md"
INDEX_HTML = "index.html"
CELL_FORMATS = {
    "val_accuracy": "{:.4f}",
    "val_loss": "{:.4f}",
    "test_accuracy": "{:.4f}",
    "test_loss": "{:.4f}",
    "params": "{:,.0f}",
    "train_seconds": "{:.1f}",
    "busy_hours": "{:.2f}",
    "busy_share": "{:.0%}",
    "oracle_wait_s": "{:.3f}",
    "target": "{:.1%}",
    "minutes": "{:.1f}",
    "accuracy": "{:.4f}",
    "share": "{:.0%}",
    "before_rank": "{:.0f}",
    "after_rank": "{:.0f}",
    "before_accuracy": "{:.4f}",
    "after_accuracy": "{:.4f}",
    "change_points": "{:+.2f}",
    "before_loss": "{:.4f}",
    "after_loss": "{:.4f}",
    **{
        f"{metric}{part}": "{:.4f}"
        for metric in ("test_accuracy", "test_loss")
        for part in ("_sd", "_low", "_high")
    },
    "p_value": "{:.3g}",
}
SIGNIFICANCE_PAIRS = 3  # rank 1 vs 2, 2 vs 3, 3 vs 4 of the confirmed ranking
NOT_REACHED = "not reached"
RUN_FACTS = (
    "space",
    "tuner",
    "max_trials",
    "max_epochs",
    "batch_size",
    "seed",
    "val_size",
    "train_limit",
    "test_limit",
)


class ReportError(Exception):
    """A run cannot be reported on; the message is one line a person can act on."""


@dataclass(frozen=True)
class Run:
    name: str
    path: Path
    config: dict
    records: list
    environments: list  # oldest first; empty for runs from before they were recorded
    confirmed: list  # bench confirm records (repeated seeds of the top trials)


@dataclass(frozen=True)
class Figure:
    filename: str
    title: str
    png: bytes


# ---------------------------------------------------------------- report assembly
# Each figure builder returns a Figure, or a one-line reason why it was skipped.


@dataclass(frozen=True)
class _Context:
    runs: list
    df: pd.DataFrame
    choice: tuple | None  # (Run, record) recommended by validation accuracy
    predictions: dict | str  # the recommended trial's test predictions, or why there are none


def _fig_top_accuracy(ctx: _Context) -> plt.Figure | str:
    return plots.plot_top_architectures(tables.top_architectures(ctx.df), "test_accuracy")


def _fig_top_loss(ctx: _Context) -> plt.Figure | str:
    return plots.plot_top_architectures(
        tables.top_architectures(ctx.df, by="test_loss"), "test_loss"
    )


def _fig_pareto(ctx: _Context) -> plt.Figure | str:
    return plots.plot_pareto(tables.pareto_front(ctx.df))


def _fig_effects(ctx: _Context) -> plt.Figure | str:
    effects = tables.hyperparameter_effects(ctx.df)
    if effects.empty:
        return "Hyperparameter effects skipped: the finished trials have no hyperparameters."
    return plots.plot_hyperparameter_effects(effects)


def _fig_progress(ctx: _Context) -> plt.Figure | str:
    return plots.plot_best_so_far(tables.best_so_far(ctx.df))


def _fig_curves(ctx: _Context) -> plt.Figure | str:
    curves = tables.learning_curves(ctx.df)
    if curves.empty:
        return "Learning curves skipped: the top trials recorded no history."
    return plots.plot_learning_curves(curves)


def _load_predictions(choice: tuple | None) -> dict | str:
    if choice is None:
        return NO_TRIAL
    run, record = choice
    try:
        predictions = records.load_predictions(run.path, record)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        return f"predictions of trial {record['trial_id']} unreadable ({exc})"
    if predictions is None:
        return f"trial {record['trial_id']} stored no predictions"
    return predictions


def _fig_confusion(ctx: _Context) -> plt.Figure | str:
    if isinstance(ctx.predictions, str):
        return f"Confusion matrix skipped: {ctx.predictions}."
    run, record = ctx.choice
    matrix = tables.confusion(ctx.predictions["y_true"], ctx.predictions["y_pred"])
    return plots.plot_confusion(
        matrix,
        f"Confusion matrix of the recommended trial {run.name}/{record['trial_id']} (test set)",
    )


def _fig_misclassified(ctx: _Context) -> plt.Figure | str:
    if isinstance(ctx.predictions, str):
        return f"Misclassified digits skipped: {ctx.predictions}."
    run, record = ctx.choice
    y_true, y_pred = ctx.predictions["y_true"], ctx.predictions["y_pred"]
    examples = tables.misclassified(y_true, y_pred, ctx.predictions["probs"])
    if examples.empty:
        return "Misclassified digits: none, the recommended trial got every test image right."
    images = _test_images(run, record, y_true)
    if isinstance(images, str):
        return f"Misclassified digits skipped: {images}."
    title = (
        f"Test digits trial {run.name}/{record['trial_id']} got wrong, most confident first "
        f"({len(examples)} of {int((y_pred != y_true).sum())})"
    )
    return plots.plot_misclassified(images, examples, title)


def _test_images(run: Run, record: dict, y_true: np.ndarray) -> np.ndarray | str:
    """The run's test images, when the data at hand is the data it was tested on."""
    from bench import data  # numpy only; the report never imports TensorFlow

    try:
        dataset = run.config.get("dataset", data.DEFAULT_DATASET)
        folder = data.find_data_dir(run.config.get("data_dir"), dataset)
        if folder is None:
            return f"no {data.DATASETS.get(dataset, dataset)} folder found to show the images from"
        raw = data.load_raw(folder)
    except (data.DataError, OSError) as exc:
        return f"the test images could not be read ({exc})"
    if raw.sha256 != (record.get("dataset") or {}).get("sha256"):
        return f"the data in {folder} is not the data the run was tested on (SHA256)"
    test = data.with_channel(raw.x_test)[: run.config.get("test_limit")]
    if not np.array_equal(raw.y_test[: len(test)], y_true):
        return "the stored predictions do not match the test labels"
    return test


FIGURES: tuple[tuple[str, str, Callable], ...] = (
    ("top_test_accuracy.png", "Top architectures by test accuracy", _fig_top_accuracy),
    ("top_test_loss.png", "Top architectures by test loss", _fig_top_loss),
    ("accuracy_vs_params.png", "Test accuracy vs parameter count", _fig_pareto),
    ("hyperparameter_effects.png", "Hyperparameter effects on validation accuracy", _fig_effects),
    ("best_so_far.png", "Best so far", _fig_progress),
    ("learning_curves.png", f"Learning curves of the top {tables.CURVES_N}", _fig_curves),
    ("confusion_matrix.png", "Confusion matrix of the recommended trial", _fig_confusion),
    ("misclassified.png", "Misclassified test digits", _fig_misclassified),
)
# Shown in the section on the recommended trial's mistakes rather than under Figures.
ERROR_FIGURES = ("confusion_matrix.png", "misclassified.png")


def _render_figures(ctx: _Context) -> tuple[list[Figure], list[str]]:
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


def _load_run(run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    if not (run_dir / records.CONFIG_FILE).is_file():
        what = "does not exist" if not run_dir.exists() else f"has no {records.CONFIG_FILE}"
        raise ReportError(f"run directory {run_dir} {what}")
    try:
        config = records.load_config(run_dir)
        trial_records = records.load_records(run_dir)
        environments = records.load_environments(run_dir)
        confirmed = records.load_confirmed(run_dir)
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read run {run_dir}: {exc}") from exc
    name = str(config.get("run") or run_dir.name)
    return Run(name, run_dir, config, trial_records, environments, confirmed)


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
    df = tables.trials_frame([(run.name, run.records) for run in runs])
    choice = _recommend(runs)
    ctx = _Context(runs, df, choice, _load_predictions(choice))
    figures, notes = _render_figures(ctx)
    blocks = _report_blocks(ctx, figures, notes)
    records.atomic_write_text(
        out_dir / TRIALS_CSV, df[[*tables.CSV_COLUMNS, *tables.hp_columns(df)]].to_csv(index=False)
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
    if ctx.choice is not None:
        table = _recommended_table(ctx.choice[1])
        blocks += [("h2", "Recommended configuration"), ("table", table)]
    blocks += [("h2", "Runs"), *_runs_blocks(ctx.runs)]
    board = tables.leaderboard(ctx.df)
    if len(board):
        shown = board[(board["rank"] <= LEADERBOARD_SIZE) | board["baseline"]]
        blocks += [("h2", "Leaderboard"), ("p", _LEADERBOARD_NOTE), ("table", _cells(shown))]
    blocks += _confirmed_blocks(ctx.runs)
    if len(ctx.runs) > 1:
        blocks += [
            ("h2", "Best trial of each run (by validation accuracy)"),
            ("table", _cells(tables.per_run_best(ctx.df))),
        ]
        blocks += _changes_blocks(ctx)
    blocks += _environment_blocks(ctx.runs)
    reached = tables.time_to_accuracy(ctx.df)
    if len(reached):
        cells = _cells(reached)
        cells.loc[reached["minutes"].isna().to_numpy(), "minutes"] = NOT_REACHED
        blocks += [("h2", "Time to accuracy"), ("p", _TIME_TO_NOTE), ("table", cells)]
    blocks += _errors_blocks(ctx, [f for f in figures if f.filename in ERROR_FIGURES])
    figures = [f for f in figures if f.filename not in ERROR_FIGURES]
    blocks += _failure_blocks(tables.failures(ctx.df))
    crew = tables.workers(ctx.df)
    if len(crew):
        blocks += [("h2", "Workers"), ("p", _WORKERS_NOTE), ("table", _cells(crew))]
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


_TIME_TO_NOTE = (
    "Minutes from each run's first trial start until a finished trial first reached the target "
    "test accuracy (wall clock, pauses of a resumed run included); trials is how many trials "
    "had finished by then."
)


_WORKERS_NOTE = (
    "Trials by worker of a distributed run (`bench search --workers N`): busy_hours is training "
    "plus test evaluation, busy_share that over the run's wall time, oracle_wait_s the mean "
    "seconds a trial spent in calls to the chief."
)


def _confirmed_blocks(runs: list[Run]) -> list[tuple]:
    confirmed = [record for run in runs for record in run.confirmed]
    if not confirmed:
        return []
    ranking = tables.confirmed_ranking(confirmed)
    blocks = [
        ("h2", "Confirmed with repeated seeds"),
        ("p", _CONFIRMED_NOTE),
        ("table", _with_intervals(_cells(ranking))),
    ]
    pairs = _significance(runs, ranking)
    if len(pairs):
        note = f"{_stats_name()} on the test digits, the matched seeds pooled. {_PAIRS_VERDICT}"
        blocks += [("h3", "Are the differences real?"), ("p", note), ("table", _cells(pairs))]
    return blocks


def _with_intervals(cells: pd.DataFrame) -> pd.DataFrame:
    """Low and high columns of a confirmed ranking's cells joined into one "low to high"."""
    for metric in ("test_accuracy", "test_loss"):
        low, high = cells.pop(f"{metric}_low"), cells.pop(f"{metric}_high")
        joined = [f"{a} to {b}" if a else "" for a, b in zip(low, high, strict=True)]
        cells.insert(cells.columns.get_loc(f"{metric}_sd") + 1, f"{metric}_ci95", joined)
    return cells


def _stats_name() -> str:
    from bench import stats

    return stats.MCNEMAR


_CONFIRMED_NOTE = (
    "`bench confirm` retrained each of a run's top trials (by validation accuracy) with fresh "
    "seeds on the same splits; the search's own trial is not counted, since it was picked for "
    "being lucky too. Ranked by mean test accuracy over the seeds, with the standard deviation "
    "and the 95% t interval of the mean (ci95; none for one seed); likewise test loss."
)
_PAIRS_VERDICT = (
    "better_only and worse_only count the digits only one of the two got right; p_value is the "
    "chance of a split at least this uneven if both were equally accurate."
)


def _significance(runs: list[Run], ranking: pd.DataFrame) -> pd.DataFrame:
    """McNemar's test for neighbours in the confirmed ranking, over the seeds both have."""
    from bench import stats

    # (run, trial) -> {seed: (its run, its confirm record)}
    by_config: dict[tuple, dict] = {}
    for run in runs:
        for r in run.confirmed:
            by_config.setdefault((run.name, r["trial_id"]), {})[r["seed"]] = (run, r)
    rows = []
    top = ranking.head(SIGNIFICANCE_PAIRS + 1).to_dict("records")
    for better, worse in zip(top, top[1:], strict=False):
        pair = [by_config[(row["run"], row["trial_id"])] for row in (better, worse)]
        seeds = sorted(pair[0].keys() & pair[1].keys())
        test = {"a_only": None, "b_only": None, "p_value": None}
        try:
            if seeds:
                correct = [
                    np.concatenate([_correct(*side[seed]) for seed in seeds]) for side in pair
                ]
                test = stats.mcnemar_pair(*correct)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            test = {**test, "error": str(exc)}
        rows.append(
            {
                "better": f"#{better['rank']} {better['run']}/{better['trial_id']}",
                "worse": f"#{worse['rank']} {worse['run']}/{worse['trial_id']}",
                "seeds": len(seeds),
                "better_only": test["a_only"],
                "worse_only": test["b_only"],
                "p_value": test["p_value"],
                "verdict": _verdict(test, len(seeds)),
            }
        )
    return pd.DataFrame(rows)


def _correct(run: Run, record: dict) -> np.ndarray:
    arrays = records.load_confirmed_predictions(run.path, record)
    return arrays["y_pred"] == arrays["y_true"]


def _verdict(test: dict, seeds: int) -> str:
    from bench import stats

    if "error" in test:
        return f"not tested: predictions unreadable ({test['error']})"
    if not seeds:
        return "not tested: no seed in common"
    if test["p_value"] < stats.ALPHA:
        return f"significant at {stats.ALPHA:.0%}"
    return "not significant: could be seed noise"


def _by_creation(runs: list[Run]) -> list[Run]:
    # Runs from before created_at was kept sort first, in the order given.
    return sorted(runs, key=lambda run: str(run.config.get("created_at") or ""))


def _changes_blocks(ctx: _Context) -> list[tuple]:
    """Each run against the one created before it: per space, and per shared architecture."""
    ordered = _by_creation(ctx.runs)
    blocks = [("h2", "Changes between runs"), ("p", _CHANGES_NOTE)]
    for before, after in zip(ordered, ordered[1:], strict=False):
        spaces = tables.changes_per_space(ctx.df, before.name, after.name)
        common = tables.common_architectures(ctx.df, before.name, after.name)
        datasets = [run.config.get("dataset", "mnist") for run in (before, after)]
        if datasets[0] != datasets[1]:
            # Another dataset is not a regression: what compares is how architectures rank.
            spaces["regression"] = common["regression"] = ""
            verdict = f"Different datasets ({datasets[0]}, {datasets[1]}): compare the ranks."
        else:
            flagged = int((spaces["regression"] != "").sum() + (common["regression"] != "").sum())
            verdict = f"{flagged} regression(s) flagged." if flagged else "No regression flagged."
        blocks += [
            ("h3", f"{after.name} against {before.name}"),
            ("p", f"Best of each search space. {verdict}"),
            ("table", _cells(spaces)),
        ]
        if common.empty:
            blocks.append(("p", "No architecture finished in both runs."))
        else:
            blocks += [("p", "Architectures finished in both runs:"), ("table", _cells(common))]
    return blocks


_CHANGES_NOTE = (
    "Each run against the run created before it: before is the older run, after the newer; "
    "accuracy is the best test accuracy, loss the lowest test loss, change_points the accuracy "
    f"change in percentage points. Flagged: accuracy down by more than "
    f"{tables.REGRESSION_ACCURACY * PERCENTAGE_POINTS:.1f} points, loss up by more than "
    f"{tables.REGRESSION_LOSS_RATIO - 1:.0%}, or a space with no finished trial any more."
)
ENVIRONMENT_FIELDS = (
    "git_commit",
    "python",
    "tensorflow",
    "keras",
    "keras_tuner",
    "numpy",
    "platform",
    "cpu",
    "cpu_count",
    "gpus",
)
NOT_RECORDED = "(not recorded)"


def _environment_blocks(runs: list[Run]) -> list[tuple]:
    """Software, hardware and data of each run (its latest environment); what differs."""
    rows = []
    for field in (*ENVIRONMENT_FIELDS, "dataset_sha256"):
        values = {}
        for run in runs:
            where = run.config if field == "dataset_sha256" else _latest_environment(run)
            values[run.name] = _fact(where[field]) if field in where else NOT_RECORDED
        row = {"field": field, **values}
        if len(runs) > 1:
            row["differs"] = len(set(values.values())) > 1
        rows.append(row)
    blocks = [("h2", "Environment"), ("table", _cells(pd.DataFrame(rows)))]
    for run in runs:
        if len(run.environments) > 1:
            blocks.append(("p", _moved_sentence(run)))
    return blocks


def _latest_environment(run: Run) -> dict:
    if run.environments:
        return run.environments[-1]
    # Runs from before environment.json: their records still name versions and commit.
    latest = max(run.records, key=lambda r: r.get("started_at") or "", default={})
    return {**(latest.get("versions") or {}), "git_commit": latest.get("git_commit")}


def _moved_sentence(run: Run) -> str:
    changed = sorted(
        {
            key
            for old, new in zip(run.environments, run.environments[1:], strict=False)
            for key in ENVIRONMENT_FIELDS
            if old.get(key) != new.get(key)
        }
    )
    return (
        f"Run {run.name} ran in {len(run.environments)} environments (resumed or with workers "
        f"elsewhere; the table shows the latest); changed: {', '.join(changed) or 'nothing shown'}."
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
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return "" if value is None else str(value)


def _summary_blocks(ctx: _Context) -> list[tuple]:
    """The winner, its test accuracy and loss with 95% intervals, and what it beats."""
    status = ctx.df["status"]
    finished = int((status == records.STATUS_COMPLETED).sum())
    failed = int((status == records.STATUS_FAILED).sum())
    counts = ("p", f"{finished} trial(s) finished, {failed} failed, in {len(ctx.runs)} run(s).")
    if ctx.choice is None:
        why = "no trial was recorded" if status.empty else f"all {failed} trial(s) failed"
        return [counts, ("p", f"{NO_TRIAL}: {why}. There is no configuration to recommend.")]
    run, record = ctx.choice
    name = tables.architecture(record["hyperparameters"], record["space"])
    choice = (
        f"Recommended configuration to release: trial {record['trial_id']} of run {run.name} "
        f"({name}). It is chosen by VALIDATION accuracy, the best of all finished trials; "
        "the test set is reported, never used to choose (details below)."
    )
    blocks = [counts, ("p", choice), ("p", _test_sentence(ctx, record))]
    seeds = [r for r in run.confirmed if r["trial_id"] == record["trial_id"]]
    if seeds:
        blocks.append(("p", _confirmed_sentence(seeds)))
    blocks.append(("p", _baseline_sentence(ctx, record)))
    if len(ctx.runs) > 1:
        blocks.append(("p", _previous_run_sentence(ctx.runs)))
    return blocks


def _test_sentence(ctx: _Context, record: dict) -> str:
    from bench import stats

    measured = f"Test accuracy {record['test_accuracy']:.4f}, test loss {record['test_loss']:.4f}"
    if isinstance(ctx.predictions, str):
        return f"{measured} (no intervals: {ctx.predictions})."
    y_true = ctx.predictions["y_true"]
    total = len(y_true)
    low, high = stats.accuracy_interval(int((ctx.predictions["y_pred"] == y_true).sum()), total)
    losses = tables.per_image_loss(ctx.predictions["probs"], y_true)
    loss_low, loss_high = stats.mean_bootstrap_interval(losses)
    return (
        f"{measured}. 95% intervals for this model on {total:,} test images: accuracy "
        f"{low:.4f} to {high:.4f} (Wilson), loss {loss_low:.4f} to {loss_high:.4f} (bootstrap)."
    )


def _confirmed_sentence(seeds: list[dict]) -> str:
    from bench import stats

    accuracy = stats.mean_interval([r["test_accuracy"] for r in seeds])
    loss = stats.mean_interval([r["test_loss"] for r in seeds])
    if len(seeds) < 2:
        return (
            f"Retrained with 1 more seed (bench confirm): test accuracy {accuracy['mean']:.4f}, "
            f"loss {loss['mean']:.4f}; more seeds give an interval."
        )
    return (
        f"Retrained with {len(seeds)} more seeds (bench confirm): mean test accuracy "
        f"{accuracy['mean']:.4f} (95% CI {accuracy['low']:.4f} to {accuracy['high']:.4f}), "
        f"mean test loss {loss['mean']:.4f} (95% CI {loss['low']:.4f} to {loss['high']:.4f})."
    )


def _previous_run_sentence(runs: list[Run]) -> str:
    previous, latest = _by_creation(runs)[-2:]
    best, before = (records.best_by_validation(run.records) for run in (latest, previous))
    if best is None or before is None:
        return f"Against the previous run {previous.name}: one of the two has no finished trial."
    gain = (best["test_accuracy"] - before["test_accuracy"]) * PERCENTAGE_POINTS
    return (
        f"Against the previous run {previous.name}, the latest run {latest.name}'s pick has test "
        f"accuracy {best['test_accuracy']:.4f} vs {before['test_accuracy']:.4f} ({gain:+.2f} "
        f"points), test loss {best['test_loss']:.4f} vs {before['test_loss']:.4f}."
    )


def _recommended_table(record: dict) -> pd.DataFrame:
    rows = [(key, _cell(key, record.get(key))) for key in tables.RESULT_COLUMNS]
    rows += [
        (f"hp {key}", tables.format_value(value))
        for key, value in sorted(record["hyperparameters"].items())
    ]
    return pd.DataFrame(rows, columns=["field", "value"])


def _baseline_sentence(ctx: _Context, record: dict) -> str:
    seeds = [r for run in ctx.runs for r in run.records if r.get("space") == tables.SEED_SPACE]
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


def _errors_blocks(ctx: _Context, figures: list[Figure]) -> list[tuple]:
    if isinstance(ctx.predictions, str):
        return []
    run, record = ctx.choice
    matrix = tables.confusion(ctx.predictions["y_true"], ctx.predictions["y_pred"])
    pairs = tables.confused_pairs(matrix)
    blocks = [
        ("h2", "What the recommended trial gets wrong"),
        ("p", f"Trial {record['trial_id']} of run {run.name}, on the test set."),
        ("h3", "Accuracy per class"),
        ("table", _cells(tables.per_class(matrix, _class_names(run)))),
        ("h3", "Most confused pairs"),
    ]
    if pairs.empty:
        blocks.append(("p", "No test image was misclassified."))
    else:
        blocks += [("p", _PAIRS_NOTE), ("table", _cells(pairs))]
    return blocks + [b for figure in figures for b in (("h3", figure.title), ("figure", figure))]


def _class_names(run: Run) -> tuple[str, ...] | None:
    from bench import data

    return data.CLASS_NAMES.get(run.config.get("dataset", data.DEFAULT_DATASET))


_PAIRS_NOTE = (
    "True digit, the digit the model said instead, how often, and that pair's share of all "
    "the trial's test errors."
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
    return tables.format_value(value.item() if isinstance(value, np.generic) else value)


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
