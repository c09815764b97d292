"""What ships: the best trial by validation accuracy as model.keras, its serving formats
(bench.release.formats), config.json and model_card.md (bench.release.card)."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from bench.core import data, environment, metrics, records, space_source, stats, swap
from bench.core.config import AS_TRAINED, ELASTIC_SIGMA, RECIPE_EXTRAS, Recipe
from bench.errors import ExportError
from bench.release import card, choose, formats
from bench.train import averaging, checkpoint, distort, fitting, kt_compat, pipeline, served, spaces
from bench.train.epoch_lines import EpochLines

BEST_DIR = "best"
# The faults point at which the previous export is out of the way and the new one not yet in
# (swap.replace_folder), where `make soak` kills an export.
SWAP_POINT = "export.between_renames"
# Under resume/: the epoch backups of a release retrained from a seed, until it is shipped.
RELEASE_BACKUP = "release-seed{seed}"
FIT_STAGE, CLEAN_STAGE = "fit", "clean"  # a release's two fits, each backed up on its own
# A re-evaluated model may differ from its record by this many test images (a near-tie flipped
# by another summation order, as on a GPU); more means the checkpoint is not the recorded one.
FLIPPED_IMAGES_ALLOWED = 1


def load_trial_model(run_dir: Path, record: dict) -> keras.Model:
    """Rebuild a trial's model and load its best-epoch weights from KerasTuner's checkpoint."""
    project = run_dir / records.TUNER_PROJECT
    checkpoint = kt_compat.trial_checkpoint(project, record["trial_id"])
    if not checkpoint.is_file():
        raise ExportError(f"{checkpoint}: missing; the trial's weights are gone")
    model = fitting.build_model(record["space"], record["hyperparameters"])
    return fitting.load_checkpoint(model, checkpoint)


def retrain(
    record: dict, config: dict, raw: data.Raw, recipe: Recipe, backup: Path | None = None
) -> tuple[keras.Model, dict]:
    """Train the winning config afresh from recipe.seed on all 60,000 training images, for
    recipe.epochs or else the trial's best epoch count, then its clean epochs without
    augmentation, with the recipe's refinements: its hyperparameter overrides, a moving
    average of the weights (their batch-norm statistics recomputed on the digits as they
    are) and elastic distortion (never in the clean epochs).

    With `backup` (release_backup's folder), both fits save their state after every epoch as
    a trial does (checkpoint.EpochBackup): a retrain that was killed goes on from its last
    finished epoch, its clean epochs included, with the weights, optimizer and schedule where
    they were; one that had finished trains nothing again. A backup of another recipe is
    never taken up (release_key).

    Returns the model and its training: seconds (of every invocation that trained it), images,
    clean_rate (the learning rate of the clean epochs; None without them) and the recipe's
    refinements.
    """
    images, labels = data.full_training_set(raw)
    return train_with_recipe(record, config, images, labels, recipe, backup)


def train_with_recipe(
    record: dict, config: dict, images, labels, recipe: Recipe, backup: Path | None = None
) -> tuple[keras.Model, dict]:
    """retrain() on these training images (all 60,000 for a release; `python -m bench.perf
    releases --holdout N` keeps some out, to rank recipes by validation accuracy)."""
    record = with_overrides(record, recipe.overrides)
    epochs = recipe.epochs or record["best_epoch"]
    key = release_key(record, config, recipe, epochs)
    total = epochs + recipe.clean_epochs
    print(
        f"retraining trial {record['trial_id']} with seed {recipe.seed} on {len(labels):,} "
        f"images: {describe_recipe(recipe.signature(epochs))}{_going_on(backup, key, total)}",
        flush=True,
    )
    lines = EpochLines("  release", sys.stdout)
    saver = _stage_backup(backup, FIT_STAGE, key)
    distortion = distort.Elastic(recipe.elastic, ELASTIC_SIGMA) if recipe.elastic else None
    training = fitting.Training(
        images, labels, config["batch_size"], recipe.seed, epochs, recipe.ema, distortion
    )
    fitted = fitting.fit_afresh(record, training, callbacks=_backed_up(lines, saver))
    seconds = fitted.seconds if saver is None else saver.seconds
    clean_set = fitted.train if distortion is None else _plain_set(images, labels, training)
    rate = None
    if recipe.clean_epochs:
        began = time.monotonic()
        lines = EpochLines("  release without augmentation", sys.stdout)
        saver = _stage_backup(backup, CLEAN_STAGE, key)
        callbacks = _backed_up(lines, saver)
        rate = clean_fit(
            fitted.space, fitted.model, clean_set, recipe.clean_epochs, callbacks, recipe.ema
        )
        seconds += time.monotonic() - began if saver is None else saver.seconds
    if recipe.ema is not None:
        plain = served.served_model(record["space"], fitted.model)
        averaging.recompute_batch_norm(plain, clean_set)
    trained = {"seconds": seconds, "images": len(labels), "clean_rate": rate}
    return fitted.model, {**trained, **recipe.extras()}


def _plain_set(images, labels, training: fitting.Training):
    """The training digits as they are, in their own shuffled order: what the clean epochs
    and the batch-norm statistics take when the fit distorted them."""
    return pipeline.training_set(images, labels, training.batch_size, training.seed)


def with_overrides(record: dict, overrides) -> dict:
    """The record with the recipe's hyperparameter values in place of its own, each of the
    type of the value it replaces; ExportError for a name the trial does not have or a value
    of another kind."""
    if not overrides:
        return record
    values = dict(record["hyperparameters"])
    for name, text in overrides:
        if name not in values:
            have = ", ".join(sorted(values))
            raise ExportError(
                f"--set {name}: trial {record['trial_id']} has no such "
                f"hyperparameter (it has {have})"
            )
        values[name] = typed_value(name, text, values[name])
    return {**record, "hyperparameters": values}


def typed_value(name: str, text: str, like):
    """text as a value of like's type: a bool from true/false, numbers as numbers."""
    if isinstance(like, bool):
        if text.lower() not in ("true", "false"):
            raise ExportError(f"--set {name}={text}: {name} is true or false")
        return text.lower() == "true"
    if isinstance(like, int | float):
        try:
            return type(like)(float(text)) if isinstance(like, float) else int(text)
        except ValueError:
            kind = "a number" if isinstance(like, float) else "a whole number"
            raise ExportError(f"--set {name}={text}: {name} is {kind}") from None
    return text


def describe_recipe(signature: dict) -> str:
    """A recipe in words, for the progress line."""
    words = [f"{signature['epochs']} epochs"]
    if signature.get("clean_epochs"):
        words.append(f"then {signature['clean_epochs']} without augmentation")
    if signature.get("ema"):
        words.append(f"weights averaged (EMA momentum {signature['ema']:g})")
    if signature.get("elastic"):
        words.append(f"elastic distortion (alpha {signature['elastic']:g})")
    for name, value in (signature.get("overrides") or {}).items():
        words.append(f"{name}={value}")
    return ", ".join(words)


def release_backup(run_dir: Path, seed: int) -> Path:
    """The folder of the epoch backups of a release retrained from `seed` (one per seed, so
    that an ensemble's members keep theirs apart)."""
    return checkpoint.backup_dir(run_dir, RELEASE_BACKUP.format(seed=seed))


def discard_release(run_dir: Path, seed: int) -> None:
    """Remove a release's epoch backups once what it trained is shipped or kept."""
    shutil.rmtree(release_backup(run_dir, seed), ignore_errors=True)


def release_key(record: dict, config: dict, recipe: Recipe, epochs: int) -> dict:
    """What a release's backup must match to be taken up: the configuration (its overrides
    applied), its data and batch size, the seed and the recipe; anything else trains afresh
    over it. A recipe without refinements keys as before they existed."""
    return {
        "trial_id": record["trial_id"],
        "hyperparameters": record["hyperparameters"],
        "dataset_sha256": record["dataset"]["sha256"],
        "batch_size": config["batch_size"],
        "seed": recipe.seed,
        **recipe.signature(epochs),
    }


def epochs_done(backup: Path, key: dict) -> int:
    """The epochs of the release of `key` (its clean ones counted too) that the backup in
    `backup` holds: those a resume need not train again."""
    states = (saver.load_state() for saver in _stages(backup, key))
    return sum(state["epoch"] for state in states if state is not None)


def _stages(backup: Path, key: dict) -> list[checkpoint.EpochBackup]:
    return [_stage_backup(backup, stage, key) for stage in (FIT_STAGE, CLEAN_STAGE)]


def _stage_backup(backup: Path | None, stage: str, key: dict) -> checkpoint.EpochBackup | None:
    """The epoch backup of one fit of a release (None without a backup folder)."""
    if backup is None:
        return None
    return checkpoint.EpochBackup(backup / stage, {**key, "stage": stage})


def _backed_up(lines: EpochLines, saver: checkpoint.EpochBackup | None) -> list:
    # The backup goes last, after the callbacks whose state it saves (EpochBackup).
    return [lines] if saver is None else [lines, saver]


def _going_on(backup: Path | None, key: dict, total: int) -> str:
    done = epochs_done(backup, key) if backup is not None else 0
    return f"; going on after {done} of its {total} epochs (backup in {backup})" if done else ""


def clean_fit(
    space, model: keras.Model, train, epochs: int, callbacks=(), ema: float | None = None
) -> float:
    """Train `epochs` more epochs on the digits as they are (the space's augmentation left
    out, dropout kept) at the learning rate training ended with, under a fresh Adam (its
    weights averaged at momentum `ema` when given); returns that rate.

    Augmentation trains on turned, shifted and zoomed digits, and on batch statistics of
    those; test digits are none of these (docs/benchmarks.md: the release recipe with and
    without it).
    """
    rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    plain = space.without_augmentation(model)
    plain.compile(optimizer=averaging.ema_optimizer(rate, ema), loss=model.loss)
    plain.fit(train, epochs=epochs, shuffle=False, verbose=0, callbacks=list(callbacks))
    return rate


def save_model_atomic(model: keras.Model, path: Path) -> None:
    if getattr(model, "optimizer", None) is None:  # never compiled (an ensemble): as it is
        served.save_served(model, path)
        return
    # The weights with the optimizer's slots, so that no HDF5 write meets a full disk.
    records.ensure_room(path.parent, checkpoint.state_bytes(model))
    _compile_for_shipping(model)
    served.save_atomic(model, path)


def _compile_for_shipping(model: keras.Model) -> None:
    # A model whose optimizer never trained saves it without slots, and then every
    # load_model warns that they are missing; building them first keeps loading quiet.
    model.optimizer.build(model.trainable_variables)
    # A shipped model needs no training-only loss (label smoothing is a class of ours):
    # plain cross-entropy lets keras.saving.load_model open it without this package.
    model.compile(
        optimizer=model.optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )


def export_run(
    run_dir: Path,
    recipe: Recipe = AS_TRAINED,
    data_dir: str | None = None,
    pick: str = choose.AUTO,
    command: str | None = None,
) -> Path:
    """Write run_dir/best/ (see ship) for the best trial; `command` is how it was called, for
    the model card's way to reproduce it.

    The winner is chosen by validation accuracy only; the test set is reported, never used
    to choose. `pick` is choose.winner's: by default the trial with the best mean validation
    accuracy over its confirmation seeds where the run has them, else the best single trial.
    With recipe.retrain, the winner is retrained on the full 60k training images, for
    recipe.epochs when given (a longer schedule than the night's trials could afford). A
    retrain starts from the recipe's seed when given (to see how much a release owes to its
    seed), else from the run's seed, and ends with its clean epochs without augmentation (see
    clean_fit).
    """
    kt_compat.install()
    recipe.validate()
    config = records.run_config(run_dir, ExportError)
    swap.tidy(run_dir / BEST_DIR)  # what an export killed in its last step left
    spaces.of_run(config)  # its file as the run searched it
    record, selection = choose.winner(run_dir, pick)
    raw = data.load_for_run(config, data_dir)
    data.check_same_data(raw, record["dataset"]["sha256"], ExportError)
    splits = data.splits_for_run(raw, config)
    recipe = replace(recipe, seed=config["seed"] if recipe.seed is None else recipe.seed)
    # The code that trains: HEAD may move during a retrain of an hour or two.
    commit = environment.git_commit()
    model, trained = _final_model(run_dir, record, config, raw, recipe)
    trained.update(seed=recipe.seed, commit=commit)
    if not recipe.retrain:
        trained["images"] = splits.sizes()["train"]
    shipped = shipped_config(record, config, trained, splits)
    shipped["selection"] = selection
    shipped["reproduce"] = {"command": command or f"bench export {run_dir.name}", "commit": commit}
    shipped["finished_at"] = records.utc_now()
    plain = served.served_model(record["space"], model)
    checked = None if recipe.retrain else record
    out = ship(run_dir / BEST_DIR, model, plain, shipped, splits, checked)
    if recipe.retrain:
        discard_release(run_dir, recipe.seed)  # shipped: its epoch backups are spent
    return out


def ship(
    out: Path,
    model: keras.Model,
    plain: keras.Model,
    shipped: dict,
    splits: data.Splits,
    record: dict | None = None,
) -> Path:
    """Evaluate plain (the model less its augmentation) on the test set, then write into out
    model.keras, the serving formats (each evaluated again), config.json (shipped with the
    test figures and inference cost added) and model_card.md. Everything is written beside
    out first and replaces it whole (swap.replaced): a failure or a kill leaves the previous
    export as it was, and out is never missing where folders swap in one step (Linux, macOS);
    elsewhere the next command that reads it puts back the one set aside. With a record, the
    test accuracy must be the record's (the trial's own weights)."""
    test_set = fitting.evaluation_set(splits.test_images, splits.y_test)
    probs, accuracy, loss = fitting.evaluate(plain, test_set, splits.y_test)
    if record is not None:
        _check_matches_record(record, accuracy, len(splits.y_test))
    shipped.update(evaluation(probs, splits.y_test, shipped["dataset"].get("name")))
    with swap.replaced(out, SWAP_POINT) as staging:
        save_model_atomic(model, staging / records.MODEL_FILE)
        images = data.scale(splits.test_images)
        shipped["formats"] = formats.write_formats(plain, staging, images, splits.y_test, accuracy)
        shipped["inference"] = served.cost(plain)
        shipped["machine"] = environment.machine()
        records.atomic_write_json(staging / "config.json", shipped)
        records.atomic_write_text(staging / "model_card.md", card.model_card(shipped))
    return out


def evaluation(probs: np.ndarray, labels: np.ndarray, dataset: str | None) -> dict:
    """Test accuracy and loss with their 95% intervals, per-class accuracy and the most
    confused pairs, from the test probabilities."""
    accuracy, loss = metrics.test_metrics(probs, labels)
    predicted = np.asarray(probs).argmax(axis=1)
    matrix = metrics.confusion(labels, predicted)
    per_class = metrics.per_class(matrix, data.CLASS_NAMES.get(dataset or ""))
    pairs = metrics.confused_pairs(matrix)
    correct = int((predicted == labels).sum())
    return {
        "test_accuracy": accuracy,
        "test_loss": loss,
        "test_interval": list(stats.accuracy_interval(correct, len(labels))),
        "test_loss_interval": list(
            stats.mean_bootstrap_interval(metrics.per_image_loss(probs, labels))
        ),
        "per_class": _rows(per_class),
        "confused_pairs": _rows(pairs[["true", "predicted", "count"]]),
    }


def _rows(frame) -> list[dict]:
    """JSON-ready rows: numpy integers and floats as Python's."""
    rows = frame.to_dict("records")
    return [{k: v.item() if hasattr(v, "item") else v for k, v in row.items()} for row in rows]


def _final_model(
    run_dir: Path, record: dict, config: dict, raw: data.Raw, recipe: Recipe
) -> tuple[keras.Model, dict]:
    if recipe.retrain:
        clean = recipe.clean_epochs
        model, trained = retrain(record, config, raw, recipe, release_backup(run_dir, recipe.seed))
        epochs = recipe.epochs or record["best_epoch"]
        return model, {**trained, "retrained": True, "epochs": epochs, "clean_epochs": clean}
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


def shipped_config(record, config, trained: dict, splits: data.Splits) -> dict:
    """Hyperparameters, training settings, validation metrics and provenance of the exported
    model (ship adds the test figures)."""
    overrides = tuple((trained.get("overrides") or {}).items())
    return {
        "run": record["run"],
        "trial_id": record["trial_id"],
        "space": record["space"],
        space_source.SOURCE_KEY: space_source.recorded(config),
        "tuner": record["tuner"],
        # As the model was built: a recipe's overrides in place of the trial's values.
        "hyperparameters": with_overrides(record, overrides)["hyperparameters"],
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
            **{name: trained[name] for name in RECIPE_EXTRAS if trained.get(name)},
        },
        "selection": "highest validation accuracy (ties: lower validation loss)",
        "val_accuracy": record["val_accuracy"],
        "val_loss": record["val_loss"],
        "val_images": splits.sizes()["val"],
        "test_images": splits.sizes()["test"],
        "params": record["params"],
        "dataset": record["dataset"],
        "versions": record["versions"],
        "trained_with_commit": record["git_commit"],
        "exported_with_commit": trained["commit"],
    }
