"""End to end on a real MNIST subset: search (2 trials, 1 epoch) -> report -> export -> reload."""

import json

import keras
import numpy as np
import pandas as pd
import pytest

from bench import cli
from bench.core import data, records

SUBSET = ["--train-limit", "1000", "--val-size", "500", "--test-limit", "500"]
TRIALS = 2


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    argv = ["search", "--space", "cnn", "--tuner", "random", "--run", "e2e", "--seed", "3"]
    argv += ["--max-trials", str(TRIALS), "--max-epochs", "1", "--results", str(results)]
    assert cli.main(argv + SUBSET) == 0
    return results / "e2e"


def test_search_leaves_config_records_and_predictions(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    assert config["space"] == "cnn" and config["test_limit"] == 500 and config["seed"] == 3
    trials = records.load_records(run_dir)
    assert len(trials) == TRIALS
    assert len({json.dumps(t["hyperparameters"], sort_keys=True) for t in trials}) == TRIALS
    for record in trials:
        records.validate_record(record)
        assert record["status"] == "completed", record["error"]
        assert 0.1 < record["test_accuracy"] <= 1.0 and record["test_loss"] > 0
        assert record["epochs_run"] == 1 and len(record["history"]["val_loss"]) == 1
        assert record["dataset"]["sha256"] == data.load_raw().sha256
        preds = records.load_predictions(run_dir, record)
        assert np.mean(preds["y_pred"] == preds["y_true"]) == pytest.approx(record["test_accuracy"])


def test_report_is_written_with_the_recorded_numbers(run_dir):
    report = run_dir / "report"
    table = pd.read_csv(report / "trials.csv", dtype={"trial_id": str})
    trials = {r["trial_id"]: r for r in records.load_records(run_dir)}
    assert sorted(table["trial_id"]) == sorted(trials)
    for _, row in table.iterrows():
        assert row["test_accuracy"] == pytest.approx(trials[row["trial_id"]]["test_accuracy"])
    assert "hp_conv_blocks" in table.columns
    html = (report / "index.html").read_text()
    assert html.count("data:image/png;base64,") >= 6
    best = records.best_by_validation(trials.values())
    assert best["trial_id"] in (report / "report.md").read_text()


def test_export_ships_a_model_that_gives_the_recorded_accuracy(run_dir, capsys):
    assert cli.main(["export", "e2e", "--results", str(run_dir.parent)]) == 0
    best = records.best_by_validation(records.load_records(run_dir))
    out = run_dir / "best"
    shipped = json.loads((out / "config.json").read_text())
    assert shipped["trial_id"] == best["trial_id"]
    assert shipped["hyperparameters"] == best["hyperparameters"]
    assert shipped["training"]["batch_size"] == 128
    model = keras.saving.load_model(out / "model.keras")
    splits = data.load(val_size=500, train_limit=1000, test_limit=500)
    probs = model.predict(splits.x_test, verbose=0)
    assert np.mean(probs.argmax(1) == splits.y_test) == pytest.approx(best["test_accuracy"])
    card = (out / "model_card.md").read_text()
    assert f"{best['val_accuracy']:.4f}" in card and f"{best['test_accuracy']:.4f}" in card
    assert "validation accuracy" in card and best["run"] in card
    command = f"bench export e2e --results {run_dir.parent}"
    assert shipped["reproduce"]["command"] == command and f"`{command}`" in card
