"""Tests of bench.report.loading: loading runs, the recommended trial and what it predicted."""

from __future__ import annotations

import pytest

from bench.core import records
from bench.errors import ReportError
from bench.report import loading
from tests.factories import fake_run


def test_runs_load_with_their_records_and_refuse_bad_directories(tmp_path):
    loaded = loading.load_runs([fake_run(tmp_path, run="a", n=2, failed=0)])
    assert [run.name for run in loaded] == ["a"]
    assert len(loaded[0].records) == 3 and loaded[0].confirmed == []
    with pytest.raises(ReportError, match="no run directory"):
        loading.load_runs([])
    other = tmp_path / "elsewhere"
    fake_run(other, run="a", n=1, failed=0)
    with pytest.raises(ReportError, match="several run directories are named a"):
        loading.load_runs([tmp_path / "a", other / "a"])


def test_the_recommendation_is_the_best_validation_accuracy_of_all_runs(tmp_path):
    dirs = [fake_run(tmp_path, run=name, n=4, failed=1) for name in ("a", "b")]
    ctx = loading.load_context(dirs)
    run, record = ctx.choice
    every = [r for d in dirs for r in records.load_records(d)]
    assert record == records.best_by_validation(every)
    assert run.name == record["run"]
    assert set(ctx.df["run"]) == {"a", "b"}
    assert ctx.predictions["y_true"].shape == ctx.predictions["y_pred"].shape


def test_missing_or_damaged_predictions_say_why(tmp_path):
    assert loading.load_predictions(None) == loading.NO_TRIAL
    run = loading.load_run(fake_run(tmp_path, n=1, failed=0, with_seed_baseline=False))
    record = run.records[0]
    assert "stored no predictions" in loading.load_predictions(
        (run, {**record, "predictions": None})
    )
    (records.trials_dir(run.path) / record["predictions"]).write_bytes(b"not a zip")
    assert "unreadable" in loading.load_predictions((run, record))


def test_test_images_are_shown_only_from_the_data_the_run_was_tested_on(tmp_path):
    run = loading.load_run(fake_run(tmp_path, n=1, failed=0, with_seed_baseline=False))
    record = run.records[0]
    y_true = loading.load_predictions((run, record))["y_true"]
    why = loading.load_test_images(run, record, y_true)  # the fake runs name a made-up SHA256
    assert isinstance(why, str) and "not the data the run was tested on" in why


def test_runs_are_ordered_by_creation_those_without_a_date_first(tmp_path):
    made = {}
    for name, created in (("new", "2026-02-01"), ("undated", None), ("old", "2026-01-01")):
        run_dir = fake_run(tmp_path, run=name, n=1, failed=0)
        if created:
            config = {**records.load_config(run_dir), "created_at": created}
            records.atomic_write_json(run_dir / records.CONFIG_FILE, config)
        made[name] = loading.load_run(run_dir)
    ordered = loading.by_creation([made["new"], made["undated"], made["old"]])
    assert [run.name for run in ordered] == ["undated", "old", "new"]


def test_every_damaged_predictions_file_is_listed_alike(tmp_path):
    run_dir = fake_run(tmp_path, n=2, failed=0, with_seed_baseline=False)
    trial = records.trials_dir(run_dir) / records.predictions_name("01")
    trial.write_bytes(trial.read_bytes()[:64])
    folder = records.confirm_dir(run_dir)
    confirmed = {"trial_id": "00", "seed": 7, "predictions": "00-seed7.npz"}
    records.atomic_write_json(folder / "00-seed7.json", confirmed)
    (folder / "00-seed7.npz").write_bytes(b"\x80\x04not an archive")  # a pickle's first bytes
    damaged = loading.load_run(run_dir).damaged
    assert damaged == [
        f"{trial} is damaged (not a valid .npz); {records.PREDICTIONS_REMEDY}",
        f"{folder / '00-seed7.npz'} is damaged (not a valid .npz); "
        f"{records.CONFIRM_PREDICTIONS_REMEDY}",
    ]
