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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.core import data, environment, lock, records
from bench.core.budget import Cost, fit_cost
from bench.core.config import (
    CONFIRM_LIMITS,
    CONFIRM_SEED_OFFSET,
    check_range,
    check_seeds,
    confirm_seed_range,
)
from bench.core.records import utc_now
from bench.errors import ConfirmError
from bench.search import rung_plan
from bench.train import fitting, kt_compat, served, spaces
from bench.train.epoch_lines import EpochLines

# Confirmation seeds are the run's seed + SEED_OFFSET + 1, 2, ...: never the seed the search
# started from, and the same for every configuration, so seed i of two configurations saw
# the same batch order.
SEED_OFFSET = CONFIRM_SEED_OFFSET
# A run that measured too little for a cost model and has no calibration: a retraining takes
# its trial's seconds scaled by epochs.
PROPORTIONAL = Cost(0.0, 1.0)


def confirm_seeds(base_seed: int, count: int) -> list[int]:
    return list(confirm_seed_range(base_seed, count))


def check_counts(top: int, seeds: int) -> None:
    """ConfirmError naming the flag where --top or --seeds is out of range."""
    for (name, (lowest, highest)), value in zip(CONFIRM_LIMITS.items(), (top, seeds), strict=True):
        check_range(f"--{name}", value, lowest, highest, ConfirmError)


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
    check_counts(top, seeds)
    config = records.run_config(run_dir, ConfirmError)
    base = config["seed"]
    check_seeds("--seeds", base, confirm_seed_range(base, seeds), ConfirmError)
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
        # Each finished retraining tells how long the next will take.
        costs = retrain_costs(run_dir, records.load_records(run_dir), config) if fits else None
        if fits is not None and not fits(expected_seconds(record, epochs, costs)):
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
    retrained, each as long as expected_seconds says from what the run measured."""
    costs = retrain_costs(run_dir, trials, config)
    return sum(_night_todo(run_dir, trials, top, seeds, config, full_epochs, costs).values())


def _night_todo(
    run_dir: Path,
    trials: list[dict],
    top: int,
    seeds: int,
    config: dict,
    full_epochs: float,
    costs: RetrainCosts,
) -> dict[tuple[str, int], float]:
    """The night's (trial id, seed) pairs still to retrain, with the seconds each may take."""
    chosen = night_choice(trials, top, full_epochs)
    epochs = retrain_epochs(config["tuner"], full_epochs)
    todo = missing(run_dir, chosen, confirm_seeds(config["seed"], seeds))
    return {
        (record["trial_id"], seed): expected_seconds(record, epochs, costs) for record, seed in todo
    }


@dataclass(frozen=True)
class Reserve:
    """What a search keeps back for the stages after it: the confirmation's retrainings still
    to do and the release."""

    confirm_seconds: float = 0.0
    retrainings: int = 0
    release_seconds: float | None = None  # None: the night releases nothing

    @property
    def seconds(self) -> float:
        return self.confirm_seconds + (self.release_seconds or 0.0)

    def words(self) -> str:
        """What it is kept for: "the confirmation (8 retrainings) and the release"."""
        parts = []
        if self.retrainings:
            plural = "s" if self.retrainings != 1 else ""
            parts.append(f"the confirmation ({self.retrainings} retraining{plural})")
        if self.release_seconds is not None:
            parts.append("the release")
        return " and ".join(parts)


def night_reserve(run_dir: Path, trials: list[dict], config: dict, full_epochs: float) -> Reserve:
    """What the night (config: its config.json) keeps back after its search: the retrainings
    of --confirm-seeds that its choice so far still needs, and with --release the release of
    the costliest configuration that may win (one the confirmation retrains, else the best
    trial), unless the run's rung plan left the release out."""
    costs = retrain_costs(run_dir, trials, config)
    top, seeds = config.get("confirm_top", 0), config.get("confirm_seeds", 0)
    todo = _night_todo(run_dir, trials, top, seeds, config, full_epochs, costs) if seeds else {}
    release = _night_release(costs, trials, config, full_epochs)
    return Reserve(sum(todo.values()), len(todo), release)


def _night_release(
    costs: RetrainCosts, trials: list[dict], config: dict, full_epochs: float
) -> float | None:
    """Seconds the night's release may take: that of the costliest configuration that may
    win; None for a night without one, or whose rung plan left it out."""
    plan = rung_plan.saved_plan(config)
    if not config.get("release") or (plan and plan.release_left_out):
        return None
    if config.get("confirm_seeds"):
        candidates = night_choice(trials, config.get("confirm_top", 0), full_epochs)
    else:
        candidates = [best] if (best := records.best_by_validation(trials)) else []
    seconds = (_release_seconds(costs, r, release_of(config, r)) for r in candidates)
    return max(seconds, default=0.0)


def release_seconds(
    run_dir: Path, config: dict, record: dict, epochs: int | None = None, clean_epochs: int = 0
) -> float:
    """Seconds the release of `record` (a trial of the run in run_dir, config its config.json)
    takes: `epochs` (None: its best epoch count), then `clean_epochs` without augmentation, on
    all training images, at the cost its run measured (its trials, its calibration, its
    confirmation retrainings so far)."""
    costs = retrain_costs(run_dir, records.load_records(run_dir), config)
    scale = release_of(config, record).scale
    return _release_seconds(costs, record, rung_plan.Release(epochs, clean_epochs, scale))


def release_of(config: dict, record: dict) -> rung_plan.Release:
    """The release a night's config.json asks for, on a trial of its run: its epochs and
    images as a share of a search epoch's (the record's training and validation sizes)."""
    sizes = record.get("dataset") or {}
    train = sizes.get("train") or 0
    limited = config.get("train_limit") is not None
    scale = rung_plan.release_scale(train, sizes.get("val") or 0, limited) if train else 1.0
    return rung_plan.Release(
        config.get("release_epochs"), config.get("release_clean_epochs") or 0, scale
    )


def _release_seconds(costs: RetrainCosts, record: dict, release: rung_plan.Release) -> float:
    best = record.get("best_epoch") or trained_epochs(record)
    return release.seconds(costs.of(record), best)


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


def expected_seconds(
    record: dict, epochs: float | None, costs: RetrainCosts | None = None
) -> float:
    """How long retraining a trial takes for `epochs` (None: its best epoch count): its
    configuration's cost (RetrainCosts.of) at that many epochs. Without `costs`, its own
    seconds scaled by the epochs it trained itself."""
    costs = costs or RetrainCosts()
    return costs.of(record).seconds(epochs or record.get("best_epoch") or trained_epochs(record))


def trained_epochs(record: dict) -> float:
    """The epochs a trial trained in the seconds its record gives: those it ran, less those
    before a resume, each a share of one for a screen shorter than an epoch (asha; a
    promotion that continued its parent's weights trained only those its rung adds)."""
    ran = (record.get("epochs_run") or 0) - (record.get("resumed_at_epoch") or 0)
    state = record.get("tuner_state") or {}
    added = (state.get("epochs") or 0) - (state.get("trained_epochs") or 0)
    return max(ran, 0) * (added if 0 < added < 1 else 1.0)


def trial_seconds(record: dict) -> float:
    """A trial's seconds that a retraining repeats: building, fitting, the test evaluation."""
    return (record.get("train_seconds") or 0.0) + (record.get("eval_seconds") or 0.0)


def wall_seconds(result: dict) -> float:
    """A confirmation retraining's seconds from its start to its record, its model saved
    too; its train_seconds for a record without both times."""
    try:
        began = datetime.fromisoformat(result["started_at"])
        return (datetime.fromisoformat(result["finished_at"]) - began).total_seconds()
    except (KeyError, TypeError, ValueError):
        return result.get("train_seconds") or 0.0


@dataclass(frozen=True)
class RetrainCosts:
    """What retraining a run's configurations costs, from what the run measured: a cost model
    of its trials (fixed seconds + epochs x seconds per epoch) and, per trial, how long its
    confirmation retrainings took against that model's estimate."""

    model: Cost = PROPORTIONAL
    ratios: dict[str, list[float]] = field(default_factory=dict)

    def speed(self, record: dict) -> float:
        """How much slower than the model the record's own trial was (its configuration)."""
        expected = self.model.seconds(trained_epochs(record))
        seconds = trial_seconds(record)
        return seconds / expected if seconds > 0 and expected > 0 else 1.0

    def of(self, record: dict) -> Cost:
        """The cost model of a retraining of the record's configuration: the run's, times its
        trial's speed, times how its own confirmation retrainings compared (those of every
        configuration until it has one: the best evidence of what the rest will take)."""
        ratios = self.ratios.get(record.get("trial_id")) or [
            r for rs in self.ratios.values() for r in rs
        ]
        factor = self.speed(record) * (sum(ratios) / len(ratios) if ratios else 1.0)
        return Cost(self.model.fixed * factor, self.model.per_epoch * factor)


def retrain_costs(run_dir: Path, trials: list[dict], config: dict) -> RetrainCosts:
    """The run's RetrainCosts: the cost model fitted to its finished trials (their seconds
    against the epochs each trained), else the calibration of its rung plan (config: its
    config.json), else seconds proportional to epochs; and its confirmation records so far."""
    done = records.completed(trials)
    plan = rung_plan.saved_plan(config)
    fitted = fit_cost((trained_epochs(r), trial_seconds(r)) for r in done)
    model = fitted or (plan and plan.calibration()) or PROPORTIONAL
    by_id = {r["trial_id"]: r for r in done}
    ratios: dict[str, list[float]] = {}
    for result in records.load_confirmed(run_dir, damaged=[]):  # a damaged one: no evidence
        trial, epochs, seconds = by_id.get(result["trial_id"]), result.get("epochs"), 0.0
        if trial is not None and epochs:
            seconds = wall_seconds(result)
        if seconds > 0:
            expected = RetrainCosts(model).of(trial).seconds(epochs)
            ratios.setdefault(trial["trial_id"], []).append(seconds / expected)
    return RetrainCosts(model, ratios)


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
