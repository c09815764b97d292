"""Runs as the report reads them: their records, the recommended trial and its predictions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.core import records, swap
from bench.errors import DamagedFile, DataError, ReportError
from bench.report.columns import trials_frame

NO_TRIAL = "No trial finished"
# What reading a run's .npz of predictions raises for one that is damaged, gone or foreign.
UNREADABLE = (DamagedFile,)


@dataclass(frozen=True)
class Run:
    name: str
    path: Path
    config: dict
    records: list
    environments: list  # oldest first; empty for runs from before they were recorded
    confirmed: list  # bench confirm records (repeated seeds of the top trials)
    damaged: list = field(default_factory=list)  # why each unreadable record was left out


@dataclass(frozen=True)
class Context:
    """Everything a report is made from."""

    runs: list[Run]
    df: pd.DataFrame  # trials_frame() of every run's records
    choice: tuple[Run, dict] | None  # the recommended trial (recommend)
    predictions: dict | str  # the recommended trial's test predictions, or why there are none
    single: tuple[Run, dict] | None = None  # the best single trial by validation accuracy
    # The recommended trial's confirmation records when the confirmed ranking chose it.
    confirmed_seeds: list = field(default_factory=list)


def load_context(run_dirs: Sequence[Path]) -> Context:
    """Load the runs, their trials frame, the recommended trial and its predictions.

    Raises ReportError for a run directory that is missing or has no config.json.
    """
    runs = load_runs(run_dirs)
    df = trials_frame([(run.name, run.records) for run in runs])
    dataset = dataset_of(runs[0])
    confirmed, single = confirmed_best(runs, dataset), best_of(runs, dataset)
    choice = confirmed or single  # as recommend() picks
    seeds = []
    if confirmed is not None:
        run, record = confirmed
        seeds = [r for r in run.confirmed if r["trial_id"] == record["trial_id"]]
    return Context(runs, df, choice, load_predictions(choice), single, seeds)


def load_run(run_dir: Path) -> Run:
    """One run directory's config, trial records, environments and confirm records."""
    run_dir = Path(run_dir)
    if not (run_dir / records.CONFIG_FILE).is_file():
        what = "does not exist" if not run_dir.exists() else f"has no {records.CONFIG_FILE}"
        raise ReportError(f"run directory {run_dir} {what}")
    damaged: list[str] = []  # reported, and the rest of the run with them
    try:
        config = records.load_config(run_dir)
        environments = records.load_environments(run_dir)
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read run {run_dir}: {exc}") from exc
    trial_records = records.load_records(run_dir, damaged)
    confirmed = records.load_confirmed(run_dir, damaged)
    damaged += damaged_predictions(run_dir, trial_records, confirmed)
    # A release swapped in by the two-rename way and killed between them is put back.
    swap.recover_all(run_dir)
    name = str(config.get("run") or run_dir.name)
    return Run(name, run_dir, config, trial_records, environments, confirmed, damaged)


def damaged_predictions(run_dir: Path, trials: list[dict], confirmed: list[dict]) -> list[str]:
    """Why each predictions file the records name does not open as one (the arrays are read
    only for the figures that need them)."""
    named = [
        (records.trials_dir(run_dir), records.PREDICTIONS_REMEDY, records.completed(trials)),
        (records.confirm_dir(run_dir), records.CONFIRM_PREDICTIONS_REMEDY, confirmed),
    ]
    found = []
    for folder, remedy, kept in named:
        for record in kept:
            if not record.get("predictions"):
                continue
            try:
                records.read_npz(folder / record["predictions"], remedy, arrays=False)
            except DamagedFile as exc:
                found.append(str(exc))
    return found


def load_runs(run_dirs: Sequence[Path]) -> list[Run]:
    """Several runs, refusing none at all and two of the same name."""
    if not run_dirs:
        raise ReportError("no run directory given")
    runs = [load_run(path) for path in run_dirs]
    names = [run.name for run in runs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ReportError(f"several run directories are named {', '.join(duplicates)}")
    return runs


def dataset_of(run: Run) -> str:
    from bench.core import data  # numpy only; the report never imports TensorFlow

    name = str(run.config.get("dataset") or data.DEFAULT_DATASET)
    return f"custom data in {name}'s files" if run.config.get("custom_data") else name


def recommend(runs: list[Run]) -> tuple[Run, dict] | None:
    """The trial to release, with its run, from the runs on the first run's dataset (a score
    on another dataset says nothing about this one): where they have confirmation
    retrainings, the configuration with the best mean validation accuracy over them
    (bench.release.choose.confirmed_ranking); else the finished trial with the best
    validation accuracy."""
    if not runs:
        return None
    dataset = dataset_of(runs[0])
    return confirmed_best(runs, dataset) or best_of(runs, dataset)


def confirmed_best(runs: list[Run], dataset: str) -> tuple[Run, dict] | None:
    """The confirmed configuration with the best mean validation accuracy over the runs on
    `dataset`, as its search trial with its run; None when none was confirmed."""
    from bench.release import choose  # reads records only

    on_dataset = {run.name: run for run in runs if dataset_of(run) == dataset}
    results = [{**r, "run": run.name} for run in on_dataset.values() for r in run.confirmed]
    for name, trial_id in choose.confirmed_ranking(results):
        run = on_dataset[name]
        trial = next((t for t in records.completed(run.records) if t["trial_id"] == trial_id), None)
        if trial is not None:
            return run, trial
    return None


def best_of(runs: list[Run], dataset: str) -> tuple[Run, dict] | None:
    """The best finished trial by validation accuracy of the runs on `dataset`, with its run."""
    bests = [
        (run, records.best_by_validation(run.records)) for run in runs if dataset_of(run) == dataset
    ]
    bests = [(run, best) for run, best in bests if best is not None]
    overall = records.best_by_validation([best for _, best in bests])
    return next(((run, best) for run, best in bests if best is overall), None)


def load_predictions(choice: tuple[Run, dict] | None) -> dict | str:
    """The chosen trial's {y_true, y_pred, probs}, or one line on why there are none."""
    if choice is None:
        return NO_TRIAL
    run, record = choice
    try:
        predictions = records.load_predictions(run.path, record)
    except DamagedFile as exc:
        if str(exc) not in run.damaged:  # its bytes went bad past what the first look read
            run.damaged.append(str(exc))
        return f"predictions of trial {record['trial_id']} unreadable (listed under damaged files)"
    if predictions is None:
        return f"trial {record['trial_id']} stored no predictions"
    return predictions


def confirmed_correct(run: Run, record: dict) -> np.ndarray:
    """Which test images a confirm record's model got right."""
    arrays = records.load_confirmed_predictions(run.path, record)
    return arrays["y_pred"] == arrays["y_true"]


def load_test_images(run: Run, record: dict, y_true: np.ndarray) -> np.ndarray | str:
    """The run's test images, when the data at hand is the data it was tested on."""
    from bench.core import data  # numpy only; the report never imports TensorFlow

    try:
        dataset = run.config.get("dataset", data.DEFAULT_DATASET)
        folder = data.find_data_dir(run.config.get("data_dir"), dataset)
        if folder is None:
            return f"no {data.DATASETS.get(dataset, dataset)} folder found to show the images from"
        raw = data.load_raw(folder)
    except (DataError, OSError) as exc:
        return f"the test images could not be read ({exc})"
    if raw.sha256 != (record.get("dataset") or {}).get("sha256"):
        return f"the data in {folder} is not the data the run was tested on (SHA256)"
    test = data.with_channel(raw.x_test)[: run.config.get("test_limit")]
    if not np.array_equal(raw.y_test[: len(test)], y_true):
        return "the stored predictions do not match the test labels"
    return test


def class_names(run: Run) -> tuple[str, ...] | None:
    """Names of the run's classes where a label is not its own name (Fashion-MNIST)."""
    from bench.core import data

    return data.CLASS_NAMES.get(run.config.get("dataset", data.DEFAULT_DATASET))


def by_creation(runs: list[Run]) -> list[Run]:
    """Runs oldest first by config created_at; runs without one first, in the order given."""
    return sorted(runs, key=lambda run: str(run.config.get("created_at") or ""))
