"""A night that ends with its release: shipped within the budget by the process that
confirmed, resumed after a kill, never redone, skipped with what to do when it cannot fit."""

import json
import re
from pathlib import Path

import pytest

from bench import cli, night, runner
from bench.core import records
from bench.core.budget import Budget
from bench.core.config import Recipe, SearchConfig
from bench.release import choose, export
from tests.release.test_export import Cut, release_epochs
from tests.test_cli import assert_one_line_error, run_cli

REPO_ROOT = Path(__file__).resolve().parent.parent
RETRAIN_IMAGES = 300
SMALL = ["--space", "tiny", "--tuner", "random", "--max-trials", "2", "--max-epochs", "1"]
SMALL += ["--train-limit", "256", "--val-size", "128", "--test-limit", "128"]
SMALL += ["--batch-size", "64"]
RELEASE = ["--release", "--release-epochs", "2", "--release-clean-epochs", "1"]


def night_args(results: Path, run: str, *extra: str) -> list[str]:
    return ["search", "--run", run, "--results", str(results), *SMALL, *RELEASE, *extra]


@pytest.fixture
def reports(monkeypatch) -> list:
    """The runs whose report the search writes, in order; the writing itself (its figures
    take seconds) left out: what the report holds is tested elsewhere."""
    written = []
    monkeypatch.setattr(runner, "report_run", written.append)
    return written


def test_a_night_ships_its_confirmed_winner_resumes_a_killed_release_and_never_redoes_it(
    tmp_path, few_retrain_images, reports, monkeypatch, capsys
):
    args = night_args(tmp_path, "n", "--confirm-seeds", "1", "--confirm-top", "1")
    args += ["--budget", "3h"]
    run_dir = tmp_path / "n"
    trained = release_epochs(monkeypatch, [], cut_after=("fit", 0))
    with pytest.raises(Cut):  # killed after the release's first epoch
        cli.main(args)
    assert records.load_confirmed(run_dir) and not (run_dir / export.BEST_DIR).exists()
    capsys.readouterr()
    release_epochs(monkeypatch, trained)
    code, out, err = run_cli(capsys, *args)  # the same command again
    assert code == 0, err
    assert trained == [("fit", 0), ("fit", 1), ("clean", 0)]  # the rest, nothing twice
    assert "going on after 1 of its 3 epochs" in out
    best = run_dir / export.BEST_DIR
    assert {"model.keras", "config.json", "model_card.md"} <= {p.name for p in best.iterdir()}
    shipped = json.loads((best / "config.json").read_text())
    ranked = choose.confirmed_by_val_accuracy(records.load_confirmed(run_dir))
    assert shipped["trial_id"] == ranked[0]
    assert shipped["selection"] == choose.winner(run_dir)[1] != choose.SINGLE_SELECTION
    assert (shipped["training"]["epochs"], shipped["training"]["clean_epochs"]) == (2, 1)
    command = f"bench export n --retrain --epochs 2 --clean-epochs 1 --seed 0 --results {tmp_path}"
    assert shipped["reproduce"]["command"] == command
    assert not export.release_backup(run_dir, 0).exists()
    assert reports == [run_dir]  # the killed night wrote none
    code, out, err = run_cli(capsys, *args)  # and again: nothing is left to do
    assert code == 0, err
    assert trained == [("fit", 0), ("fit", 1), ("clean", 0)]
    assert f"already holds trial {shipped['trial_id']} trained with this recipe" in out
    assert json.loads((best / "config.json").read_text()) == shipped


def test_a_night_releases_with_the_refinements_it_was_given(
    tmp_path, few_retrain_images, reports, capsys
):
    refined = ["--release-ema", "0.99", "--release-elastic", "20"]
    refined += ["--release-set", "filters=8", "--release-set", "dense_units=16"]
    args = night_args(tmp_path, "e", "--max-trials", "1", *refined)
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    shipped = json.loads((tmp_path / "e" / export.BEST_DIR / "config.json").read_text())
    training = shipped["training"]
    assert (training["ema"], training["elastic"]) == (0.99, 20.0)
    assert training["overrides"] == {"filters": "8", "dense_units": "16"}
    assert (shipped["hyperparameters"]["filters"], shipped["hyperparameters"]["dense_units"]) == (
        8,
        16,
    )
    flags = "--ema 0.99 --elastic 20 --set filters=8 --set dense_units=16"
    assert flags in shipped["reproduce"]["command"]
    config = runner.search_config(cli.given_settings(cli.build_parser().parse_args(args)))
    assert " --release-set filters=8 --release-set dense_units=16" in runner.resume_command(config)
    code, out, err = run_cli(capsys, *args)  # its signature matches: kept, not redone
    assert code == 0 and "already holds trial" in out, err


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--release-set", "width=8"], ["--release-set width", "no such", "filters"]),
        (["--release-set", "filters=wide"], ["--release-set filters=wide", "whole number"]),
        (["--release-set", "filters"], ["--release-set 'filters' is not NAME=VALUE"]),
        (["--no-release", "--release-ema", "0.99"], ["--release-ema needs --release"]),
    ],
)
def test_a_refinement_the_night_could_not_ship_is_refused_before_the_search(
    tmp_path, capsys, flags, fragments
):
    code, _, err = run_cli(capsys, *night_args(tmp_path, "x"), *flags)
    assert code == 2
    assert_one_line_error(err, *fragments)
    assert not records.trials_dir(tmp_path / "x").exists()


def test_a_release_the_budget_cannot_hold_is_skipped_with_the_command_that_ships_it(
    tmp_path, reports, monkeypatch, capsys
):
    # Its first trial fits in the half minute the report's margin leaves; a release of the
    # tiny winner on 60,000 images (235 times its training images) does not.
    trained = release_epochs(monkeypatch, [])
    code, out, err = run_cli(
        capsys, *night_args(tmp_path, "s", "--max-trials", "1"), "--budget", "60s"
    )
    assert code == 0, err
    flags = "'EXPORT_FLAGS=--retrain --epochs 2 --clean-epochs 1'"
    found = re.search(
        r"release skipped: the budget has (\d+) s left, the release needs about (\d+) s; "
        rf"`make release RUN=s RESULTS={tmp_path} {flags}` ships it\n",
        out,
    )
    assert found, out
    assert int(found[1]) < int(found[2])
    assert trained == [] and not (tmp_path / "s" / export.BEST_DIR).exists()
    assert reports == [tmp_path / "s"]  # the night went on to its report


def test_the_release_is_priced_by_the_epochs_its_backup_does_not_hold(tmp_path):
    dataset = {"sha256": "f00", "train": 6000, "val": 1000}
    record = {"trial_id": "3", "hyperparameters": {"units": 8}, "dataset": dataset}
    record.update(best_epoch=4, train_seconds=10.0, epochs_run=5)
    saved = {"batch_size": 64, "train_limit": 6000, "val_size": 1000}
    recipe = Recipe(retrain=True, seed=0, clean_epochs=1)
    # 2 s an epoch on 6,000 images, 20 s on all 60,000: 4 epochs and a clean one.
    assert night.expected_seconds(tmp_path, record, saved, recipe) == pytest.approx(100.0)
    fit = export.release_backup(tmp_path, 0) / export.FIT_STAGE
    fit.mkdir(parents=True)
    (fit / "epoch-3.weights.h5").touch()
    key = export.release_key(record, saved, recipe, 4)
    state = {"values": {**key, "stage": export.FIT_STAGE}, "weights": "epoch-3.weights.h5"}
    state.update(epoch=3, stopped=False, epochs=[0, 1, 2], history={"loss": [0.3, 0.2, 0.1]})
    records.atomic_write_json(fit / "state.json", state)
    assert night.expected_seconds(tmp_path, record, saved, recipe) == pytest.approx(40.0)
    other = Recipe(retrain=True, epochs=5, seed=0, clean_epochs=1)  # not this backup's
    assert night.expected_seconds(tmp_path, record, saved, other) == pytest.approx(120.0)


def test_a_night_without_release_ships_nothing(tmp_path, capsys):
    config = SearchConfig(run="r", results=str(tmp_path))
    assert night.release(config, Budget(None), None) is None
    assert capsys.readouterr().out == ""  # not even a line on why not


def test_make_search_releases_with_the_recipe_of_make_release():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert f"EXPORT_FLAGS ?= {night.MAKE_EXPORT_FLAGS}\n" in makefile
    recipe = night.recipe_flags(Recipe(retrain=True, epochs=25, clean_epochs=1))
    assert " ".join(recipe) == night.MAKE_EXPORT_FLAGS
    assert "RELEASE_FLAGS = --release --release-epochs 25 --release-clean-epochs 1\n" in makefile
