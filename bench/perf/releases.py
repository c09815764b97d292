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

import json
import shutil
import time
from pathlib import Path

import numpy as np

from bench.core import data, environment, records, stats

RESULT_FILE = "release.json"
RELEASES_DIR = "releases"
EPOCHS, CLEAN_EPOCHS, BATCH_SIZE = 25, 1, 128  # `make release`'s EXPORT_FLAGS
SEEDS = (0, 1, 2)
REFERENCE = "defaults"
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


def command(variants, seeds) -> str:
    return (
        f"python -m bench.perf releases --variants {' '.join(variants)} "
        f"--seeds {' '.join(map(str, seeds))}"
    )


def key(row: dict) -> tuple:
    """What makes two rows the same measurement."""
    return (row["variant"], row["seed"], row["epochs"], row["clean_epochs"], row["batch_size"])


def measured(out_dir: Path, published: dict | None) -> list[dict]:
    """Every row at hand: published in the doc's data, then measured under out_dir."""
    rows = {key(r): r for r in (published or {}).get("rows", [])}
    for path in sorted((out_dir / RELEASES_DIR).glob("*.json")):
        row = json.loads(path.read_text())
        rows.setdefault(key(row), row)
    return sorted(rows.values(), key=lambda r: (r["seed"], r["variant"] != REFERENCE, r["variant"]))


def release_benchmark(out_dir: Path, variants, seeds, published: dict | None) -> dict:
    """Train each missing (variant, seed), seeds outer so that pairs complete together; return
    every row at hand."""
    for seed in seeds:
        for name in variants:
            wanted = {"variant": name, "seed": seed, "epochs": EPOCHS}
            wanted.update(clean_epochs=CLEAN_EPOCHS, batch_size=BATCH_SIZE)
            if key(wanted) in {key(r) for r in measured(out_dir, published)}:
                continue
            path = out_dir / RELEASES_DIR / f"{name}-seed{seed}.json"
            backup = path.with_name(f".{path.stem}.resume")  # a stopped release goes on from it
            row = release_once(name, seed, backup)
            records.atomic_write_json(path, row)
            shutil.rmtree(backup, ignore_errors=True)
            print(f"{name} seed {seed}: test {row['test_accuracy']:.4f}", flush=True)
    return {"rows": measured(out_dir, published), "command": command(variants, seeds)}


def release_once(name: str, seed: int, backup: Path | None = None) -> dict:
    """One release of a variant from seed, as `bench export --retrain --epochs 25
    --clean-epochs 1` trains it (its epochs backed up into `backup`), evaluated on the 10,000
    test digits."""
    from bench.release import export
    from bench.train import fitting, kt_compat, served

    kt_compat.install()
    variant = VARIANTS[name]
    raw = data.load_raw()
    record = {
        "trial_id": name,
        "space": variant["space"],
        "hyperparameters": variant["hyperparameters"],
        "best_epoch": EPOCHS,
        "dataset": {"sha256": raw.sha256},
    }
    began = time.monotonic()
    model, trained = export.retrain(
        record, {"batch_size": BATCH_SIZE}, raw, seed, EPOCHS, CLEAN_EPOCHS, backup
    )
    plain = served.served_model(variant["space"], model)
    images = data.with_channel(raw.x_test)
    probs, accuracy, loss = fitting.evaluate(
        plain, fitting.evaluation_set(images, raw.y_test), raw.y_test
    )
    predicted = np.asarray(probs).argmax(axis=1)
    wrong = np.flatnonzero(predicted != raw.y_test)
    return {
        "variant": name,
        "space": variant["space"],
        "hyperparameters": variant["hyperparameters"],
        "seed": seed,
        "epochs": EPOCHS,
        "clean_epochs": CLEAN_EPOCHS,
        "batch_size": BATCH_SIZE,
        "train_images": trained["images"],
        "test_images": len(raw.y_test),
        "test_accuracy": accuracy,
        "test_loss": loss,
        "wrong": wrong.tolist(),  # test digit indices it got wrong
        "wrong_predicted": predicted[wrong].tolist(),
        "dataset_sha256": raw.sha256,
        "minutes": round((time.monotonic() - began) / 60, 1),
        "machine": environment.machine(),
        "git_commit": environment.git_commit(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def correct(row: dict) -> np.ndarray:
    right = np.ones(row["test_images"], dtype=bool)
    right[row["wrong"]] = False
    return right


def against_reference(rows: list[dict]) -> list[dict]:
    """Per variant: its seeds, mean test accuracy with its 95% t interval, and McNemar's test
    against the defaults on the test digits of the seeds both have, pooled."""
    by_variant: dict[str, dict[int, dict]] = {}
    for row in rows:
        by_variant.setdefault(row["variant"], {})[row["seed"]] = row
    reference = by_variant.get(REFERENCE, {})
    summary = []
    for name, seeds in by_variant.items():
        accuracy = stats.mean_interval([r["test_accuracy"] for r in seeds.values()])
        line = {"variant": name, "seeds": sorted(seeds), "accuracy": accuracy, "mcnemar": None}
        matched = sorted(set(seeds) & set(reference))
        if name != REFERENCE and matched:
            line["matched"] = matched
            line["mcnemar"] = stats.mcnemar_pair(
                np.concatenate([correct(seeds[s]) for s in matched]),
                np.concatenate([correct(reference[s]) for s in matched]),
            )
        summary.append(line)
    return summary
