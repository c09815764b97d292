"""Which trial ships: by the mean of its confirmation retrainings where a run has them, else
by its own validation accuracy.

After hundreds of trials the single best validation score is the one most flattered by luck,
and with asha often a trial that never reached full fidelity; the night's confirmation
retrains its top configurations with fresh seeds at full fidelity, so when a run has those
retrainings they decide. The search's own trial is left out of the mean: it was picked for
being lucky. The test set never decides.
"""

from __future__ import annotations

from pathlib import Path

from bench.core import records
from bench.errors import ExportError

AUTO = "auto"  # the confirmed ranking when the run has one, else the single best trial
CONFIRMED = "confirmed"  # the confirmed ranking; refused without one
SINGLE = "single"  # the single trial with the best validation accuracy
PICKS = (AUTO, CONFIRMED, SINGLE)
FLAGS = {CONFIRMED: "--confirmed", SINGLE: "--single-trial"}  # `bench export`'s words for them

SINGLE_SELECTION = "highest validation accuracy of a single trial (ties: lower validation loss)"


def confirmed_selection(seeds: int) -> str:
    """How a confirmed pick was made, in the words the card and config.json carry."""
    return (
        f"highest mean validation accuracy over {seeds} confirmation retraining(s) with fresh "
        "seeds, the search's own trial left out (ties: lower mean validation loss)"
    )


def winner(run_dir: Path, pick: str = AUTO) -> tuple[dict, str]:
    """The trial to ship and how it was chosen (a sentence for the card and config.json)."""
    if pick not in PICKS:
        raise ExportError(f"pick must be one of {', '.join(PICKS)}, not {pick!r}")
    trials = records.load_records(run_dir)
    seed_results = records.load_confirmed(run_dir) if pick != SINGLE else []
    if pick == CONFIRMED or seed_results:
        record = confirmed_winner(run_dir, seed_results, trials)
        seeds = sum(r["trial_id"] == record["trial_id"] for r in seed_results)
        return record, confirmed_selection(seeds)
    record = records.best_by_validation(trials)
    if record is None:
        raise ExportError(f"{run_dir}: no finished trial to export")
    return record, SINGLE_SELECTION


def confirmed_winner(run_dir: Path, results: list[dict], trials: list[dict]) -> dict:
    """The trial whose `bench confirm` results (of run_dir) have the best mean validation
    accuracy."""
    ranked = confirmed_by_val_accuracy(results)
    if not ranked:
        raise ExportError(f"{run_dir}: no confirmed trial; run `bench confirm` first")
    return next(r for r in records.completed(trials) if r["trial_id"] == ranked[0])


def confirmed_by_val_accuracy(results: list[dict]) -> list[str]:
    """Confirmed trial ids of one run, best mean validation accuracy first (see
    confirmed_ranking)."""
    return [trial_id for _, trial_id in confirmed_ranking(results)]


def confirmed_ranking(results: list[dict]) -> list[tuple[str, str]]:
    """(run, trial id) of confirmation records, best mean validation accuracy over their seeds
    first (ties: lower mean validation loss, then the order of the results)."""
    by_trial: dict[tuple[str, str], list[dict]] = {}
    for result in results:
        by_trial.setdefault((result.get("run"), result["trial_id"]), []).append(result)

    def mean(key: tuple[str, str], name: str) -> float:
        return sum(r[name] for r in by_trial[key]) / len(by_trial[key])

    return sorted(by_trial, key=lambda k: (-mean(k, "val_accuracy"), mean(k, "val_loss")))
