"""Repeated seeds: retrain a run's top configurations with fresh seeds on the same splits.

One search trial is one draw of the training noise (initial weights, batch order, dropout,
augmentation); on MNIST that noise moves test accuracy by about as much as the differences
between good configurations. `bench confirm` trains each of the top K configurations (by
validation accuracy) S more times and records every one under results/<run>/confirm/
(records.confirm_dir), with its test predictions and its model as served.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.core import data, environment, lock, records
from bench.core.records import utc_now
from bench.errors import ConfirmError
from bench.train import fitting, kt_compat, served, spaces
from bench.train.epoch_lines import EpochLines

# Confirmation seeds are the run's seed + SEED_OFFSET + 1, 2, ...: never the seed the search
# started from, and the same for every configuration, so seed i of two configurations saw
# the same batch order.
SEED_OFFSET = 1000


def confirm_seeds(base_seed: int, count: int) -> list[int]:
    return [base_seed + SEED_OFFSET + i for i in range(1, count + 1)]


def record_stem(trial_id: str, seed: int) -> str:
    return f"{trial_id}-seed{seed}"


def confirm_run(
    run_dir: Path, top: int, seeds: int, data_dir: str | None = None, stream=None
) -> list[dict]:
    """Train the top `top` trials of run_dir with `seeds` fresh seeds each; return all records.

    Pairs (trial, seed) already confirmed are kept, so an interrupted confirm resumes, and a
    later call with more seeds or a larger top adds only what is missing.
    """
    kt_compat.install()
    stream = stream or sys.stdout
    if top < 1 or seeds < 1:
        raise ConfirmError(f"--top and --seeds must be at least 1, not {top} and {seeds}")
    config = records.run_config(run_dir, ConfirmError)
    spaces.of_run(config)  # its file as the run searched it
    chosen = records.ranked_by_validation(records.load_records(run_dir))[:top]
    if not chosen:
        raise ConfirmError(f"{run_dir}: no finished trial to confirm")
    raw = data.load_for_run(config, data_dir)
    data.check_same_data(raw, config.get("dataset_sha256"), ConfirmError)
    splits = data.splits_for_run(raw, config)
    fitting.apply_runtime(config.get("threads"), config.get("mixed_precision", False))
    with lock.run_lock(run_dir):
        confirm_trials(run_dir, config, Plan(chosen, seeds), splits, stream)
    return records.load_confirmed(run_dir)


@dataclass(frozen=True)
class Plan:
    """What a confirmation retrains: the chosen trials, how many seeds each, for how long."""

    chosen: list[dict]
    seeds: int
    epochs: float | None = None  # None: each trial's best epoch count; else a night's full one
    # fits(seconds) -> bool: whether a retraining that long still fits (the night's budget)
    fits: Callable[[float], bool] | None = None


def confirm_trials(run_dir: Path, config: dict, plan: Plan, splits: data.Splits, stream) -> int:
    """Retrain each of the plan's trials with its confirmation seeds, skipping pairs already
    done; the caller holds the run's lock. With plan.fits, a retraining starts only when one
    as long fits. Returns how many were trained."""
    chosen, seeds, epochs, fits = plan.chosen, plan.seeds, plan.epochs, plan.fits
    todo = missing(run_dir, chosen, confirm_seeds(config["seed"], seeds))
    print(
        f"confirming run {config['run']}: {len(chosen)} trial(s) x {seeds} seed(s), "
        f"{len(todo)} to train",
        file=stream,
        flush=True,
    )
    for done, (record, seed) in enumerate(todo, start=1):
        if fits is not None and not fits(expected_seconds(record, epochs)):
            why = f"the time budget has no room for trial {record['trial_id']} again"
            print(f"stopped confirming: {why}", file=stream, flush=True)
            return done - 1
        result = train_once(run_dir, record, config, splits, seed, epochs, stream)
        print(
            f"[{done}/{len(todo)}] trial {record['trial_id']} seed {seed}: "
            f"val {result['val_accuracy']:.4f} test {result['test_accuracy']:.4f} "
            f"loss {result['test_loss']:.4f} ({result['train_seconds']:.0f} s)",
            file=stream,
            flush=True,
        )
    return len(todo)


def night_choice(trials: list[dict], top: int, full_epochs: float) -> list[dict]:
    """What a night confirms: its top `top` configurations and the space's defaults (its first
    configuration), so that the winner can be tested against them. Each configuration counts
    once, by its trial at the highest fidelity it reached (asha's rungs; a trial without one is
    of `full_epochs`); configurations that reached full fidelity rank first, then those that
    stopped a rung lower, and so on, by validation accuracy within a fidelity."""
    best: dict[str, dict] = {}
    for record in records.ranked_by_validation(records.completed(trials)):
        key = json.dumps(record["hyperparameters"], sort_keys=True)
        if key not in best or _fidelity(record, full_epochs) > _fidelity(best[key], full_epochs):
            best[key] = record
    ranked = records.ranked_by_validation(list(best.values()))
    ranked.sort(key=lambda r: -_fidelity(r, full_epochs))  # stable: validation order kept
    chosen = ranked[:top]
    first = records.defaults_hyperparameters(trials)
    defaults = next((r for r in ranked if r["hyperparameters"] == first), None)
    if defaults is not None and defaults not in chosen:
        chosen.append(defaults)
    return chosen


def retrain_epochs(tuner: str, full_epochs: float) -> float | None:
    """The epochs a night retrains for: asha's top rung for every configuration, whatever
    rung it reached; for other tuners None, each trial's own best epoch count."""
    return full_epochs if tuner == "asha" else None


def night_seconds(
    run_dir: Path, trials: list[dict], top: int, seeds: int, config: dict, full_epochs: float
) -> float:
    """Seconds the night's confirmation still needs: the (chosen trial, seed) pairs not yet
    retrained, each as long as expected_seconds says."""
    chosen = night_choice(trials, top, full_epochs)
    epochs = retrain_epochs(config["tuner"], full_epochs)
    todo = missing(run_dir, chosen, confirm_seeds(config["seed"], seeds))
    return sum(expected_seconds(record, epochs) for record, _ in todo)


def _fidelity(record: dict, full_epochs: float) -> float:
    return float((record.get("tuner_state") or {}).get("epochs", full_epochs))


def missing(run_dir: Path, chosen: list[dict], seeds: list[int]) -> list[tuple[dict, int]]:
    """The (trial record, seed) pairs of chosen x seeds that have no confirm record yet."""
    folder = records.confirm_dir(run_dir)
    return [
        (record, seed)
        for record in chosen
        for seed in seeds
        if not (folder / f"{record_stem(record['trial_id'], seed)}.json").exists()
    ]


def expected_seconds(record: dict, epochs: float | None) -> float:
    """How long retraining a trial takes: its own time, scaled to `epochs` when given (from
    the epochs it trained itself: an asha promotion that continued its parent's weights
    trained only those its rung added)."""
    seconds = record.get("train_seconds") or 0.0
    trained = (record.get("tuner_state") or {}).get("trained_epochs") or 0
    ran = _fidelity(record, record.get("epochs_run") or 1) - trained
    return seconds * epochs / ran if epochs and ran > 0 else seconds


def train_once(
    run_dir: Path,
    trial: dict,
    config: dict,
    splits: data.Splits,
    seed: int,
    epochs: float | None = None,
    stream=None,
) -> dict:
    """Train one trial's configuration afresh with `seed` for its best epoch count (or
    `epochs`), on the run's training split; evaluate the last epoch's model; write its record,
    predictions and model (as served: bench.train.served). With a stream, a line per epoch goes
    to it."""
    epochs = int(epochs or trial["best_epoch"])
    started_at = utc_now()
    training = fitting.Training(
        splits.train_images, splits.y_train, config["batch_size"], seed, epochs
    )
    fitted = fitting.fit_afresh(
        trial,
        training,
        validation=fitting.evaluation_set(splits.val_images, splits.y_val),
        callbacks=[EpochLines(f"  trial {trial['trial_id']} seed {seed}", stream)]
        if stream
        else [],
    )
    test = fitting.evaluation_set(splits.test_images, splits.y_test)
    probs, test_accuracy, test_loss = fitting.evaluate(fitted.model, test, splits.y_test)
    stem = record_stem(trial["trial_id"], seed)
    folder = records.confirm_dir(run_dir)
    records.atomic_write_bytes(
        folder / f"{stem}.npz", records.predictions_bytes(splits.y_test, probs)
    )
    # The model as served, for `bench export --ensemble` to average without training again.
    served.save_served(served.served_model(trial["space"], fitted.model), folder / f"{stem}.keras")
    result = {
        "run": config["run"],
        "trial_id": trial["trial_id"],
        "seed": seed,
        "space": trial["space"],
        "hyperparameters": trial["hyperparameters"],
        "architecture": trial.get("architecture"),
        "epochs": epochs,
        "val_accuracy": float(fitted.history["val_accuracy"][-1]),
        "val_loss": float(fitted.history["val_loss"][-1]),
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "train_seconds": round(fitted.seconds, 3),
        "started_at": started_at,
        "finished_at": utc_now(),
        "predictions": f"{stem}.npz",
        "model": f"{stem}.keras",
        "versions": environment.versions(),
        "git_commit": environment.git_commit(),
    }
    records.atomic_write_json(folder / f"{stem}.json", result)
    return result
