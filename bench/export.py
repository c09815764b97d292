"""What ships: the best trial by validation accuracy as model.keras, config.json, model_card.md."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import keras

from bench import checkpoint, data, envinfo, kt_compat, records, training
from bench.epoch_lines import EpochLines
from bench.errors import ExportError

BEST_DIR = "best"
# A re-evaluated model may differ from its record by this many test images (a near-tie flipped
# by another summation order, as on a GPU); more means the checkpoint is not the recorded one.
FLIPPED_IMAGES_ALLOWED = 1


def load_trial_model(run_dir: Path, record: dict) -> keras.Model:
    """Rebuild a trial's model and load its best-epoch weights from KerasTuner's checkpoint."""
    project = run_dir / records.TUNER_PROJECT
    checkpoint = kt_compat.trial_checkpoint(project, record["trial_id"])
    if not checkpoint.is_file():
        raise ExportError(f"{checkpoint}: missing; the trial's weights are gone")
    model = training.build_model(record["space"], record["hyperparameters"])
    return training.load_checkpoint(model, checkpoint)


def retrain(
    record: dict,
    config: dict,
    raw: data.Raw,
    seed: int,
    epochs: int | None = None,
    clean_epochs: int = 0,
) -> tuple[keras.Model, dict]:
    """Train the winning config afresh from `seed` on all 60,000 training images, for `epochs`
    or else the trial's best epoch count, then `clean_epochs` more without augmentation.

    Returns the model and its training: seconds, images, and clean_rate (the learning rate of
    the clean epochs; None without them).
    """
    images, labels = data.full_training_set(raw)
    epochs = epochs or record["best_epoch"]
    clean = f", then {clean_epochs} without augmentation" if clean_epochs else ""
    print(
        f"retraining trial {record['trial_id']} with seed {seed} on {len(labels):,} images for "
        f"{epochs} epochs{clean}",
        flush=True,
    )
    lines = EpochLines("  release", sys.stdout)
    fitted = training.fit_afresh(
        record, images, labels, config["batch_size"], seed, epochs, callbacks=[lines]
    )
    seconds = fitted.seconds
    rate = None
    if clean_epochs:
        began = time.monotonic()
        lines = EpochLines("  release without augmentation", sys.stdout)
        rate = clean_fit(fitted.space, fitted.model, fitted.train, clean_epochs, [lines])
        seconds += time.monotonic() - began
    return fitted.model, {"seconds": seconds, "images": len(labels), "clean_rate": rate}


def clean_fit(space, model: keras.Model, train, epochs: int, callbacks=()) -> float:
    """Train `epochs` more epochs on the digits as they are (the space's augmentation left
    out, dropout kept) at the learning rate training ended with, under a fresh Adam; returns
    that rate.

    Augmentation trains on turned, shifted and zoomed digits, and on batch statistics of
    those; test digits are none of these (docs/benchmarks.md: the release recipe with and
    without it).
    """
    rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    plain = space.without_augmentation(model)
    plain.compile(optimizer=keras.optimizers.Adam(rate), loss=model.loss)
    plain.fit(train, epochs=epochs, shuffle=False, verbose=0, callbacks=list(callbacks))
    return rate


def save_model_atomic(model: keras.Model, path: Path) -> None:
    # The weights with the optimizer's slots, so that no HDF5 write meets a full disk.
    records.ensure_room(path.parent, checkpoint.state_bytes(model))
    # Keras insists on the .keras suffix, so the temporary file keeps it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".keras")
    os.close(fd)
    try:
        # A model whose optimizer never trained saves it without slots, and then every
        # load_model warns that they are missing; building them first keeps loading quiet.
        model.optimizer.build(model.trainable_variables)
        # A shipped model needs no training-only loss (label smoothing is a class of ours):
        # plain cross-entropy lets keras.saving.load_model open it without this package.
        model.compile(
            optimizer=model.optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_run(
    run_dir: Path,
    retrain_all: bool = False,
    data_dir: str | None = None,
    epochs: int | None = None,
    confirmed: bool = False,
    seed: int | None = None,
    clean_epochs: int = 0,
) -> Path:
    """Write run_dir/best/: model.keras, config.json and model_card.md for the best trial.

    The winner is chosen by validation accuracy only; the test set is reported, never used
    to choose. With retrain_all, the winner is retrained on the full 60k training images,
    for `epochs` when given (a longer schedule than the night's trials could afford). With
    confirmed, the winner is the trial with the best mean validation accuracy over its
    `bench confirm` seeds rather than the best single trial. A retrain starts from `seed`
    when given (to see how much a release owes to its seed), else from the run's seed, and
    ends with `clean_epochs` epochs without augmentation (see clean_fit).
    """
    kt_compat.install()
    check_flags(retrain_all, epochs, seed, clean_epochs)
    if not (run_dir / records.CONFIG_FILE).is_file():
        raise ExportError(f"{run_dir}: not a run (no {records.CONFIG_FILE})")
    config = records.load_config(run_dir)
    record, selection = choose(run_dir, confirmed)
    raw = data.load_for_run(config, data_dir)
    if raw.sha256 != record["dataset"]["sha256"]:
        raise ExportError("the data differs from the data the run was trained on (SHA256)")
    splits = data.splits_for_run(raw, config)
    seed = config["seed"] if seed is None else seed
    # The code that trains: HEAD may move during a retrain of an hour or two.
    commit = envinfo.git_commit()
    model, trained = _final_model(
        run_dir, record, config, raw, retrain_all, epochs, seed, clean_epochs
    )
    trained.update(seed=seed, commit=commit)
    test_set = training.evaluation_set(splits.test_images, splits.y_test)
    _, accuracy, loss = training.evaluate(model, test_set, splits.y_test)
    if not retrain_all:
        _check_matches_record(record, accuracy, len(splits.y_test))
        trained["images"] = splits.sizes()["train"]
    shipped = shipped_config(record, config, trained, (accuracy, loss), splits)
    if selection:
        shipped["selection"] = selection
    return write_best(run_dir / BEST_DIR, model, shipped)


def check_flags(retrain_all: bool, epochs: int | None, seed: int | None, clean: int) -> None:
    """Refuse, before any work, settings that only a retrain has or that no retrain can use."""
    if epochs is not None and not retrain_all:
        raise ExportError("--epochs needs --retrain: a trial's weights have their own epochs")
    if epochs is not None and epochs < 1:
        raise ExportError(f"--epochs must be at least 1, not {epochs}")
    if seed is not None and not retrain_all:
        raise ExportError("--seed needs --retrain: a trial's weights have the run's seed")
    if seed is not None and seed < 0:
        raise ExportError(f"--seed must be 0 or more, not {seed}")
    if clean and not retrain_all:
        raise ExportError("--clean-epochs needs --retrain: a trial's weights are as it left them")
    if clean < 0:
        raise ExportError(f"--clean-epochs must be 0 or more, not {clean}")


def choose(run_dir: Path, confirmed: bool) -> tuple[dict, str | None]:
    """The trial to ship, and how it was chosen when not by its own validation accuracy."""
    trials = records.load_records(run_dir)
    if not confirmed:
        record = records.best_by_validation(trials)
        if record is None:
            raise ExportError(f"{run_dir}: no finished trial to export")
        return record, None
    seed_results = records.load_confirmed(run_dir)
    record = confirmed_choice(run_dir, seed_results, trials)
    seeds = sum(r["trial_id"] == record["trial_id"] for r in seed_results)
    return record, (
        f"highest mean validation accuracy over {seeds} seeds of `bench confirm` "
        "(ties: lower mean validation loss)"
    )


def write_best(out: Path, model: keras.Model, shipped: dict) -> Path:
    """model.keras, config.json and model_card.md into out, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    save_model_atomic(model, out / "model.keras")
    records.atomic_write_json(out / "config.json", shipped)
    records.atomic_write_text(out / "model_card.md", model_card(shipped))
    return out


def confirmed_choice(run_dir: Path, results: list[dict], trials: list[dict]) -> dict:
    """The trial whose `bench confirm` results (of run_dir) have the best mean validation
    accuracy."""
    by_trial: dict[str, list[dict]] = {}
    for result in results:
        by_trial.setdefault(result["trial_id"], []).append(result)
    if not by_trial:
        raise ExportError(f"{run_dir}: no confirmed trial; run `bench confirm` first")

    def mean(trial_id: str, key: str) -> float:
        return sum(r[key] for r in by_trial[trial_id]) / len(by_trial[trial_id])

    best = max(by_trial, key=lambda t: (mean(t, "val_accuracy"), -mean(t, "val_loss")))
    return next(r for r in records.completed(trials) if r["trial_id"] == best)


def _final_model(
    run_dir, record, config, raw, retrain_all, epochs, seed, clean_epochs
) -> tuple[keras.Model, dict]:
    if retrain_all:
        model, trained = retrain(record, config, raw, seed, epochs, clean_epochs)
        epochs = epochs or record["best_epoch"]
        return model, {**trained, "retrained": True, "epochs": epochs, "clean_epochs": clean_epochs}
    model = load_trial_model(run_dir, record)
    trained = {"retrained": False, "seconds": record["train_seconds"], "images": None}
    return model, {**trained, "epochs": record["best_epoch"], "clean_epochs": 0, "clean_rate": None}


def _check_matches_record(record: dict, accuracy: float, test_images: int) -> None:
    allowed = FLIPPED_IMAGES_ALLOWED / test_images + 1e-12
    if abs(accuracy - record["test_accuracy"]) > allowed:
        raise ExportError(
            f"trial {record['trial_id']}: checkpoint gives test accuracy {accuracy:.4f}, "
            f"record says {record['test_accuracy']:.4f}"
        )


def shipped_config(record, config, trained: dict, test: tuple, splits: data.Splits) -> dict:
    """Hyperparameters, training settings, metrics and provenance of the exported model."""
    accuracy, loss = test
    return {
        "run": record["run"],
        "trial_id": record["trial_id"],
        "space": record["space"],
        "tuner": record["tuner"],
        "hyperparameters": record["hyperparameters"],
        "architecture": record.get("architecture"),
        "training": {
            "batch_size": config["batch_size"],
            "epochs": trained["epochs"],
            "trial_best_epoch": record["best_epoch"],
            "clean_epochs": trained["clean_epochs"],
            "clean_learning_rate": trained["clean_rate"],
            "seed": trained["seed"],
            "retrained_on_all_training_images": trained["retrained"],
            "train_images": trained["images"],
            "train_seconds": round(trained["seconds"], 3),
        },
        "selection": "highest validation accuracy (ties: lower validation loss)",
        "val_accuracy": record["val_accuracy"],
        "val_loss": record["val_loss"],
        "val_images": splits.sizes()["val"],
        "test_accuracy": accuracy,
        "test_loss": loss,
        "test_images": splits.sizes()["test"],
        "params": record["params"],
        "dataset": record["dataset"],
        "versions": record["versions"],
        "trained_with_commit": record["git_commit"],
        "exported_with_commit": trained["commit"],
    }


def _retrain_epochs(train: dict) -> str:
    # Shipped configs from before --epochs existed have no trial_best_epoch.
    best = train.get("trial_best_epoch", train["epochs"])
    if train["epochs"] == best:
        return f"the winning trial's best epoch count ({best})"
    return f"{train['epochs']} epochs (the winning trial's best epoch was {best} of its run)"


def _clean_epochs(train: dict) -> str:
    # Shipped configs from before --clean-epochs existed have no clean_epochs.
    clean = train.get("clean_epochs", 0)
    if not clean:
        return ""
    return (
        f" Then {clean} more epoch{'s' if clean > 1 else ''} on the digits as they are "
        f"(augmentation off), at learning rate {train['clean_learning_rate']:.3g}."
    )


def model_card(s: dict) -> str:
    """A short Markdown model card (from shipped_config's dict) for people choosing a model."""
    train = s["training"]
    hps = "\n".join(f"| {k} | {v} |" for k, v in sorted(s["hyperparameters"].items()))
    hps = hps or "| (none) | fixed architecture |"
    retrained = (
        f"Retrained from scratch on all {train['train_images']:,} training images (validation "
        f"images included), for {_retrain_epochs(train)}.{_clean_epochs(train)}"
        if train["retrained_on_all_training_images"]
        else f"Weights of the trial's best epoch ({train['epochs']}), trained on "
        f"{train['train_images']:,} images."
    )
    val_note = (
        " (measured before retraining, on images the retrained model has seen)"
        if train["retrained_on_all_training_images"]
        else ""
    )
    versions = ", ".join(f"{k} {v}" for k, v in s["versions"].items())
    dataset = s["dataset"].get("name", data.DEFAULT_DATASET)
    name = data.DATASETS.get(dataset, dataset)
    what, credit = data.DATASET_CREDITS.get(dataset, ("images", "see its source"))
    if s["dataset"].get("custom"):
        name, what, credit = "Custom data", f"in {name}'s file format", "not the published set"
    return f"""# Model card: {name} classifier ({s["space"]}, trial {s["trial_id"]})

Exported from run `{s["run"]}` (tuner `{s["tuner"]}`). Chosen by {s["selection"]};
the test set was never used to choose. Architecture: {s.get("architecture") or s["space"]}.

## Data
{name} {what} ({credit}), 28x28 grey images scaled to
[0, 1]. Validation: the last {s["val_images"]:,} of the 60,000 training images.
Test: {s["test_images"]:,} test images.
Dataset SHA256 (pixels and labels): `{s["dataset"]["sha256"]}`.

## Training
{retrained} Batch size {train["batch_size"]}, seed {train["seed"]}, {train["train_seconds"]:.1f} s.

## Metrics
| metric | value |
| --- | --- |
| validation accuracy{val_note} | {s["val_accuracy"]:.4f} |
| validation loss | {s["val_loss"]:.4f} |
| test accuracy | {s["test_accuracy"]:.4f} |
| test loss | {s["test_loss"]:.4f} |
| parameters | {s["params"]:,} |

## Hyperparameters
| name | value |
| --- | --- |
{hps}

## Provenance
Versions: {versions}.
Trained at commit `{s["trained_with_commit"]}`, exported at `{s["exported_with_commit"]}`.

## Use
`keras.saving.load_model("model.keras")`; input float32 (n, 28, 28, 1) in [0, 1]; output class
probabilities (n, 10). Not evaluated on images unlike {name}'s (other scanners, other styles).
"""
