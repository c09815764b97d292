"""The release benchmark: rows that accumulate, and the comparison drawn from them alone."""

import json

import numpy as np
import pytest

from bench.core import records
from bench.perf import doc_tables, releases


def _row(
    variant: str,
    seed: int,
    wrong: list[int],
    images: int = 100,
    recipe: str | None = None,
    val_wrong: list[int] | None = None,
) -> dict:
    row = {
        "variant": variant,
        "seed": seed,
        "epochs": releases.EPOCHS,
        "clean_epochs": releases.CLEAN_EPOCHS,
        "batch_size": releases.BATCH_SIZE,
        "test_images": images,
        "test_accuracy": 1 - len(wrong) / images,
        "test_loss": 0.01 * len(wrong),
        "wrong": wrong,
        "wrong_predicted": [0] * len(wrong),
        "minutes": 90.0,
        "machine": {"cpu": "AMD EPYC", "flags": ["avx2"], "cores": 2},
        "measured_at": "2026-12-03T10:00:00+0000",
        "train_images": 60_000,
    }
    if recipe is not None:  # a recipe screen's row: validation digits held out
        row.update(recipe=recipe, holdout=releases.SCREEN_HOLDOUT, train_images=50_000)
        row["epochs"] = releases.RECIPES[recipe].epochs
        row.update(val_images=images, val_accuracy=1 - len(val_wrong) / images)
        row.update(val_loss=0.01 * len(val_wrong), val_wrong=val_wrong)
        row["val_wrong_predicted"] = [0] * len(val_wrong)
    return row


def _probs(labels, wrong: list[int]) -> np.ndarray:
    """Class probabilities right on every test digit but those in `wrong`."""
    probs = np.eye(10, dtype=np.float32)[labels]
    probs[wrong] = np.eye(10, dtype=np.float32)[(labels[wrong] + 1) % 10]
    return probs


def test_only_missing_releases_train_and_published_ones_count(tmp_path, monkeypatch):
    from bench.core import data

    labels, trained = data.load_raw().y_test, []

    def fake_release(name, seed, backup=None, recipe="release", holdout=0, keep=None):
        trained.append((name, seed))
        return _row(name, seed, [seed], len(labels)), {"test": _probs(labels, [seed])}

    monkeypatch.setattr(releases, "release_once", fake_release)
    published = {"rows": [_row("defaults", 0, [1, 2])]}
    records.atomic_write_json(
        tmp_path / releases.RELEASES_DIR / "night-asha-041-seed0.json",
        _row("night-asha-041", 0, [1]),
    )
    result = releases.release_benchmark(tmp_path, ["defaults", "night-asha-041"], [0, 1], published)
    assert trained == [("defaults", 1), ("night-asha-041", 1)]
    assert [(r["variant"], r["seed"]) for r in result["rows"]] == [
        ("defaults", 0),
        ("night-asha-041", 0),
        ("defaults", 1),
        ("night-asha-041", 1),
    ]
    # Only the rows trained here have their probabilities here: seed 1's two configurations,
    # both wrong on digit 1 alone, make the one ensemble.
    (ensemble,) = result["ensembles"]
    assert ensemble["name"] == "all variants, release: 2 members"
    assert ensemble["test_accuracy"] == pytest.approx(1 - 1 / len(labels))


def test_the_comparison_pools_the_matched_seeds_test_digits():
    rows = [
        _row("defaults", 0, [1, 2, 3]),
        _row("defaults", 1, [4, 5]),
        _row("night-asha-041", 0, [1]),  # right where the defaults missed 2 and 3
        _row("night-asha-041", 1, [4, 5, 6]),  # and wrong on 6 where they were right
        _row("night-asha-041", 2, []),  # no defaults at seed 2: left out of the test
    ]
    lines = {line["variant"]: line for line in releases.against_reference(rows)}
    winner = lines["night-asha-041"]
    assert winner["matched"] == [0, 1]
    assert (winner["mcnemar"]["a_only"], winner["mcnemar"]["b_only"]) == (2, 1)
    assert winner["accuracy"]["mean"] == pytest.approx((0.99 + 0.97 + 1.0) / 3)
    assert lines["defaults"]["mcnemar"] is None
    rendered = doc_tables.table("releases", {"rows": rows, "command": "c"})
    assert "| night-asha-041 | release | 60,000 | 0, 1, 2 |  |  | 0.9867 |" in rendered
    assert rendered.count("\n| 2026-12-03 |") == len(rows)


def test_a_recipe_is_judged_against_todays_recipe_on_the_same_held_out_digits():
    rows = [
        _row("defaults", 0, [1, 2], recipe="release", val_wrong=[1, 2, 3, 4]),
        _row("defaults", 0, [1], recipe="ema", val_wrong=[1]),
        _row("defaults", 1, [3], recipe="release", val_wrong=[5, 6]),
        _row("defaults", 1, [3, 4], recipe="ema", val_wrong=[5]),
        _row("defaults", 0, [9]),  # a release on all 60,000: not the screen's baseline
    ]
    lines = {(line["recipe"], line["holdout"]): line for line in releases.against_reference(rows)}
    ema = lines[("ema", releases.SCREEN_HOLDOUT)]
    assert ema["against"] == ("defaults", "release", releases.SCREEN_HOLDOUT)
    assert ema["matched"] == [0, 1]
    # Validation decides: 4 digits only the refinement got right, none only today's recipe.
    assert (ema["val_mcnemar"]["a_only"], ema["val_mcnemar"]["b_only"]) == (4, 0)
    assert (ema["mcnemar"]["a_only"], ema["mcnemar"]["b_only"]) == (1, 1)
    assert ema["val_accuracy"]["mean"] == pytest.approx((0.99 + 0.99) / 2)
    assert lines[("release", 0)]["val_mcnemar"] is None
    assert lines[("release", releases.SCREEN_HOLDOUT)]["against"] is None  # the defaults'


def test_rows_of_todays_recipe_keep_their_names_and_keys():
    old = _row("defaults", 0, [1])  # measured before recipes existed
    assert releases.key(old) == releases.key({**old, "recipe": "release", "holdout": 0})
    assert releases.row_name("defaults", "release", 0, 2) == "defaults-seed2"
    assert releases.row_name("defaults", "ema", 10_000, 2) == "defaults-ema-holdout10000-seed2"
    # Every recipe of the screen is a release recipe the export command line can repeat.
    for recipe in releases.RECIPES.values():
        assert recipe.validate().flags(with_seed=False)[0] == "--retrain"


def test_a_screen_row_trains_on_all_but_the_held_out_digits_and_scores_both(monkeypatch, tmp_path):
    import keras

    from bench.core import data
    from bench.core.config import Recipe

    monkeypatch.setitem(releases.VARIANTS, "small", {"space": "tiny", "hyperparameters": {}})
    refined = Recipe(True, 1, None, 1, ema=0.9, overrides=(("filters", "4"),))
    monkeypatch.setitem(releases.RECIPES, "refined", refined)
    splits = data.make_splits
    monkeypatch.setattr(data, "make_splits", lambda raw, held: splits(raw, held, 300))
    row, probs = releases.release_once("small", 0, None, "refined", 500, tmp_path / "m.keras")
    assert (row["train_images"], row["val_images"], row["test_images"]) == (300, 500, 10_000)
    assert probs["val"].shape == (500, 10) and probs["test"].shape == (10_000, 10)
    kept = keras.saving.load_model(tmp_path / "m.keras")  # as served: for later ensembles
    np.testing.assert_allclose(
        kept.predict(data.scale(data.load_raw().x_test[:5])), probs["test"][:5], atol=1e-5
    )
    labels = {"val": data.load_raw().y_train[-500:], "test": data.load_raw().y_test}
    for part, wrong in (("val", row["val_wrong"]), ("test", row["wrong"])):
        predicted = probs[part].argmax(1)
        assert wrong == np.flatnonzero(predicted != labels[part]).tolist()
        assert row[f"{part}_accuracy"] == pytest.approx(1 - len(wrong) / len(labels[part]))
    assert row["recipe_flags"] == ["--retrain", "--epochs", "1", "--clean-epochs", "1"] + [
        "--ema", "0.9", "--set", "filters=4",
    ]  # fmt: skip
    # The kept model, averaged over shifted copies, makes a row of its own without training.
    name = releases.row_name("small", "refined", 500, 0)
    folder = tmp_path / releases.RELEASES_DIR
    folder.mkdir()
    (tmp_path / "m.keras").rename(folder / f"{name}{releases.MODEL_SUFFIX}")
    records.atomic_write_json(folder / f"{name}.json", row)
    releases._tta_row(tmp_path, row, 5, None)
    shifted = json.loads((folder / "small-refined+tta5-holdout500-seed0.json").read_text())
    assert releases.baseline(releases.group(shifted)) == ("small", "refined", 500)
    assert shifted["val_accuracy"] == pytest.approx(1 - len(shifted["val_wrong"]) / 500)
    assert shifted["wrong"] != row["wrong"]  # other predictions, from the same weights


def test_seeds_of_one_recipe_make_an_ensemble_judged_against_the_member_validation_picks(
    tmp_path,
):
    from bench.core import data

    labels = data.load_raw().y_test
    wrongs = {0: ([0, 1, 2], [1]), 1: ([3], [1, 2, 3]), 2: ([0, 1, 4], [1, 2])}
    rows = []
    for seed, (wrong, val_wrong) in wrongs.items():
        row = _row("defaults", seed, wrong, len(labels), recipe="ema", val_wrong=val_wrong)
        probs = _probs(labels, wrong)
        name = releases.row_name("defaults", "ema", releases.SCREEN_HOLDOUT, seed)
        path = tmp_path / releases.RELEASES_DIR / f"{name}{releases.PROBS_SUFFIX}"
        records.atomic_write_bytes(path, releases.npz_bytes({"test": probs}))
        rows.append(row)
    rows.append(_row("defaults", 0, [5]))  # another group, with one seed: no ensemble
    # A seed measured on another machine: its probabilities are there, and the seeds at hand
    # make their ensemble without it.
    rows.append(_row("defaults", 3, [6], len(labels), recipe="ema", val_wrong=[]))
    (ensemble,) = releases.ensembles(tmp_path, rows, None)
    assert ensemble["name"] == "defaults, ema, 50,000 digits: 3 members"
    # Two members of three wrong on digits 0 and 1 only: the average is wrong there only.
    assert ensemble["test_accuracy"] == pytest.approx(1 - 2 / len(labels))
    # Seed 0 has the best validation accuracy, though seed 1 has the best test accuracy.
    assert ensemble["best_member"]["row"] == "defaults-ema-holdout10000-seed0"
    assert (ensemble["mcnemar"]["a_only"], ensemble["mcnemar"]["b_only"]) == (1, 0)
    rendered = doc_tables.ensemble_table({"ensembles": [ensemble]})
    assert "| defaults-ema-holdout10000-seed0 (val accuracy) | 0.9997 | 1 | 0 |" in rendered
