"""Which trial ships: by its own validation accuracy, or by the mean of its confirmations."""

from __future__ import annotations

from pathlib import Path

from bench.core import records
from bench.errors import ExportError


def winner(run_dir: Path, confirmed: bool) -> tuple[dict, str | None]:
    """The trial to ship, and how it was chosen when not by its own validation accuracy."""
    trials = records.load_records(run_dir)
    if not confirmed:
        record = records.best_by_validation(trials)
        if record is None:
            raise ExportError(f"{run_dir}: no finished trial to export")
        return record, None
    seed_results = records.load_confirmed(run_dir)
    record = confirmed_winner(run_dir, seed_results, trials)
    seeds = sum(r["trial_id"] == record["trial_id"] for r in seed_results)
    return record, (
        f"highest mean validation accuracy over {seeds} seeds of `bench confirm` "
        "(ties: lower mean validation loss)"
    )


def confirmed_winner(run_dir: Path, results: list[dict], trials: list[dict]) -> dict:
    """The trial whose `bench confirm` results (of run_dir) have the best mean validation
    accuracy."""
    ranked = confirmed_by_val_accuracy(results)
    if not ranked:
        raise ExportError(f"{run_dir}: no confirmed trial; run `bench confirm` first")
    return next(r for r in records.completed(trials) if r["trial_id"] == ranked[0])


def confirmed_by_val_accuracy(results: list[dict]) -> list[str]:
    """Confirmed trial ids, best mean validation accuracy first (ties: lower mean validation
    loss, then the order of the results)."""
    by_trial: dict[str, list[dict]] = {}
    for result in results:
        by_trial.setdefault(result["trial_id"], []).append(result)

    def mean(trial_id: str, key: str) -> float:
        return sum(r[key] for r in by_trial[trial_id]) / len(by_trial[trial_id])

    return sorted(by_trial, key=lambda t: (-mean(t, "val_accuracy"), mean(t, "val_loss")))
