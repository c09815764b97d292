"""Export: the best trial by validation accuracy, retraining, and clear refusals."""

import io
import json
import os
import stat
import subprocess
import sys

import keras
import keras_tuner as kt
import numpy as np
import pytest

from bench.core import data, environment, faults, records, swap
from bench.core.config import Recipe, SearchConfig
from bench.errors import FormatError
from bench.release import export, formats
from bench.search import tuning
from bench.train import checkpoint, kt_compat
from bench.train.epoch_lines import EpochLines
from search_spaces import tiny
from tests.factories import fake_run

TINY = dict(train_limit=256, val_size=128, test_limit=128, max_epochs=1, batch_size=64)
RETRAIN_IMAGES = 300


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    config = SearchConfig(
        run="x", space="seed", tuner="random", max_trials=1, results=str(results), **TINY
    ).validate()
    assert tuning.run_search(config, stream=io.StringIO()) is True  # the run is over
    return config.run_dir


def test_export_then_retrain_on_the_full_training_set(run_dir, monkeypatch):
    umask = os.umask(0o022)
    try:
        out = export.export_run(run_dir)
    finally:
        os.umask(umask)
    shipped = json.loads((out / "config.json").read_text())
    _check_formats(out, shipped)
    _check_modes(out)
    at_the_swap = watch_the_swap(monkeypatch, out)
    assert shipped["training"]["retrained_on_all_training_images"] is False
    assert shipped["training"]["train_images"] == TINY["train_limit"]
    calls = []
    full_set = data.full_training_set

    def small_full_set(raw):
        calls.append(len(raw.y_train))  # asked for all 60,000
        images, labels = full_set(raw)
        return images[:RETRAIN_IMAGES], labels[:RETRAIN_IMAGES]

    monkeypatch.setattr(data, "full_training_set", small_full_set)
    out = export.export_run(run_dir, Recipe(retrain=True))
    shipped = json.loads((out / "config.json").read_text())
    assert calls == [data.TRAIN_COUNT]
    assert shipped["training"]["retrained_on_all_training_images"] is True
    assert shipped["training"]["train_images"] == RETRAIN_IMAGES
    model = keras.saving.load_model(out / "model.keras")
    splits = data.load(val_size=128, train_limit=256, test_limit=128)
    accuracy = np.mean(model.predict(splits.x_test, verbose=0).argmax(1) == splits.y_test)
    assert accuracy == pytest.approx(shipped["test_accuracy"])
    assert f"{RETRAIN_IMAGES:,} training images" in (out / "model_card.md").read_text()
    # Where `make soak` kills an export, best/ is there whole (the previous export or this one).
    assert at_the_swap and all(at_the_swap)


def watch_the_swap(monkeypatch, out) -> list[bool]:
    """At each passage of export.SWAP_POINT, whether out holds a whole export."""
    seen, point = [], faults.point

    def watched(name):
        if name == export.SWAP_POINT:
            seen.append((out / "config.json").is_file() and (out / "model.keras").is_file())
        point(name)

    monkeypatch.setattr(faults, "point", watched)
    return seen


def _check_modes(out):
    """Every file of an export (model.keras, the SavedModel, the TFLite files, the card)
    readable by the team, as the umask of the export (022) allows."""
    for path in [out, *out.rglob("*")]:
        wanted = 0o755 if path.is_dir() else 0o644
        assert stat.S_IMODE(path.stat().st_mode) == wanted, path


def card_headings() -> tuple[str, ...]:
    """The sections of Mitchell et al. 2019's model cards that an export's card has."""
    return (
        "Model details",
        "Intended use",
        "Factors",
        "Metrics",
        "Evaluation data",
        "Training data",
        "Quantitative analyses",
        "Inference cost and serving formats",
        "Caveats and recommendations",
        "How to reproduce",
    )


def _check_formats(out, shipped):
    """Every serving format written, in the card, and as accurate as model.keras."""
    assert (out / formats.SAVED_MODEL_DIR / "saved_model.pb").is_file()
    card = (out / "model_card.md").read_text()
    for figures in shipped["formats"].values():
        lost = round((shipped["test_accuracy"] - figures["test_accuracy"]) * shipped["test_images"])
        assert lost <= formats.allowed_digits(shipped["test_images"])
        assert f"| {figures['file']} |" in card and f"{figures['test_accuracy']:.4f}" in card
    for name, file in formats.TFLITE_FILES.items():
        assert (out / file).stat().st_size == shipped["formats"][name]["bytes"]
    for heading in card_headings():
        assert f"\n## {heading}\n" in card
    assert "about 0.15% (15 digits" in card  # MNIST's doubtful test labels
    assert f"`{shipped['reproduce']['command']}`" in card and shipped["reproduce"]["commit"] in card
    low, high = shipped["test_interval"]
    assert low <= shipped["test_accuracy"] <= high
    assert sum(row["images"] for row in shipped["per_class"]) == shipped["test_images"]
    assert shipped["inference"]["flops"] > 0 and shipped["inference"]["bytes"] > 0


def test_a_format_that_loses_accuracy_stops_the_export_and_keeps_the_last(run_dir, monkeypatch):
    out = export.export_run(run_dir)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    measure = formats.evaluate

    def ten_points_worse(predict, images, labels):
        figures = measure(predict, images, labels)
        return {**figures, "test_accuracy": figures["test_accuracy"] - 0.1}

    monkeypatch.setattr(formats, "evaluate", ten_points_worse)
    with pytest.raises(FormatError, match="saved_model loses 10.00 points"):
        export.export_run(run_dir)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not list(run_dir.glob("*.partial")) and not list(run_dir.glob("*.old"))


def test_a_retrain_can_run_longer_than_the_trial(run_dir, few_retrain_images):
    out = export.export_run(run_dir, Recipe(retrain=True, epochs=3))
    training = json.loads((out / "config.json").read_text())["training"]
    assert (training["epochs"], training["trial_best_epoch"]) == (3, TINY["max_epochs"])
    model = keras.saving.load_model(out / "model.keras")
    steps = -(-RETRAIN_IMAGES // TINY["batch_size"])
    assert int(model.optimizer.iterations) == 3 * steps  # it really trained three epochs
    assert "3 epochs (the winning trial's best epoch was 1" in (out / "model_card.md").read_text()


def test_a_retrain_can_start_from_another_seed(run_dir, few_retrain_images):
    models = {}
    for seed in (None, 7):
        out = export.export_run(run_dir, Recipe(retrain=True, seed=seed))
        shipped = json.loads((out / "config.json").read_text())
        models[shipped["training"]["seed"]] = keras.saving.load_model(out / "model.keras")
    assert set(models) == {records.load_config(run_dir)["seed"], 7}
    assert "seed 7," in (out / "model_card.md").read_text()
    first, other = (model.get_weights()[0] for model in models.values())
    assert not np.allclose(first, other)  # another seed, other initial weights


def test_the_shipped_commit_is_the_one_that_trained(run_dir, few_retrain_images, monkeypatch):
    head = {"commit": "abc123"}
    retrain = export.retrain

    def commit_during_the_retrain(*args):
        head["commit"] = "def456"  # someone commits while a long retrain runs
        return retrain(*args)

    monkeypatch.setattr(export, "retrain", commit_during_the_retrain)
    monkeypatch.setattr(environment, "git_commit", lambda: head["commit"])
    out = export.export_run(run_dir, Recipe(retrain=True))
    assert json.loads((out / "config.json").read_text())["exported_with_commit"] == "abc123"


class Cut(BaseException):
    """Stands for a kill: nothing after it runs."""


SAVE_EPOCH = checkpoint.EpochBackup.on_epoch_end
RELEASE_STAGES = (export.FIT_STAGE, export.CLEAN_STAGE)


def release_epochs(monkeypatch, trained: list, cut_after: tuple[str, int] | None = None) -> list:
    """`trained` with (stage, epoch) of every release epoch backed up from now on added, in
    order; a kill (Cut) right after the backup of `cut_after`."""

    def saved(self, epoch, logs=None):
        SAVE_EPOCH(self, epoch, logs)
        if self.folder.name in RELEASE_STAGES:  # not a trial's backup
            trained.append((self.folder.name, epoch))
        if trained and trained[-1] == cut_after:
            raise Cut

    monkeypatch.setattr(checkpoint.EpochBackup, "on_epoch_end", saved)
    return trained


def test_a_killed_release_goes_on_from_its_last_finished_epoch(
    run_dir, few_retrain_images, monkeypatch
):
    recipe = Recipe(retrain=True, epochs=2, clean_epochs=2)
    seed = records.load_config(run_dir)["seed"]
    backup = export.release_backup(run_dir, seed)
    trained = release_epochs(monkeypatch, [], cut_after=("fit", 1))  # its last epoch
    with pytest.raises(Cut):
        export.export_run(run_dir, recipe)
    release_epochs(monkeypatch, trained, cut_after=("clean", 0))
    with pytest.raises(Cut):
        export.export_run(run_dir, recipe)
    states = [json.loads((backup / stage / "state.json").read_text()) for stage in RELEASE_STAGES]
    assert [state["epoch"] for state in states] == [2, 1]
    release_epochs(monkeypatch, trained)
    out = export.export_run(run_dir, recipe)
    # No epoch twice: the clean epochs began after the fit (whose epoch count the model kept)
    # and went on from the kill inside them.
    assert trained == [("fit", 0), ("fit", 1), ("clean", 0), ("clean", 1)]
    shipped = json.loads((out / "config.json").read_text())
    assert (shipped["training"]["epochs"], shipped["training"]["clean_epochs"]) == (2, 2)
    assert shipped["training"]["train_seconds"] >= sum(state["seconds"] for state in states)
    model = keras.saving.load_model(out / "model.keras")
    steps = -(-RETRAIN_IMAGES // TINY["batch_size"])
    assert int(model.optimizer.iterations) == 2 * steps  # the clean optimizer's two epochs
    assert shipped["finished_at"] <= records.utc_now()
    assert not backup.exists()  # shipped: the backup is spent


# A space file: tiny's model under cnn_plus's warm-up and cosine schedule.
SCHEDULED_SPACE = """from search_spaces import cnn_plus, tiny

FIT_DEFAULTS = {}
build = tiny.build


def fit(hp, model, *args, **kwargs):
    schedule = cnn_plus.WarmupCosine(hp.get("learning_rate"), kwargs["epochs"])
    kwargs["callbacks"] = [schedule, *kwargs.get("callbacks", [])]
    return model.fit(*args, **kwargs)
"""


def test_a_resumed_release_keeps_its_learning_rate_schedule(
    tmp_path, few_retrain_images, monkeypatch
):
    space = tmp_path / "scheduled.py"
    space.write_text(SCHEDULED_SPACE)
    hp = kt.HyperParameters()
    tiny.build(hp)
    record = {"trial_id": "0", "space": str(space), "hyperparameters": hp.values}
    record.update(dataset={"sha256": "any"}, best_epoch=4)
    config = {"batch_size": TINY["batch_size"]}
    raw = data.load_raw()
    rates = []
    show = EpochLines.on_epoch_end

    def noted(self, epoch, logs=None):  # the epoch line comes before the backup
        rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        show(self, epoch, logs)

    monkeypatch.setattr(EpochLines, "on_epoch_end", noted)
    recipe = Recipe(True, 4, 0)
    export.retrain(record, config, raw, recipe)  # in one go
    whole, rates[:] = list(rates), []
    release_epochs(monkeypatch, [], cut_after=("fit", 1))
    with pytest.raises(Cut):
        export.retrain(record, config, raw, recipe, tmp_path / "backup")
    trained = release_epochs(monkeypatch, [])
    export.retrain(record, config, raw, recipe, tmp_path / "backup")
    assert trained == [("fit", 2), ("fit", 3)]
    assert len(set(whole)) == 4  # the rate changes every epoch
    assert rates == pytest.approx(whole)  # and the resumed epochs had the same ones


def test_clean_epochs_follow_the_retrain_at_its_final_rate(run_dir, few_retrain_images):
    out = export.export_run(run_dir, Recipe(retrain=True, epochs=1, clean_epochs=2))
    training = json.loads((out / "config.json").read_text())["training"]
    assert (training["epochs"], training["clean_epochs"]) == (1, 2)
    # The seed space trains at Adam's constant 1e-3: the clean epochs go on at that rate.
    assert training["clean_learning_rate"] == pytest.approx(1e-3)
    # The seed space has no augmentation to leave out: the clean epochs train the model
    # itself, under the fresh optimizer that the shipped model keeps.
    model = keras.saving.load_model(out / "model.keras")
    assert int(model.optimizer.iterations) == 2 * -(-RETRAIN_IMAGES // TINY["batch_size"])
    assert "Then 2 more epochs on the digits as they are" in (out / "model_card.md").read_text()


@pytest.mark.parametrize(
    "kwargs, refusal",
    [
        (dict(epochs=2), "--epochs needs --retrain"),
        (dict(retrain=True, epochs=0), "--epochs must be at least 1"),
        (dict(seed=3), "--seed needs --retrain"),
        (dict(retrain=True, seed=-1), "--seed must be 0 or more"),
        (dict(clean_epochs=1), "--clean-epochs needs --retrain"),
        (dict(retrain=True, clean_epochs=-1), "--clean-epochs must be 0 or more"),
    ],
)
def test_bad_epochs_or_seeds_are_refused_before_any_work(run_dir, kwargs, refusal, monkeypatch):
    monkeypatch.setattr(data, "load_for_run", None)  # any work would fail on this
    with pytest.raises(export.ExportError, match=refusal):
        export.export_run(run_dir, Recipe(**kwargs))


def test_missing_checkpoint_is_named_and_the_old_export_kept(run_dir):
    export.export_run(run_dir)
    before = (run_dir / "best" / "config.json").read_text()
    (record,) = records.load_records(run_dir)
    checkpoint = kt_compat.trial_checkpoint(run_dir / "tuner", record["trial_id"])
    moved = checkpoint.with_suffix(".moved")
    checkpoint.rename(moved)
    try:
        with pytest.raises(export.ExportError, match="checkpoint.weights.h5: missing"):
            export.export_run(run_dir)
    finally:
        moved.rename(checkpoint)
    assert (run_dir / "best" / "config.json").read_text() == before


def test_a_record_that_does_not_match_its_checkpoint_is_refused(run_dir):
    (record,) = records.load_records(run_dir)
    tampered = dict(record, test_accuracy=record["test_accuracy"] - 0.05)
    records.write_record(run_dir, tampered)
    try:
        with pytest.raises(export.ExportError, match="record says"):
            export.export_run(run_dir)
    finally:
        records.write_record(run_dir, record)


def test_other_data_is_refused(run_dir):
    (record,) = records.load_records(run_dir)
    records.write_record(run_dir, {**record, "dataset": {**record["dataset"], "sha256": "f00"}})
    try:
        with pytest.raises(export.ExportError, match="data differs"):
            export.export_run(run_dir)
    finally:
        records.write_record(run_dir, record)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_what_an_export_killed_between_its_renames_left_is_put_back_then_cleaned(
    tmp_path, monkeypatch
):
    run_dir = fake_run(tmp_path, n=1, failed=0)
    best = run_dir / export.BEST_DIR
    # The two-rename way, killed between them: the previous export set aside, the new one
    # complete beside it, no best/.
    killed = f"{swap.HOST}-{dead_pid()}-abcdef-000000"
    aside = run_dir / f".best.{killed}.old"
    aside.mkdir()
    (aside / "config.json").write_text('{"previous": true}')
    partial = run_dir / f".best.{killed}.partial"
    partial.mkdir()
    (partial / "model.keras").write_bytes(b"cut short")

    def stop(config):
        raise export.ExportError("stopped after its first step")

    monkeypatch.setattr(export.spaces, "of_run", stop)
    with pytest.raises(export.ExportError, match="stopped"):
        export.export_run(run_dir)
    assert json.loads((best / "config.json").read_text()) == {"previous": True}
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".best.")]


def test_a_refined_release_ships_its_averaged_weights_and_says_how(
    run_dir, few_retrain_images, monkeypatch
):
    from bench.release import reference
    from bench.train import distort, pipeline

    given = []
    training_set = pipeline.training_set

    def noted(images, labels, batch_size, seed, distortion=None):
        given.append(distortion)
        return training_set(images, labels, batch_size, seed, distortion)

    monkeypatch.setattr(pipeline, "training_set", noted)
    recipe = Recipe(retrain=True, epochs=1, clean_epochs=1, ema=0.99, elastic=34.0)
    out = export.export_run(run_dir, recipe)
    # The fit trains on distorted digits; the clean epoch on the digits as they are.
    assert given == [distort.Elastic(34.0, distort.SIMARD_SIGMA), None]
    shipped = json.loads((out / "config.json").read_text())
    assert (shipped["training"]["ema"], shipped["training"]["elastic"]) == (0.99, 34.0)
    card = (out / "model_card.md").read_text()
    assert "exponential moving average of the training's weights (momentum 0.99)" in card
    assert "distorted elastically (alpha 34 pixels, sigma 4" in card
    assert keras.saving.load_model(out / "model.keras").optimizer.use_ema
    # A release of another recipe is never the reference of this one, nor its backup.
    (record,) = records.load_records(run_dir)
    config = records.load_config(run_dir)
    plain = reference.recipe_key(config, record, {"epochs": 1, "clean_epochs": 1})
    assert reference.recipe_key(config, record, shipped["training"]) == {
        **plain,
        "ema": 0.99,
        "elastic": 34.0,
    }
    assert export.release_key(record, config, recipe, 1) != export.release_key(
        record, config, Recipe(True, 1, recipe.seed, 1), 1
    )


def test_overrides_take_the_kind_of_the_value_they_replace():
    record = {"trial_id": "7", "hyperparameters": {"filters": 16, "rate": 1e-3, "bn": True}}
    record["hyperparameters"]["head"] = "gap"
    given = (("filters", "8"), ("rate", "3e-3"), ("bn", "False"), ("head", "flatten"))
    values = export.with_overrides(record, given)["hyperparameters"]
    assert values == {"filters": 8, "rate": 3e-3, "bn": False, "head": "flatten"}
    assert record["hyperparameters"]["filters"] == 16  # the trial's record is left as it was
    for wrong, refusal in [
        (("filters", "8.5"), "--set filters=8.5: filters is a whole number"),
        (("rate", "fast"), "--set rate=fast: rate is a number"),
        (("bn", "yes"), "--set bn=yes: bn is true or false"),
        (("units", "8"), r"--set units: trial 7 has no such hyperparameter \(it has bn, filt"),
    ]:
        with pytest.raises(export.ExportError, match=refusal):
            export.with_overrides(record, (wrong,))
