"""`python -m bench.perf releases`: configurations released with the release recipe, seed by
seed, and compared with the space's defaults released the same way.

A night confirms its winner against the defaults at search fidelity; this benchmark asks
whether the margin survives the release recipe (`make release`: 25 epochs on all 60,000
training images, then one without augmentation). Each (variant, seed) trains once into
results/perf/releases/<variant>-seed<N>.json with the test digits it got wrong, so that
McNemar's test can be run on the published figures alone; a rerun trains only what is
missing, here or in docs/benchmarks/release.json (a release takes an hour or more on 2 cores,
so the figures accumulate over several invocations and machines). The test set is reported,
never used to pick.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.core import data, environment, records, stats
from bench.core.config import Recipe

RESULT_FILE = "release.json"
RELEASES_DIR = "releases"
PROBS_SUFFIX = ".npz"  # beside each row: its class probabilities, for ensembles of rows
MODEL_SUFFIX = ".keras"  # and its model as served
# A row of kept models evaluated on shifted copies (bench.release.tta), under the recipe's
# name with this and the copies added: "release+tta5".
TTA_MARK = "+tta"
EPOCHS, CLEAN_EPOCHS, BATCH_SIZE = 25, 1, 128  # `make release`'s EXPORT_FLAGS
SEEDS = (0, 1, 2)
REFERENCE = "defaults"
BASE_RECIPE = "release"
# Training digits a recipe screen holds out (the last 10,000 of the 60,000) to rank recipes
# by validation accuracy: a release on all 60,000 has none left to rank by, and the test set
# never ranks.
SCREEN_HOLDOUT = 10_000
# The recipes measured, by name: today's `make release` and each refinement alone, decided
# before any was measured (docs/benchmarks.md: recipes beyond the release).
RECIPES = {
    BASE_RECIPE: Recipe(True, EPOCHS, None, CLEAN_EPOCHS),
    "ema": Recipe(True, EPOCHS, None, CLEAN_EPOCHS, ema=0.999),
    "strong-augmentation": Recipe(
        True,
        EPOCHS,
        None,
        CLEAN_EPOCHS,
        overrides=(("rotation_degrees", "15"), ("shift", "0.15"), ("zoom", "0.15")),
    ),
    "elastic": Recipe(True, EPOCHS, None, CLEAN_EPOCHS, elastic=34.0),
    "50-epochs": Recipe(True, 2 * EPOCHS, None, CLEAN_EPOCHS),
}

# The configurations measured: a name, the space, its hyperparameters (the space's defaults
# for any not given), and where they come from.
VARIANTS = {
    REFERENCE: {
        "space": "cnn_plus",
        "hyperparameters": {},
        "source": "the space's defaults, every night's first trial",
    },
    "night-asha-041": {
        "space": "cnn_plus",
        "hyperparameters": {
            "rotation_degrees": 0.0,
            "shift": 0.05,
            "zoom": 0.05,
            "conv_blocks": 3,
            "convs_per_block": 2,
            "filters": 40,
            "batch_norm": True,
            "conv_dropout": 0.0,
            "head": "gap",
            "dense_units": 128,
            "dense_dropout": 0.4,
            "optimizer": "adamw",
            "learning_rate": 0.005620697762389924,
            "schedule": "cosine",
            "label_smoothing": 0.05,
            "weight_decay": 0.005947688565213911,
        },
        "source": "trial 041 of the 2-hour asha night of 2026-12-01, its confirmed winner "
        "(docs/benchmarks.md, A budgeted night with asha)",
    },
}


def command(variants, seeds, recipes=(BASE_RECIPE,), holdout: int = 0) -> str:
    flags = f" --recipes {' '.join(recipes)}" if tuple(recipes) != (BASE_RECIPE,) else ""
    flags += f" --holdout {holdout}" if holdout else ""
    return (
        f"python -m bench.perf releases --variants {' '.join(variants)} "
        f"--seeds {' '.join(map(str, seeds))}{flags}"
    )


def key(row: dict) -> tuple:
    """What makes two rows the same measurement (rows from before recipes and held-out
    digits existed are today's recipe on all 60,000)."""
    return (
        row["variant"],
        row.get("recipe", BASE_RECIPE),
        row.get("holdout", 0),
        row["seed"],
        row["epochs"],
        row["clean_epochs"],
        row["batch_size"],
    )


def row_name(variant: str, recipe: str, holdout: int, seed: int) -> str:
    """A row's file name: as before recipes for today's recipe on all the digits."""
    parts = [variant] + ([] if recipe == BASE_RECIPE else [recipe])
    parts += [f"holdout{holdout}"] if holdout else []
    return "-".join([*parts, f"seed{seed}"])


def measured(out_dir: Path, published: dict | None) -> list[dict]:
    """Every row at hand: published in the doc's data, then measured under out_dir."""
    rows = {key(r): r for r in (published or {}).get("rows", [])}
    for path in sorted((out_dir / RELEASES_DIR).glob("*.json")):
        row = json.loads(path.read_text())
        rows.setdefault(key(row), row)
    return sorted(
        rows.values(),
        key=lambda r: (
            r.get("holdout", 0),
            r.get("recipe", BASE_RECIPE) != BASE_RECIPE,
            r["seed"],
            r["variant"] != REFERENCE,
            r["variant"],
            r.get("recipe", BASE_RECIPE),
        ),
    )


def release_benchmark(
    out_dir: Path,
    variants,
    seeds,
    published: dict | None,
    recipes=(BASE_RECIPE,),
    holdout: int = 0,
    tta=(),
) -> dict:
    """Train each missing (variant, recipe, seed), seeds outer so that pairs complete
    together, then evaluate every kept model on `tta`'s numbers of shifted copies where that
    row is missing; return every row at hand."""
    for seed in seeds:
        for name in variants:
            for recipe in recipes:
                wanted = {"variant": name, "recipe": recipe, "holdout": holdout, "seed": seed}
                wanted.update(
                    epochs=RECIPES[recipe].epochs,
                    clean_epochs=RECIPES[recipe].clean_epochs,
                    batch_size=BATCH_SIZE,
                )
                if key(wanted) in {key(r) for r in measured(out_dir, published)}:
                    continue
                path = out_dir / RELEASES_DIR / f"{row_name(name, recipe, holdout, seed)}.json"
                backup = path.with_name(f".{path.stem}.resume")  # a stop goes on from it
                keep = path.with_suffix(MODEL_SUFFIX)
                row, probs = release_once(name, seed, backup, recipe, holdout, keep)
                records.atomic_write_bytes(path.with_suffix(PROBS_SUFFIX), npz_bytes(probs))
                records.atomic_write_json(path, row)
                shutil.rmtree(backup, ignore_errors=True)
                print(f"{path.stem}: test {row['test_accuracy']:.4f}", flush=True)
    for copies in tta:
        for row in [r for r in measured(out_dir, published) if r.get("members", 1) == 1]:
            _tta_row(out_dir, row, copies, published)
    rows = measured(out_dir, published)
    return {
        "rows": rows,
        "ensembles": ensembles(out_dir, rows, published),
        "command": command(variants, seeds, recipes, holdout),
    }


def _tta_row(out_dir: Path, row: dict, copies: int, published: dict | None) -> None:
    """The row of `row`'s kept model averaged over shifted copies, written beside it unless
    it exists (here or published) or the model is not here."""
    import keras

    from bench.release import tta

    variant, recipe, holdout = group(row)
    if TTA_MARK in recipe:
        return
    wanted = {**row, "recipe": f"{recipe}{TTA_MARK}{copies}"}
    kept = (
        out_dir / RELEASES_DIR / f"{row_name(variant, recipe, holdout, row['seed'])}{MODEL_SUFFIX}"
    )
    if key(wanted) in {key(r) for r in measured(out_dir, published)} or not kept.is_file():
        return
    began = time.monotonic()
    model = tta.shifted_average(keras.saving.load_model(kept), copies)
    raw = data.load_raw()
    scored = {k: v for k, v in row.items() if not k.startswith(("test_", "val_", "wrong"))}
    scored.update(recipe=wanted["recipe"], tta_copies=copies, measured_at=_now())
    probs = {"test": _scored(scored, "test", model, data.with_channel(raw.x_test), raw.y_test)}
    if holdout:
        splits = data.make_splits(raw, holdout)
        probs["val"] = _scored(scored, "val", model, splits.val_images, splits.y_val)
    scored.update(minutes=round((time.monotonic() - began) / 60, 1), machine=environment.machine())
    path = out_dir / RELEASES_DIR / f"{row_name(*group(scored), row['seed'])}.json"
    records.atomic_write_bytes(path.with_suffix(PROBS_SUFFIX), npz_bytes(probs))
    records.atomic_write_json(path, scored)
    print(f"{path.stem}: test {scored['test_accuracy']:.4f}", flush=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def npz_bytes(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def variant_record(name: str, sha256: str) -> dict:
    """The record a variant releases from: its hyperparameters in full (the space's defaults
    for any not given), so that a recipe may override any of them."""
    from bench.train import fitting

    variant = VARIANTS[name]
    values = {**fitting.default_values(variant["space"]), **variant["hyperparameters"]}
    return {
        "trial_id": name,
        "space": variant["space"],
        "hyperparameters": values,
        "best_epoch": EPOCHS,
        "dataset": {"sha256": sha256},
    }


def release_once(
    name: str,
    seed: int,
    backup: Path | None = None,
    recipe_name: str = BASE_RECIPE,
    holdout: int = 0,
    keep: Path | None = None,
) -> tuple[dict, dict]:
    """One release of a variant from seed by a recipe, as `bench export --retrain` trains it
    (its epochs backed up into `backup`), on all 60,000 training digits or all but the last
    `holdout`, evaluated on those and on the 10,000 test digits. Returns the row and its
    class probabilities (test, and validation with a holdout); the model as served is kept
    in `keep` when given."""
    from bench.release import export
    from bench.train import kt_compat, served

    kt_compat.install()
    raw = data.load_raw()
    record = variant_record(name, raw.sha256)
    recipe = replace(RECIPES[recipe_name], seed=seed)
    splits = data.make_splits(raw, holdout) if holdout else None
    images, labels = (
        data.full_training_set(raw) if splits is None else (splits.train_images, splits.y_train)
    )
    config = {"batch_size": BATCH_SIZE}
    model, trained = export.train_with_recipe(record, config, images, labels, recipe, backup)
    plain = served.served_model(record["space"], model)
    if keep is not None:
        served.save_served(plain, keep)
    row = {
        "variant": name,
        "recipe": recipe_name,
        "holdout": holdout,
        "members": 1,
        "space": record["space"],
        "hyperparameters": VARIANTS[name]["hyperparameters"],
        "recipe_flags": recipe.flags(with_seed=False),
        "seed": seed,
        "epochs": recipe.epochs,
        "clean_epochs": recipe.clean_epochs,
        "batch_size": BATCH_SIZE,
        "train_images": trained["images"],
    }
    probs = {"test": _scored(row, "test", plain, data.with_channel(raw.x_test), raw.y_test)}
    if splits is not None:
        probs["val"] = _scored(row, "val", plain, splits.val_images, splits.y_val)
    row.update(
        dataset_sha256=raw.sha256,
        # Training time over every invocation that trained it (a resumed release's too).
        minutes=round(trained["seconds"] / 60, 1),
        machine=environment.machine(),
        git_commit=environment.git_commit(),
        measured_at=_now(),
    )
    return row, probs


def _scored(row: dict, part: str, model, images, labels) -> np.ndarray:
    """The model's probabilities on one part, its figures put into row: accuracy, loss and
    the digits it got wrong (test_wrong is `wrong`, as rows before held-out digits have it)."""
    from bench.train import fitting

    probs, accuracy, loss = fitting.evaluate(model, fitting.evaluation_set(images, labels), labels)
    predicted = np.asarray(probs).argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    prefix = "" if part == "test" else f"{part}_"
    row.update(
        {
            f"{part}_images": len(labels),
            f"{part}_accuracy": accuracy,
            f"{part}_loss": loss,
            f"{prefix}wrong": wrong.tolist(),  # digit indices it got wrong
            f"{prefix}wrong_predicted": predicted[wrong].tolist(),
        }
    )
    return np.asarray(probs, dtype=np.float32)


def correct(row: dict, part: str = "test") -> np.ndarray:
    """Which digits of a part (test, val) the row's model got right."""
    right = np.ones(row[f"{part}_images"], dtype=bool)
    right[row["wrong" if part == "test" else f"{part}_wrong"]] = False
    return right


def group(row: dict) -> tuple[str, str, int]:
    return (row["variant"], row.get("recipe", BASE_RECIPE), row.get("holdout", 0))


def baseline(name: tuple[str, str, int]) -> tuple[str, str, int] | None:
    """What a group is measured against: shifted copies against the same models without
    them; a recipe against today's recipe for the same configuration and digits; today's
    recipe of a configuration against the defaults."""
    variant, recipe, holdout = name
    if TTA_MARK in recipe:
        return (variant, recipe.split(TTA_MARK)[0], holdout)
    if recipe != BASE_RECIPE:
        return (variant, BASE_RECIPE, holdout)
    return None if variant == REFERENCE else (REFERENCE, BASE_RECIPE, holdout)


def against_reference(rows: list[dict]) -> list[dict]:
    """Per (variant, recipe, held-out digits): its seeds, mean test (and validation) accuracy
    with 95% t intervals, and McNemar's test against its baseline on the digits of the seeds
    both have, pooled (on the validation digits too where they were held out: they decide)."""
    groups: dict[tuple, dict[int, dict]] = {}
    for row in rows:
        groups.setdefault(group(row), {})[row["seed"]] = row
    summary = []
    for name, seeds in groups.items():
        variant, recipe, holdout = name
        line = {"variant": variant, "recipe": recipe, "holdout": holdout, "seeds": sorted(seeds)}
        line["against"], line["mcnemar"], line["val_mcnemar"] = baseline(name), None, None
        parts = ("test", "val") if holdout else ("test",)
        for part in parts:
            values = [r[f"{part}_accuracy"] for r in seeds.values()]
            line["accuracy" if part == "test" else "val_accuracy"] = stats.mean_interval(values)
        theirs = groups.get(line["against"], {})
        if matched := sorted(set(seeds) & set(theirs)):
            line["matched"] = matched
            for part in parts:
                line["mcnemar" if part == "test" else "val_mcnemar"] = stats.mcnemar_pair(
                    np.concatenate([correct(seeds[s], part) for s in matched]),
                    np.concatenate([correct(theirs[s], part) for s in matched]),
                )
        summary.append(line)
    return summary


def _probs(out_dir: Path, row: dict) -> dict | None:
    name = row_name(
        row["variant"], row.get("recipe", BASE_RECIPE), row.get("holdout", 0), row["seed"]
    )
    path = out_dir / RELEASES_DIR / f"{name}{PROBS_SUFFIX}"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as stored:
        return {part: stored[part] for part in stored.files}


def ensemble_plans(rows: list[dict]) -> dict[str, list[dict]]:
    """The ensembles the rows make, by name: every (variant, recipe, digits) group's seeds
    averaged, and for each recipe and digits, every variant's seeds together (different
    configurations, each released the same way)."""
    plans: dict[str, list[dict]] = {}
    singles = [r for r in rows if r.get("members", 1) == 1]
    for name in dict.fromkeys(group(r) for r in singles):
        members = [r for r in singles if group(r) == name]
        if len(members) > 1:
            plans[_ensemble_name(name[0], name[1], name[2], len(members))] = members
    for recipe, holdout in dict.fromkeys((g[1], g[2]) for g in map(group, singles)):
        members = [r for r in singles if group(r)[1:] == (recipe, holdout)]
        if len({r["variant"] for r in members}) > 1:
            plans[_ensemble_name("all variants", recipe, holdout, len(members))] = members
    return plans


def _ensemble_name(variant: str, recipe: str, holdout: int, members: int) -> str:
    held = f", {data.TRAIN_COUNT - holdout:,} digits" if holdout else ""
    return f"{variant}, {recipe}{held}: {members} members"


def ensembles(out_dir: Path, rows: list[dict], published: dict | None) -> list[dict]:
    """The ensembles the rows whose probabilities are at hand under out_dir make (rows
    measured on another machine have theirs there): each one's test (and validation) accuracy
    and loss, and McNemar's test against its best member, the best by validation accuracy
    where digits were held out (the test set never picks), else by test accuracy; published
    ones are kept where their members are elsewhere."""
    found = {e["name"]: e for e in (published or {}).get("ensembles", [])}
    probs = {id(r): _probs(out_dir, r) for r in rows}
    at_hand = [r for r in rows if probs[id(r)] is not None]
    for name, members in ensemble_plans(at_hand).items():
        found[name] = _ensemble(name, members, [probs[id(r)] for r in members])
    return sorted(found.values(), key=lambda e: e["name"])


def _ensemble(name: str, members: list[dict], probs: list[dict]) -> dict:
    from bench.core import metrics

    labels = data.load_raw().y_test
    mean = np.mean([p["test"] for p in probs], axis=0)
    accuracy, loss = metrics.test_metrics(mean, labels)
    by = "val_accuracy" if all("val_accuracy" in r for r in members) else "test_accuracy"
    best = max(range(len(members)), key=lambda i: members[i][by])
    test = stats.mcnemar_pair(mean.argmax(1) == labels, correct(members[best]))
    names = [row_name(*group(r), r["seed"]) for r in members]
    return {
        "name": name,
        "members": names,
        "test_accuracy": accuracy,
        "test_loss": loss,
        "best_member": {
            "row": names[best],
            "by": by,
            "test_accuracy": members[best]["test_accuracy"],
        },
        "mcnemar": test,
    }
