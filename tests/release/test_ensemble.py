"""bench export --ensemble: members from kept confirm models or release retrains, one model
that loads without this package, and refusals before any work."""

import io
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from bench import cli
from bench.core import data, records
from bench.core.config import Recipe, SearchConfig
from bench.errors import ExportError
from bench.release import choose, ensemble, export
from bench.search import confirm, tuning

TINY = dict(train_limit=300, val_size=200, test_limit=200, max_epochs=1, batch_size=64)
SEED = 5
RETRAIN_IMAGES = 300


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    config = SearchConfig(
        run="e", space="tiny", tuner="random", max_trials=3, seed=SEED, results=str(results), **TINY
    ).validate()
    assert tuning.run_search(config, stream=io.StringIO()) is True
    confirm.confirm_run(config.run_dir, top=2, seeds=2, stream=io.StringIO())
    return config.run_dir


@pytest.fixture(scope="module")
def test_digits():
    splits = data.load(val_size=TINY["val_size"], train_limit=TINY["train_limit"])
    return splits.x_test[: TINY["test_limit"]], splits.y_test[: TINY["test_limit"]]


def kept_probs(run_dir, result, images):
    model = keras.saving.load_model(records.confirm_dir(run_dir) / result["model"])
    return model.predict(images, verbose=0)


def test_confirm_keeps_each_model_as_served(run_dir, test_digits):
    images, _ = test_digits
    for result in records.load_confirmed(run_dir):
        stored = records.load_confirmed_predictions(run_dir, result)
        probs = kept_probs(run_dir, result, images)
        assert np.array_equal(probs.argmax(1), stored["y_pred"])


def load_without_the_package(path, images, tmp_path):
    """Predictions of a .keras file in a fresh Python where bench and search_spaces cannot
    be imported."""
    np.save(tmp_path / "images.npy", images)
    script = (
        "import sys; sys.modules['bench'] = sys.modules['search_spaces'] = None\n"
        "import keras, numpy as np\n"
        f"model = keras.saving.load_model({str(path)!r})\n"
        f"images = np.load({str(tmp_path / 'images.npy')!r})\n"
        f"np.save({str(tmp_path / 'probs.npy')!r}, model.predict(images, verbose=0))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, capture_output=True)
    return np.load(tmp_path / "probs.npy")


def test_seeds_average_the_winners_kept_models(run_dir, test_digits, tmp_path):
    images, labels = test_digits
    out = ensemble.export_ensemble(run_dir, 2, "seeds", stream=io.StringIO())
    assert out == run_dir / ensemble.ENSEMBLE_DIR
    shipped = json.loads((out / "config.json").read_text())
    results = records.load_confirmed(run_dir)
    winner = choose.confirmed_winner(run_dir, results, records.load_records(run_dir))
    mine = [r for r in results if r["trial_id"] == winner["trial_id"]]
    mine.sort(key=lambda r: r["seed"])
    assert [m["seed"] for m in shipped["ensemble"]["members"]] == [r["seed"] for r in mine]
    members = [kept_probs(run_dir, r, images) for r in mine]
    mean = np.mean(members, axis=0)
    probs = load_without_the_package(out / records.MODEL_FILE, images, tmp_path)
    np.testing.assert_allclose(probs, mean, atol=1e-6)
    assert shipped["test_accuracy"] == pytest.approx(np.mean(mean.argmax(1) == labels))
    rights = [m.argmax(1) == labels for m in members]
    best = int(np.argmax([r.mean() for r in rights]))
    ensemble_right = mean.argmax(1) == labels
    test = shipped["ensemble"]["mcnemar"]
    assert test["a_only"] == int((ensemble_right & ~rights[best]).sum())
    assert test["b_only"] == int((~ensemble_right & rights[best]).sum())
    names = [layer.name for layer in keras.saving.load_model(out / records.MODEL_FILE).layers]
    assert len(names) == len(set(names))
    card = (out / "model_card.md").read_text()
    assert "McNemar's test" in card and f"seeds {mine[0]['seed']}, {mine[1]['seed']}" in card


def test_top_takes_the_best_seed_of_each_top_configuration(run_dir):
    out = ensemble.export_ensemble(run_dir, 2, "top", stream=io.StringIO())
    members = json.loads((out / "config.json").read_text())["ensemble"]["members"]
    results = records.load_confirmed(run_dir)
    assert [m["trial_id"] for m in members] == choose.confirmed_by_val_accuracy(results)[:2]
    for member in members:
        own = [r for r in results if r["trial_id"] == member["trial_id"]]
        assert member["seed"] == max(own, key=lambda r: r["val_accuracy"])["seed"]


def test_release_members_are_kept_and_a_larger_ensemble_trains_only_the_new(
    run_dir, few_retrain_images, monkeypatch
):
    recipe = Recipe(retrain=True, epochs=1)
    export.export_run(run_dir, Recipe(retrain=True, epochs=1))  # a release from the run's seed
    stream = io.StringIO()
    ensemble.export_ensemble(run_dir, 2, "release", recipe=recipe, stream=stream)
    assert "member of seed 5: the run's release in best/" in stream.getvalue()
    assert "retraining 1 of 2 members with the release recipe (seeds 6)" in stream.getvalue()
    folder = run_dir / ensemble.RELEASE_DIR
    assert sorted(p.name for p in folder.iterdir()) == ["seed5", "seed6"]
    seeds = []
    retrain = export.retrain

    def counted(record, config, raw, recipe, *args):
        seeds.append(recipe.seed)
        return retrain(record, config, raw, recipe, *args)

    monkeypatch.setattr(export, "retrain", counted)
    out = ensemble.export_ensemble(run_dir, 3, "release", recipe=recipe, stream=io.StringIO())
    assert seeds == [SEED + 2]
    shipped = json.loads((out / "config.json").read_text())
    assert [m["seed"] for m in shipped["ensemble"]["members"]] == [5, 6, 7]
    assert shipped["training"]["train_images"] == RETRAIN_IMAGES
    assert (
        "Each member retrained from scratch on all 300 training images"
        in (out / "model_card.md").read_text()
    )


@pytest.mark.parametrize(
    "k, source, recipe, refusal",
    [
        (1, "seeds", {}, "--ensemble must be 2 to 20"),
        (21, "seeds", {}, "--ensemble must be 2 to 20"),
        (2, "all", {}, "--ensemble-from must be one of seeds, top, release, top-release"),
        (2, "top-release", {}, "--ensemble-from top-release needs --retrain"),
        (3, "top-release", {"retrain": True}, "2 configuration\\(s\\) were confirmed"),
        (2, "release", {}, "needs --retrain"),
        (2, "seeds", {"retrain": True}, "--retrain goes with --ensemble-from release"),
        (2, "top", {"epochs": 3}, "--epochs needs --retrain"),
        (3, "seeds", {}, "has 2 confirmed seed\\(s\\) with a kept model, --ensemble 3 needs 3"),
        (3, "top", {}, "2 configuration\\(s\\) were confirmed"),
    ],
)
def test_bad_ensembles_are_refused_before_anything_is_written(run_dir, k, source, recipe, refusal):
    before = sorted(p.name for p in run_dir.iterdir())
    with pytest.raises(ExportError, match=refusal):
        ensemble.export_ensemble(run_dir, k, source, recipe=Recipe(**recipe), stream=io.StringIO())
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_the_command_line_refuses_a_source_without_a_size(run_dir, capsys):
    results = str(run_dir.parent)
    code = cli.main(["export", run_dir.name, "--results", results, "--ensemble-from", "top"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "error: --ensemble-from needs --ensemble K"


def test_top_release_retrains_each_top_configuration_once_with_the_recipe(
    run_dir, few_retrain_images, monkeypatch
):
    recipe = Recipe(retrain=True, epochs=1, ema=0.9)
    out = ensemble.export_ensemble(run_dir, 2, "top-release", recipe=recipe, stream=io.StringIO())
    shipped = json.loads((out / "config.json").read_text())
    top = choose.confirmed_by_val_accuracy(records.load_confirmed(run_dir))[:2]
    assert [m["trial_id"] for m in shipped["ensemble"]["members"]] == top
    assert [m["seed"] for m in shipped["ensemble"]["members"]] == [SEED, SEED]
    assert shipped["training"]["ema"] == 0.9
    kept = sorted(p.name for p in (run_dir / ensemble.RELEASE_DIR).glob("trial*"))
    assert kept == sorted(f"trial{t}" for t in top)
    # Both members are kept: the same export again trains nothing; another recipe retrains.
    trained = []
    retrain = export.retrain

    def counted(record, *args):
        trained.append(record["trial_id"])
        return retrain(record, *args)

    monkeypatch.setattr(export, "retrain", counted)
    ensemble.export_ensemble(run_dir, 2, "top-release", recipe=recipe, stream=io.StringIO())
    assert trained == []
    with pytest.raises(ExportError, match="--single-trial does not go with --ensemble-from top"):
        ensemble.export_ensemble(run_dir, 2, "top-release", recipe=recipe, pick=choose.SINGLE)
