"""The space's defaults released with the same recipe: what a night's winner must beat.

A night confirms its winner against the defaults at search fidelity (a few epochs on 50,000
images), but a release trains far longer on all 60,000, which lifts the defaults too: a margin
found at search fidelity may vanish once released. So a release is compared with a reference:
the run's defaults (its first configuration) trained with the same recipe (epochs, clean
epochs, batch size) from the same seeds on the same data, and evaluated on the same test
digits. The reference does not change from night to night, so it is trained once and kept
under results/reference-<space>-<key>/seed<N>/; releases of the defaults that other runs
under the same results folder shipped (best/, release-members/) count as well.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core import data, records, space_source, stats, swap
from bench.core.config import Recipe, recipe_signature
from bench.errors import ExportError

REFERENCE_PREFIX = "reference-"
KEY_FILE = "reference.json"
MEMBER_FILE = "member.json"  # as an ensemble's release member has it
PREDICTIONS_FILE = "predictions.npz"
REVISION_POINT = "reference.swapping"  # faults point: the release before its comparison, aside


@dataclass(frozen=True)
class Side:
    """One model's test results: which digits it got right, and its loss and accuracy."""

    seed: int
    correct: np.ndarray
    accuracy: float
    loss: float
    source: str  # where the model is, for the card


def recipe_key(config: dict, record: dict, training: dict) -> dict:
    """What makes two releases comparable: the space (its file's hash too), the data (its
    fingerprint), the batch size and the recipe the release's `training` (a shipped config's
    or a member's) was made with: its epochs and refinements (recipe_signature)."""
    return {
        "space": record["space"],
        "space_sha256": space_source.recorded(config).get("sha256"),
        "dataset_sha256": (record.get("dataset") or {}).get("sha256"),
        "batch_size": config["batch_size"],
        **recipe_signature(training),
    }


def folder(results: Path, key: dict) -> Path:
    """Where the reference of `key` is trained and kept."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return Path(results) / f"{REFERENCE_PREFIX}{key['space']}-{digest}"


def is_defaults(run_dir: Path, trial_id: str) -> bool:
    """Whether a run's trial has its defaults' hyperparameters (its first configuration)."""
    trials = records.load_records(run_dir)
    first = records.defaults_hyperparameters(trials)
    return any(t["trial_id"] == trial_id and t["hyperparameters"] == first for t in trials)


def defaults_record(run_dir: Path) -> dict | None:
    """The run's first finished trial with its defaults' hyperparameters, to retrain."""
    trials = records.load_records(run_dir)
    first = records.defaults_hyperparameters(trials)
    return next((t for t in records.completed(trials) if t["hyperparameters"] == first), None)


def candidates(results: Path, key: dict) -> dict[int, Path]:
    """Seed -> model file of every release of the defaults with this key under results: the
    reference folder's own, then other runs' best/ and release members (first found kept)."""
    found: dict[int, Path] = {}
    own = folder(results, key)
    for path in sorted(own.glob(f"seed*/{MEMBER_FILE}")):
        member = _read(path)
        if member is not None and (path.parent / records.MODEL_FILE).is_file():
            found.setdefault(int(member["seed"]), path.parent / records.MODEL_FILE)
    for run_dir in sorted(p for p in Path(results).iterdir() if p.is_dir() and p != own):
        if not (run_dir / records.CONFIG_FILE).is_file() or ".old-" in run_dir.name:
            continue
        for seed, model in _run_releases(run_dir, key):
            found.setdefault(seed, model)
    return found


def _run_releases(run_dir: Path, key: dict) -> list[tuple[int, Path]]:
    """(seed, model file) of a run's releases of its defaults made with `key`'s recipe."""
    try:
        config = records.load_config(run_dir)
    except (OSError, ValueError):
        return []
    out = []
    best = run_dir / "best" / "config.json"
    shipped = _read(best)
    if shipped and not shipped.get("ensemble"):
        train = shipped.get("training") or {}
        mine = {
            "space": shipped.get("space"),
            "space_sha256": (shipped.get(space_source.SOURCE_KEY) or {}).get("sha256"),
            "dataset_sha256": (shipped.get("dataset") or {}).get("sha256"),
            "batch_size": train.get("batch_size"),
            **recipe_signature(train),
        }
        if (
            train.get("retrained_on_all_training_images")
            and mine == key
            and is_defaults(run_dir, shipped.get("trial_id"))
        ):
            out.append((int(train["seed"]), best.parent / records.MODEL_FILE))
    for path in sorted((run_dir / "release-members").glob(f"seed*/{MEMBER_FILE}")):
        member = _read(path)
        if member is None:
            continue
        trial = next(
            (t for t in records.load_records(run_dir) if t["trial_id"] == member["trial_id"]), None
        )
        if trial is None or not is_defaults(run_dir, trial["trial_id"]):
            continue
        mine = recipe_key(config, trial, member)
        if mine == key:
            out.append((int(member["seed"]), path.parent / records.MODEL_FILE))
    return [(seed, model) for seed, model in out if model.is_file()]


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None  # a damaged release is no reference; it is not this command's to mend


def evaluate(model_path: Path, splits: data.Splits, seed: int) -> Side:
    """A kept model's results on the test digits."""
    import keras

    from bench.train import fitting

    model = keras.saving.load_model(model_path, compile=False)
    test_set = fitting.evaluation_set(splits.test_images, splits.y_test)
    probs, accuracy, loss = fitting.evaluate(model, test_set, splits.y_test)
    return side(seed, probs, splits.y_test, str(model_path))


def _readable(model_path: Path, splits: data.Splits, seed: int) -> Side | None:
    """evaluate(), or None for a kept model that no longer loads: it is left out of the
    comparison (its seed then counts as missing) rather than failing the release."""
    try:
        return evaluate(model_path, splits, seed)
    except (OSError, ValueError, KeyError):
        return None


def side(seed: int, probs: np.ndarray, labels: np.ndarray, source: str) -> Side:
    from bench.core import metrics

    accuracy, loss = metrics.test_metrics(probs, labels)
    return Side(seed, np.asarray(probs).argmax(axis=1) == labels, accuracy, loss, source)


def comparison(release: list[Side], reference: list[Side]) -> dict:
    """The release against the defaults' release, seed by seed: each side's mean test
    accuracy and loss with 95% t intervals, and McNemar's test on the test digits of the
    matched seeds pooled; JSON-ready, with a plain verdict."""
    by_seed = {s.seed: s for s in reference}
    matched = [(mine, by_seed[mine.seed]) for mine in release if mine.seed in by_seed]
    rows = [
        {
            "seed": mine.seed,
            "release_accuracy": mine.accuracy,
            "release_loss": mine.loss,
            "defaults_accuracy": theirs.accuracy,
            "defaults_loss": theirs.loss,
            "defaults_model": theirs.source,
        }
        for mine, theirs in matched
    ]
    result = {
        "seeds": [mine.seed for mine, _ in matched],
        "missing_seeds": [mine.seed for mine in release if mine.seed not in by_seed],
        "rows": rows,
    }
    if not matched:
        return {**result, "verdict": None}
    for name, pick in (("release", 0), ("defaults", 1)):
        for metric in ("accuracy", "loss"):
            values = [getattr(pair[pick], metric) for pair in matched]
            summary = stats.mean_interval(values)
            result[f"{name}_{metric}"] = {k: _json(summary[k]) for k in ("mean", "low", "high")}
    test = stats.mcnemar_pair(
        np.concatenate([mine.correct for mine, _ in matched]),
        np.concatenate([theirs.correct for _, theirs in matched]),
    )
    result["mcnemar"] = test
    result["verdict"] = verdict(test, len(matched))
    return result


def _json(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def verdict(test: dict, seeds: int) -> str:
    """One plain sentence: does the release beat the defaults released the same way?"""
    digits = (
        f"{test['a_only']} test digits only the release got right against {test['b_only']} "
        f"only the defaults did, over {seeds} seed(s), McNemar p = {test['p_value']:.2g}"
    )
    if test["p_value"] < stats.ALPHA and test["a_only"] > test["b_only"]:
        return f"The release beats the space's defaults released with the same recipe ({digits})."
    if test["p_value"] < stats.ALPHA:
        return (
            "The space's defaults released with the same recipe are better than this release "
            f"({digits}): the search's pick does not pay off at release fidelity."
        )
    return (
        "The release is not significantly better than the space's defaults released with the "
        f"same recipe ({digits}): at release fidelity the search's pick could be seed noise."
    )


MODES = ("find", "train", "none")  # `bench export --reference`


def against_defaults(run_dir: Path, out: Path, mode: str = "find", data_dir=None, stream=None):
    """Compare the release shipped in `out` (with the run's other release members of the same
    trial and recipe, one per seed) with the space's defaults released the same way, found
    under the run's results folder or, with mode "train", trained for the seeds that lack one
    and kept there. Writes the comparison into out/config.json ("against_defaults") and the
    model card; returns it (None when there is nothing to compare)."""
    from bench.release import card

    if mode == "none":
        return None
    shipped = records.read_json(out / "config.json", "export again")
    train = shipped.get("training") or {}
    ensemble = shipped.get("ensemble")
    if not train.get("retrained_on_all_training_images"):
        return None  # a trial's own weights: no recipe to match
    if ensemble and ensemble.get("source") != "release":
        return None  # averaged confirmation models: search fidelity, not a release
    config = records.run_config(run_dir, ExportError)
    record = next(t for t in records.load_records(run_dir) if t["trial_id"] == shipped["trial_id"])
    if is_defaults(run_dir, record["trial_id"]):
        result = {"verdict": "The release is of the space's defaults itself."}
    else:
        key = recipe_key(config, record, train)
        raw = data.load_for_run(config, data_dir)
        splits = data.splits_for_run(raw, config)
        mine = _release_sides(run_dir, out, record, train, splits)
        if mode == "train":
            train_missing(run_dir, config, raw, key, [s.seed for s in mine], stream)
        found = candidates(run_dir.parent, key)
        theirs = [_readable(found[s.seed], splits, s.seed) for s in mine if s.seed in found]
        theirs = [side for side in theirs if side is not None]
        result = comparison(mine, theirs)
        result["reference_folder"] = str(folder(run_dir.parent, key))
    shipped["against_defaults"] = result
    # Both files, or neither: the release's folder is replaced whole by its revision.
    with swap.replaced(out, REVISION_POINT, from_old=True) as revision:
        records.atomic_write_json(revision / "config.json", shipped)
        records.atomic_write_text(revision / "model_card.md", card.model_card(shipped))
    return result


def _release_sides(run_dir: Path, out: Path, record: dict, train: dict, splits) -> list[Side]:
    """The shipped release (for an ensemble, none: its members are) and the run's release
    members of the same trial and recipe at other seeds, evaluated on the test digits."""
    sides = {}
    if isinstance(train["seed"], int):
        sides[train["seed"]] = evaluate(out / records.MODEL_FILE, splits, train["seed"])
    for path in sorted((run_dir / "release-members").glob(f"seed*/{MEMBER_FILE}")):
        member = _read(path)
        if (
            member
            and member.get("trial_id") == record["trial_id"]
            and recipe_signature(member) == recipe_signature(train)
            and int(member["seed"]) not in sides
        ):
            seed = int(member["seed"])
            sides[seed] = evaluate(path.parent / records.MODEL_FILE, splits, seed)
    return [sides[seed] for seed in sorted(sides)]


def train_missing(run_dir: Path, config: dict, raw, key: dict, seeds: list[int], stream) -> None:
    """Train the run's defaults with the key's recipe from each seed that has no reference
    yet, keeping each under folder(results, key) as it finishes (a stop loses one at most)."""
    import sys

    from bench.core import environment
    from bench.release import ensemble, export

    stream = stream or sys.stdout
    found = candidates(run_dir.parent, key)
    todo = [seed for seed in seeds if seed not in found]
    record = defaults_record(run_dir)
    if not todo or record is None:
        return
    home = folder(run_dir.parent, key)
    home.mkdir(parents=True, exist_ok=True)
    records.atomic_write_json(home / KEY_FILE, key)
    print(
        f"training the space's defaults with the release recipe from seed(s) "
        f"{', '.join(map(str, todo))} for the comparison, kept under {home}",
        file=stream,
        flush=True,
    )
    for seed in todo:
        backup = home / f".seed{seed}.resume"  # a stopped training goes on from its last epoch
        recipe = Recipe.of_signature(recipe_signature(key), seed)
        model, trained = export.retrain(record, config, raw, recipe, backup)
        trained.update(
            seed=seed,
            epochs=key["epochs"],
            clean_epochs=key["clean_epochs"],
            commit=environment.git_commit(),
        )
        ensemble.keep_member(home, record, model, trained)
        shutil.rmtree(backup, ignore_errors=True)
