"""A release beside the space's defaults released with the same recipe and seed."""

import io
import json

import numpy as np
import pytest

from bench import api
from bench.core import data, records
from bench.core.config import SearchConfig
from bench.release import export, reference
from bench.report import writer
from bench.search import tuning

TINY = dict(train_limit=256, val_size=128, test_limit=128, max_epochs=1, batch_size=64)
RETRAIN_IMAGES = 300


@pytest.fixture
def run_dir(tmp_path, few_retrain_images):
    """A run of two trials whose winner is not the defaults (its first trial)."""
    config = SearchConfig(
        run="x", space="tiny", tuner="random", max_trials=2, results=str(tmp_path), **TINY
    ).validate()
    assert tuning.run_search(config, stream=io.StringIO()) is True
    trials = records.load_records(config.run_dir)
    other = trials[1]
    if records.best_by_validation(trials) is not other:  # the draw lost: make it the winner
        path = config.run_dir / records.TRIALS_DIR / f"{other['trial_id']}.json"
        records.atomic_write_json(path, {**other, "val_accuracy": 1.0})
    return config.run_dir


def test_a_release_is_compared_with_the_defaults_released_the_same_way(run_dir, monkeypatch):
    trained = []
    retrain = export.retrain

    def counted(record, *args, **kwargs):
        trained.append(record["trial_id"])
        return retrain(record, *args, **kwargs)

    monkeypatch.setattr(export, "retrain", counted)
    out = api.export("x", retrain=True, epochs=2, results=run_dir.parent)
    shipped = json.loads((out / "config.json").read_text())
    winner, first = shipped["trial_id"], records.load_records(run_dir)[0]["trial_id"]
    assert winner != first and trained == [winner]
    # No release of the defaults with this recipe yet: the card says how to get one.
    assert shipped["against_defaults"]["rows"] == []
    assert shipped["against_defaults"]["missing_seeds"] == [shipped["training"]["seed"]]
    assert "--reference train" in (out / "model_card.md").read_text()
    reference.against_defaults(run_dir, out, "train")
    assert trained == [winner, first]  # the release, then the defaults
    shipped = json.loads((out / "config.json").read_text())
    result = shipped["against_defaults"]
    row = result["rows"][0]
    assert result["seeds"] == [shipped["training"]["seed"]] and len(result["rows"]) == 1
    assert row["release_accuracy"] == pytest.approx(shipped["test_accuracy"])
    # The defaults' figures are their kept model's on the same test digits.
    (home,) = run_dir.parent.glob(f"{reference.REFERENCE_PREFIX}*")
    config = records.load_config(run_dir)
    splits = data.splits_for_run(data.load_for_run(config), config)
    side = reference.evaluate(home / "seed0" / records.MODEL_FILE, splits, 0)
    assert row["defaults_accuracy"] == pytest.approx(side.accuracy)
    test = result["mcnemar"]
    errors = [
        round((1 - row[f"{who}_accuracy"]) * TINY["test_limit"]) for who in ("release", "defaults")
    ]
    assert test["a_only"] - test["b_only"] == errors[1] - errors[0]
    card = (out / "model_card.md").read_text()
    assert "## Against the space's defaults at release fidelity" in card
    assert result["verdict"] in card
    # The report says what shipped, links its card and gives the comparison.
    writer.write_report([run_dir], run_dir / "report")
    text = (run_dir / "report" / writer.REPORT_MD).read_text()
    shown = text.split("## Released")[1].split("\n## ")[0]
    assert f"Shipped: trial {winner} of run x" in shown and "(<../best/model_card.md>)" in shown
    assert result["verdict"] in shown
    # A later release finds the kept reference and trains no defaults again.
    trained.clear()
    again = reference.against_defaults(run_dir, out, "find")
    assert trained == [] and again["rows"] == result["rows"]


def test_the_pooled_comparison_counts_the_digits_of_matched_seeds_only():
    labels = np.array([0, 1, 2, 3])
    sure = np.eye(4)[labels] * 0.9 + 0.025
    wrong_first = np.eye(4)[[1, 1, 2, 3]] * 0.9 + 0.025
    mine = [reference.side(0, sure, labels, "a"), reference.side(1, wrong_first, labels, "b")]
    theirs = [reference.side(0, wrong_first, labels, "c"), reference.side(2, sure, labels, "d")]
    result = reference.comparison(mine, theirs)
    assert result["seeds"] == [0] and result["missing_seeds"] == [1]
    assert (result["mcnemar"]["a_only"], result["mcnemar"]["b_only"]) == (1, 0)
    assert result["release_accuracy"]["mean"] == 1.0 and result["defaults_accuracy"]["mean"] == 0.75
    assert "not significantly better" in result["verdict"]  # one digit proves nothing
