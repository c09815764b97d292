"""The report's sections past the summary, each a list of blocks built from tidy tables."""

from __future__ import annotations

import pandas as pd

from bench.core import metrics, records
from bench.report import compare, tables, time_spent
from bench.report.columns import RESULT_COLUMNS, format_value
from bench.report.loading import NO_TRIAL, Context, Run, by_creation, class_names
from bench.report.render import Block, Figure, Heading, Image, Paragraph, Table, cell, cells

LEADERBOARD_SIZE = 20
NOT_REACHED = "not reached"
NOT_RECORDED = "(not recorded)"
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
    "dataset",
    "custom_data",
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
DATASET_FIELD = "dataset_sha256"  # read from the run's config, not its environment
_LEADERBOARD_NOTE = (
    f"Finished trials ranked by test accuracy (ties: lower test loss), top {LEADERBOARD_SIZE}; "
    "val_rank is the rank by validation accuracy, which is what chooses the release. "
    "Seed baseline rows are kept as reference. rung_epochs, where shown, is the budget of the "
    "trial's rung (asha, hyperband): a short screen is not a full trial. latency_ms (one image "
    "at a time) and images_per_second (batches of 256), where shown, are the CPU cost of the "
    "model as served, measured after each trial; inference_bytes its .keras size without "
    "optimizer state; flops per image, from the layer shapes."
)
_CHANGES_NOTE = (
    "Each run against the run created before it: before is the older run, after the newer; "
    "accuracy is the best test accuracy, loss the lowest test loss, change_points the accuracy "
    f"change in percentage points. Flagged: accuracy down by more than "
    f"{compare.REGRESSION_ACCURACY * compare.PERCENTAGE_POINTS:.1f} points, loss up by more than "
    f"{compare.REGRESSION_LOSS_RATIO - 1:.0%}, or a space with no finished trial any more."
)
_TIME_TO_NOTE = (
    "Minutes from each run's first trial start until what the run would have recommended at "
    "that moment had a test accuracy at or above the target (wall clock, pauses of a resumed "
    "run included): the best trial by validation accuracy so far; once confirmation "
    "retrainings had finished, the configuration with the best mean validation accuracy over "
    "them, at their mean test accuracy; once its release had finished, the release. by says "
    "which; trials is how many search trials had finished by then. A model that scored well "
    "on the test set alone does not count: that would be choosing on the test set."
)
_PAIRS_NOTE = (
    "True digit, the digit the model said instead, how often, and that pair's share of all "
    "the trial's test errors."
)
_PACE_NOTE = (
    "Trials and distinct configurations per run, over its wall time from the first trial's "
    "start to the last one's end (pauses of a resumed run included); asha's promotions are "
    "trials of a configuration already counted."
)
_RUNGS_NOTE = (
    "asha trains each configuration at growing budgets (rungs) and promotes the best third of "
    "each rung's finished trials, by validation accuracy, to the next; the space's defaults "
    "go on at every rung. promoted counts the trials of a rung that went on. A rung of less "
    "than one epoch trains one epoch of that share of the training batches."
)
_WORKERS_NOTE = (
    "Trials by worker of a distributed run (`bench search --workers N`): busy_hours is training "
    "plus test evaluation, busy_share that over the run's wall time, oracle_wait_s the mean "
    "seconds a trial spent in calls to the chief."
)


def title(runs: list[Run]) -> str:
    return "mnist-bench report: " + ", ".join(run.name for run in runs)


def recommended(ctx: Context) -> list[Block]:
    """The recommended trial's results and hyperparameters, one field a row."""
    if ctx.choice is None:
        return []
    record = ctx.choice[1]
    rows = [(key, cell(key, record.get(key))) for key in RESULT_COLUMNS]
    rows += [
        (f"hp {key}", format_value(value))
        for key, value in sorted(record["hyperparameters"].items())
    ]
    table = pd.DataFrame(rows, columns=["field", "value"])
    return [Heading("Recommended configuration", 2), Table(table)]


def runs_table(runs: list[Run]) -> list[Block]:
    """Each run's directory and the settings it was made with."""
    rows = [
        {
            "run": run.name,
            "directory": str(run.path),
            **{key: _fact(run.config.get(key)) for key in RUN_FACTS},
        }
        for run in runs
    ]
    return [Heading("Runs", 2), Table(cells(pd.DataFrame(rows)))]


def _fact(value) -> str:
    if isinstance(value, dict):
        return str(value.get("name", value))
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return "" if value is None else str(value)


def leaderboard(ctx: Context) -> list[Block]:
    """The top LEADERBOARD_SIZE finished trials by test accuracy, and the seed baselines."""
    board = tables.leaderboard(ctx.df)
    if not len(board):
        return []
    shown = board[(board["rank"] <= LEADERBOARD_SIZE) | board["baseline"]]
    return [Heading("Leaderboard", 2), Paragraph(_LEADERBOARD_NOTE), Table(cells(shown))]


def between_runs(ctx: Context) -> list[Block]:
    """With several runs: each run's best trial, then each run against the one before it."""
    if len(ctx.runs) < 2:
        return []
    best = Table(cells(compare.per_run_best(ctx.df)))
    blocks: list[Block] = [Heading("Best trial of each run (by validation accuracy)", 2), best]
    blocks += [Heading("Changes between runs", 2), Paragraph(_CHANGES_NOTE)]
    ordered = by_creation(ctx.runs)
    for before, after in zip(ordered, ordered[1:], strict=False):
        blocks += _changes(ctx.df, before, after)
    return blocks


def _changes(df: pd.DataFrame, before: Run, after: Run) -> list[Block]:
    """One run against an older one: per search space, and per architecture both finished."""
    spaces = compare.changes_per_space(df, before.name, after.name)
    common = compare.common_architectures(df, before.name, after.name)
    datasets = [run.config.get("dataset", "mnist") for run in (before, after)]
    if datasets[0] != datasets[1]:
        # Another dataset is not a regression: what compares is how architectures rank.
        spaces["regression"] = common["regression"] = ""
        verdict = f"Different datasets ({datasets[0]}, {datasets[1]}): compare the ranks."
    else:
        flagged = int((spaces["regression"] != "").sum() + (common["regression"] != "").sum())
        verdict = f"{flagged} regression(s) flagged." if flagged else "No regression flagged."
    blocks: list[Block] = [
        Heading(f"{after.name} against {before.name}", 3),
        Paragraph(f"Best of each search space. {verdict}"),
        Table(cells(spaces)),
    ]
    if common.empty:
        return [*blocks, Paragraph("No architecture finished in both runs.")]
    return [*blocks, Paragraph("Architectures finished in both runs:"), Table(cells(common))]


def environment(runs: list[Run]) -> list[Block]:
    """Software, hardware and data of each run (its latest environment); what differs."""
    rows = []
    for field in (*ENVIRONMENT_FIELDS, DATASET_FIELD):
        values = {}
        for run in runs:
            where = run.config if field == DATASET_FIELD else _latest_environment(run)
            values[run.name] = _fact(where[field]) if field in where else NOT_RECORDED
        row = {"field": field, **values}
        if len(runs) > 1:
            row["differs"] = len(set(values.values())) > 1
        rows.append(row)
    blocks: list[Block] = [Heading("Environment", 2), Table(cells(pd.DataFrame(rows)))]
    return blocks + [Paragraph(_moved(run)) for run in runs if len(run.environments) > 1]


def _latest_environment(run: Run) -> dict:
    if run.environments:
        return run.environments[-1]
    # Runs from before environment.json: their records still name versions and commit.
    latest = max(run.records, key=lambda r: r.get("started_at") or "", default={})
    return {**(latest.get("versions") or {}), "git_commit": latest.get("git_commit")}


def _moved(run: Run) -> str:
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


def time_to_accuracy(ctx: Context) -> list[Block]:
    """Minutes until each run first reached each target test accuracy."""
    reached = time_spent.time_to_accuracy(ctx.df, ctx.runs)
    if not len(reached):
        return []
    table = cells(reached)
    table.loc[reached["minutes"].isna().to_numpy(), "minutes"] = NOT_REACHED
    return [Heading("Time to accuracy", 2), Paragraph(_TIME_TO_NOTE), Table(table)]


def mistakes(ctx: Context, figures: list[Figure]) -> list[Block]:
    """What the recommended trial gets wrong: per class, the most confused pairs, figures."""
    if isinstance(ctx.predictions, str):
        return []
    run, record = ctx.choice
    matrix = metrics.confusion(ctx.predictions["y_true"], ctx.predictions["y_pred"])
    pairs = metrics.confused_pairs(matrix)
    blocks: list[Block] = [
        Heading("What the recommended trial gets wrong", 2),
        Paragraph(f"Trial {record['trial_id']} of run {run.name}, on the test set."),
        Heading("Accuracy per class", 3),
        Table(cells(metrics.per_class(matrix, class_names(run)))),
        Heading("Most confused pairs", 3),
    ]
    if pairs.empty:
        blocks.append(Paragraph("No test image was misclassified."))
    else:
        blocks += [Paragraph(_PAIRS_NOTE), Table(cells(pairs))]
    return blocks + _figure_blocks(figures)


def _figure_blocks(figures: list[Figure]) -> list[Block]:
    return [block for figure in figures for block in (Heading(figure.title, 3), Image(figure))]


def damaged(ctx: Context) -> list[Block]:
    """The files that could not be read: records, left out of everything else in the report,
    and predictions, without which their trial is reported."""
    rows = [{"run": run.name, "problem": why} for run in ctx.runs for why in run.damaged]
    if not rows:
        return []
    note = (
        "These files could not be read; the report is of the rest of the run(s): a record "
        "listed here is left out, a trial whose predictions are listed is reported without them."
    )
    return [
        Heading(f"Damaged files ({len(rows)})", 2),
        Paragraph(note),
        Table(cells(pd.DataFrame(rows))),
    ]


def failures(ctx: Context) -> list[Block]:
    """Failed trials: each distinct error with its count, then every failed configuration."""
    failed = tables.failures(ctx.df)
    if failed.empty:
        return []
    reasons = failed.drop_duplicates("error")[["count", "error"]]
    return [
        Heading(f"Failures ({len(failed)})", 2),
        Table(cells(reasons)),
        Heading("Failed configurations", 3),
        Table(cells(failed[list(tables.FAILURE_COLUMNS)])),
    ]


def the_search(ctx: Context, figures: list[Figure]) -> list[Block]:
    """How each run spent its time: configurations per hour; for asha, its rungs."""
    speed = time_spent.pace(ctx.df)
    if speed.empty:
        return []
    blocks: list[Block] = [Heading("The search", 2), Paragraph(_PACE_NOTE), Table(cells(speed))]
    for run in ctx.runs:
        if reach := run.config.get(records.BUDGET_REACH_KEY):
            blocks.append(Paragraph(f"{run.name}, from its start: {reach}."))
    steps = time_spent.rungs(ctx.df)
    if len(steps):
        blocks += [Heading("Rungs", 3), Paragraph(_RUNGS_NOTE), Table(cells(steps))]
    return blocks + _figure_blocks(figures)


def workers(ctx: Context) -> list[Block]:
    """Trials and busy time per worker of a distributed run."""
    crew = tables.workers(ctx.df)
    if not len(crew):
        return []
    return [Heading("Workers", 2), Paragraph(_WORKERS_NOTE), Table(cells(crew))]


def figures(ctx: Context, drawn: list[Figure], notes: list[str]) -> list[Block]:
    """The figures, after a note for each one that was skipped."""
    blocks: list[Block] = [Heading("Figures", 2)]
    if ctx.choice is None:
        blocks.append(Paragraph(f"{NO_TRIAL}: there is nothing to draw."))
    blocks += [Paragraph(note) for note in notes]
    return blocks + _figure_blocks(drawn)
