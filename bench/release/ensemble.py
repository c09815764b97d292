"""`bench export RUN --ensemble K`: one Keras model that averages the class probabilities of K
members, shipped like a single model (bench.release.export.ship) into results/<run>/ensemble/.

Members come from models that exist (`bench confirm` keeps each retraining's model as served):
`seeds`, the confirmed seeds of the winning configuration, and `top`, the best confirmed seed
of each of the top K configurations, cost no training; `release` retrains the winner K times
with the release recipe, from K seeds, keeping each member as it finishes so that a stopped
export resumes where it stopped.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np

from bench.core import data, environment, records, stats, swap
from bench.core.config import (
    AS_TRAINED,
    ENSEMBLE_MEMBERS,
    RECIPE_EXTRAS,
    Recipe,
    recipe_signature,
)
from bench.errors import ExportError
from bench.release import choose, export
from bench.train import checkpoint, fitting, kt_compat, served, spaces

SOURCES = ("seeds", "top", "release", "top-release")
RETRAINED = ("release", "top-release")  # the sources whose members the export retrains
DEFAULT_SOURCE = "seeds"
ENSEMBLE_DIR = "ensemble"
RELEASE_DIR = "release-members"
MEMBER_FILE = "member.json"
MEMBER_POINT = "ensemble.member_swapping"  # faults point: a member's old folder out of the way
MIN_MEMBERS, MAX_MEMBERS = ENSEMBLE_MEMBERS
INPUT_NAME = "images"


@dataclass
class Member:
    """One model of an ensemble, as served, with where it came from."""

    model: keras.Model
    trial_id: str
    seed: int
    training: dict  # epochs, clean_epochs, clean_rate, images, seconds, retrained, commit


def average(members: list[keras.Model], name: str = "ensemble") -> keras.Model:
    """One functional model whose output is the mean of the members' outputs: each member's
    layers copied (weights too) under names prefixed member<i>_, so that the model holds no
    nested model and no two layers share a name."""
    inputs = keras.Input(data.IMAGE_SHAPE, name=INPUT_NAME)
    outputs = [_renamed_copy(m, f"member{i}_", inputs) for i, m in enumerate(members)]
    return keras.Model(inputs, keras.layers.Average(name="average")(outputs), name=name)


def _renamed_copy(model: keras.Model, prefix: str, inputs):
    def rename(layer):
        return layer.__class__.from_config({**layer.get_config(), "name": prefix + layer.name})

    # A model loaded from a file may keep its one input in a list: the same structure is given.
    given = [inputs] if isinstance(model.input, list) else inputs
    copy = keras.models.clone_model(model, input_tensors=given, clone_function=rename)
    copy.set_weights(model.get_weights())
    return copy.outputs[0]


def check_flags(k: int, source: str, retrain_all: bool, pick: str) -> None:
    """Refuse, before any work, an ensemble size or source that cannot be."""
    if not MIN_MEMBERS <= k <= MAX_MEMBERS:
        raise ExportError(f"--ensemble must be {MIN_MEMBERS} to {MAX_MEMBERS} members, not {k}")
    if source not in SOURCES:
        raise ExportError(f"--ensemble-from must be one of {', '.join(SOURCES)}, not {source!r}")
    if source in RETRAINED and not retrain_all:
        raise ExportError(f"--ensemble-from {source} needs --retrain: its members are retrained")
    if source == "top-release" and pick != choose.AUTO:
        raise ExportError(
            f"{choose.FLAGS[pick]} does not go with --ensemble-from top-release: its members "
            "are the top configurations by their confirmed validation accuracy"
        )
    if source not in RETRAINED and (retrain_all or pick != choose.AUTO):
        flag = "--retrain" if retrain_all else choose.FLAGS[pick]
        raise ExportError(
            f"{flag} goes with --ensemble-from release or top-release; {source} members are "
            "`bench confirm`'s models, chosen by their confirmed validation accuracy"
        )


def export_ensemble(
    run_dir: Path,
    k: int,
    source: str = DEFAULT_SOURCE,
    data_dir: str | None = None,
    recipe: Recipe = AS_TRAINED,
    pick: str = choose.AUTO,
    command: str | None = None,
    stream=None,
) -> Path:
    """Write run_dir/ensemble/ (as export.ship does) for K members from `source`. With
    source release, each member is trained by `recipe` (as `bench export --retrain` takes
    it), which must retrain."""
    kt_compat.install()
    stream = stream or sys.stdout
    check_flags(k, source, recipe.retrain, pick)
    recipe.validate()
    config = records.run_config(run_dir, ExportError)
    spaces.of_run(config)  # its file as the run searched it
    if source == "release":
        winner, selection = choose.winner(run_dir, pick)
        kept = []
    elif source == "top-release":
        winner, selection = choose.winner(run_dir, choose.CONFIRMED)
        kept = top_records(run_dir, k)
    else:
        winner, selection, kept = kept_choice(run_dir, k, source)
    raw = data.load_for_run(config, data_dir)
    data.check_same_data(raw, winner["dataset"]["sha256"], ExportError)
    splits = data.splits_for_run(raw, config)
    commit = environment.git_commit()
    if source == "release":
        members = release_members(run_dir, winner, config, raw, k, recipe, stream)
    elif source == "top-release":
        members = top_release_members(run_dir, kept, config, raw, recipe, stream)
    else:
        members = [_kept_member(run_dir, result) for result in kept]
    model = average([m.model for m in members])
    trained = _training(members, splits, commit)
    shipped = export.shipped_config(winner, config, trained, splits)
    shipped["selection"] = selection
    shipped["params"] = model.count_params()
    shipped["ensemble"] = describe(members, source, splits)
    shipped["reproduce"] = {"command": command or f"bench export {run_dir.name}", "commit": commit}
    return export.ship(run_dir / ENSEMBLE_DIR, model, model, shipped, splits)


def kept_choice(run_dir: Path, k: int, source: str) -> tuple[dict, str, list[dict]]:
    """The winning trial's record, how it was chosen, and the `bench confirm` records of the K
    members (seeds: the winner's first K seeds; top: the best seed of each of the top K)."""
    winner, selection = choose.winner(run_dir, choose.CONFIRMED)
    results = records.load_confirmed(run_dir)
    with_model = [r for r in results if _model_path(run_dir, r).is_file()]
    redo = f"`bench confirm {run_dir.name} --top {k} --seeds N` trains more"
    if source == "seeds":
        chosen = sorted(
            (r for r in with_model if r["trial_id"] == winner["trial_id"]), key=lambda r: r["seed"]
        )[:k]
        if len(chosen) < k:
            raise ExportError(
                f"trial {winner['trial_id']} has {len(chosen)} confirmed seed(s) with a kept "
                f"model, --ensemble {k} needs {k}: {redo} (older confirm records have none)"
            )
    else:
        chosen = []
        for trial_id in choose.confirmed_by_val_accuracy(results)[:k]:
            own = [r for r in with_model if r["trial_id"] == trial_id]
            if not own:
                raise ExportError(f"confirmed trial {trial_id} has no kept model: {redo}")
            chosen.append(max(own, key=lambda r: (r["val_accuracy"], -r["val_loss"])))
        if len(chosen) < k:
            raise ExportError(
                f"{len(chosen)} configuration(s) were confirmed, --ensemble {k} needs {k}: {redo}"
            )
    return winner, selection, chosen


def top_records(run_dir: Path, k: int) -> list[dict]:
    """The trial records of the top K configurations by mean confirmed validation accuracy;
    ExportError when fewer were confirmed."""
    ranked = choose.confirmed_by_val_accuracy(records.load_confirmed(run_dir))
    if len(ranked) < k:
        raise ExportError(
            f"{len(ranked)} configuration(s) were confirmed, --ensemble {k} needs {k}: "
            f"`bench confirm {run_dir.name} --top {k} --seeds N` confirms more"
        )
    by_id = {r["trial_id"]: r for r in records.load_records(run_dir)}
    return [by_id[trial_id] for trial_id in ranked[:k]]


def top_release_members(
    run_dir: Path, chosen: list[dict], config: dict, raw, recipe: Recipe, stream
) -> list[Member]:
    """Each chosen configuration retrained with the release recipe from one seed (the
    recipe's, else the run's), kept under release-members/trial<id>-seed<N>/ as it finishes,
    so that a stopped export trains only the members still missing; a member already kept
    with this recipe is taken as it is."""
    seed = config["seed"] if recipe.seed is None else recipe.seed
    recipe = replace(recipe, seed=seed)
    folder = run_dir / RELEASE_DIR
    members = {}
    for record in chosen:
        signature = recipe.signature(recipe.epochs or record["best_epoch"])
        home = folder / f"trial{record['trial_id']}"
        members[record["trial_id"]] = _stored(home, record, seed, signature)
    todo = [r for r in chosen if members[r["trial_id"]] is None]
    if todo:
        seconds = (
            _expected_seconds(r, (recipe.epochs or r["best_epoch"]) + recipe.clean_epochs, config)
            for r in todo
        )
        hours = sum(seconds) / 3600
        print(
            f"retraining {len(todo)} of {len(chosen)} configurations with the release recipe "
            f"from seed {seed}: about {hours:.1f} h on this machine; each member is kept under "
            f"{folder} as it finishes",
            file=stream,
            flush=True,
        )
    for record in todo:
        backup = checkpoint.backup_dir(run_dir, f"release-trial{record['trial_id']}-seed{seed}")
        model, trained = export.retrain(record, config, raw, recipe, backup)
        epochs = recipe.epochs or record["best_epoch"]
        trained.update(
            seed=seed,
            epochs=epochs,
            clean_epochs=recipe.clean_epochs,
            commit=environment.git_commit(),
        )
        home = folder / f"trial{record['trial_id']}"
        keep_member(home, record, model, trained)
        shutil.rmtree(backup, ignore_errors=True)
        signature = recipe.signature(epochs)
        members[record["trial_id"]] = _stored(home, record, seed, signature)
    return [members[r["trial_id"]] for r in chosen]


def _model_path(run_dir: Path, result: dict) -> Path:
    return records.confirm_dir(run_dir) / result.get("model", "(none)")


def _kept_member(run_dir: Path, result: dict) -> Member:
    model = keras.saving.load_model(_model_path(run_dir, result), compile=False)
    trained = {
        "epochs": result["epochs"],
        "clean_epochs": 0,
        "clean_rate": None,
        "seconds": result["train_seconds"],
        "retrained": False,
        "commit": result.get("git_commit"),
    }
    return Member(model, result["trial_id"], result["seed"], trained)


def release_members(
    run_dir: Path, record: dict, config: dict, raw, k: int, recipe: Recipe, stream
) -> list[Member]:
    """K members retrained with the release recipe from seeds seed, seed+1, ... (the run's
    seed unless one is given); members already trained with this recipe are kept."""
    base = config["seed"] if recipe.seed is None else recipe.seed
    epochs = recipe.epochs or record["best_epoch"]
    signature = recipe.signature(epochs)
    folder = run_dir / RELEASE_DIR
    seeds = list(range(base, base + k))
    adopted = adopt_release(run_dir, record, seeds, signature)
    if adopted is not None:
        print(f"member of seed {adopted}: the run's release in {export.BEST_DIR}/", file=stream)
    members = {s: _stored(folder, record, s, signature) for s in seeds}
    todo = [s for s, member in members.items() if member is None]
    if todo:
        hours = _expected_seconds(record, epochs + recipe.clean_epochs, config) * len(todo) / 3600
        print(
            f"retraining {len(todo)} of {k} members with the release recipe (seeds "
            f"{', '.join(map(str, todo))}): about {hours:.1f} h on this machine; each member "
            f"is kept under {folder} as it finishes",
            file=stream,
            flush=True,
        )
    for seed in todo:
        backup = export.release_backup(run_dir, seed)  # a killed member goes on from it
        member_recipe = replace(recipe, seed=seed)
        model, trained = export.retrain(record, config, raw, member_recipe, backup)
        trained.update(
            seed=seed,
            epochs=epochs,
            clean_epochs=recipe.clean_epochs,
            commit=environment.git_commit(),
        )
        keep_member(folder, record, model, trained)
        export.discard_release(run_dir, seed)
        members[seed] = _stored(folder, record, seed, signature)
    return list(members.values())


def keep_member(folder: Path, record: dict, model: keras.Model, trained: dict) -> None:
    """A release member as served, with its recipe, under folder/seed<N>/, which it replaces
    whole: a member of another recipe never stays beside this one's model."""
    out = folder / f"seed{trained['seed']}"
    member = {
        "trial_id": record["trial_id"],
        "seed": trained["seed"],
        "epochs": trained["epochs"],
        "clean_epochs": trained["clean_epochs"],
        **{name: trained[name] for name in RECIPE_EXTRAS if trained.get(name)},
        "clean_rate": trained["clean_rate"],
        "images": trained["images"],
        "seconds": round(trained["seconds"], 3),
        "retrained": True,
        "commit": trained["commit"],
    }
    with swap.replaced(out, MEMBER_POINT) as partial:
        plain = served.served_model(record["space"], model)
        served.save_served(plain, partial / records.MODEL_FILE)
        records.atomic_write_json(partial / MEMBER_FILE, member)


def adopt_release(run_dir: Path, record: dict, seeds: list[int], signature: dict):
    """The run's own release (best/, from `bench export --retrain`) as the member of its seed
    when it was trained with this recipe (its signature) and that member is missing; returns
    the seed taken, else None."""
    best = run_dir / export.BEST_DIR
    swap.tidy(best)
    path = best / "config.json"
    if not path.is_file() or not (best / records.MODEL_FILE).is_file():
        return None
    shipped = records.read_json(path, f"delete {best} or export again")
    train = shipped.get("training") or {}
    seed = train.get("seed")
    folder = run_dir / RELEASE_DIR
    if (
        not train.get("retrained_on_all_training_images")
        or shipped.get("trial_id") != record["trial_id"]
        or recipe_signature(train) != signature
        or seed not in seeds
        or (folder / f"seed{seed}" / MEMBER_FILE).is_file()
    ):
        return None
    model = keras.saving.load_model(best / records.MODEL_FILE, compile=False)
    trained = {
        **{name: train[name] for name in RECIPE_EXTRAS if train.get(name)},
        "seed": seed,
        "epochs": signature["epochs"],
        "clean_epochs": signature["clean_epochs"],
        "clean_rate": train.get("clean_learning_rate"),
        "images": train.get("train_images"),
        "seconds": train.get("train_seconds") or 0.0,
        "commit": shipped.get("exported_with_commit"),
    }
    keep_member(folder, record, model, trained)
    return seed


def _stored(folder: Path, record: dict, seed: int, signature: dict) -> Member | None:
    """The member of seed under folder when it was trained with this recipe, else None."""
    path = folder / f"seed{seed}" / MEMBER_FILE
    if not path.is_file() or not (path.parent / records.MODEL_FILE).is_file():
        return None
    member = records.read_json(
        path, f"delete {path.parent} to train it again", ("trial_id", "epochs", "clean_epochs")
    )
    if member["trial_id"] != record["trial_id"] or recipe_signature(member) != signature:
        return None
    model = keras.saving.load_model(path.parent / records.MODEL_FILE, compile=False)
    return Member(model, member["trial_id"], seed, member)


def _expected_seconds(record: dict, epochs: int, config: dict) -> float:
    """A trial's seconds per epoch, scaled to all training images and `epochs`."""
    images = config.get("train_limit") or data.TRAIN_COUNT - config["val_size"]
    per_epoch = (record.get("train_seconds") or 0.0) / max(record.get("epochs_run") or 1, 1)
    return per_epoch * epochs * data.TRAIN_COUNT / max(images, 1)


def _training(members: list[Member], splits: data.Splits, commit: str | None) -> dict:
    """export.shipped_config's `trained` for an ensemble: the members' recipe and seeds."""
    first = members[0].training
    return {
        "epochs": first["epochs"],
        "clean_epochs": first["clean_epochs"],
        "clean_rate": first["clean_rate"],
        **{name: first[name] for name in RECIPE_EXTRAS if first.get(name)},
        "seed": [m.seed for m in members],
        "retrained": bool(first["retrained"]),
        "images": first.get("images") or splits.sizes()["train"],
        "seconds": sum(m.training["seconds"] for m in members),
        "commit": commit,
    }


def describe(members: list[Member], source: str, splits: data.Splits) -> dict:
    """The members with their own test accuracy and loss, and McNemar's test of the ensemble
    against its best member by test accuracy (ties: lower loss): the strictest baseline,
    reported only; every member ships, none is chosen by the test set."""
    test_set = fitting.evaluation_set(splits.test_images, splits.y_test)
    labels = splits.y_test
    rows, all_probs = [], []
    for i, member in enumerate(members):
        probs, accuracy, loss = fitting.evaluate(member.model, test_set, labels)
        all_probs.append(probs)
        rows.append(
            {
                "label": f"member{i}",
                "trial_id": member.trial_id,
                "seed": member.seed,
                "epochs": member.training["epochs"],
                "test_accuracy": accuracy,
                "test_loss": loss,
            }
        )
    best = min(range(len(rows)), key=lambda i: (-rows[i]["test_accuracy"], rows[i]["test_loss"]))
    mean = np.mean(all_probs, axis=0)
    test = stats.mcnemar_pair(mean.argmax(1) == labels, all_probs[best].argmax(1) == labels)
    return {
        "source": source,
        "members": rows,
        "best_member": rows[best]["label"],
        "mcnemar": test,
    }
