"""The search: test metrics, records of completed and failed trials, progress, run folders."""

import io
import json
import os
import types

import keras
import keras_tuner as kt
import numpy as np
import pytest

import search_spaces
from bench.core import environment, metrics, records
from bench.core.config import ConfigError, SearchConfig
from bench.search import recorder, tuning
from bench.search.progress import Progress

TINY = dict(train_limit=256, val_size=128, test_limit=128, max_epochs=1, batch_size=64)


def tiny_config(tmp_path, **overrides) -> SearchConfig:
    settings = dict(run="t", space="seed", tuner="random", max_trials=1, results=str(tmp_path))
    return SearchConfig(**{**settings, **TINY, **overrides}).validate()


def test_test_metrics_agree_with_keras():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), size=50).astype("float32")
    labels = rng.integers(0, 10, size=50)
    accuracy, loss = metrics.test_metrics(probs, labels)
    assert accuracy == pytest.approx(np.mean(probs.argmax(1) == labels))
    expected = keras.losses.SparseCategoricalCrossentropy()(labels, probs)
    assert loss == pytest.approx(float(expected), rel=1e-5)


def test_best_epoch_is_the_first_maximum():
    assert recorder.best_epoch_index({"val_accuracy": [0.5, 0.9, 0.9, 0.7]}) == 1


def test_trial_values_split_hyperparameters_from_tuner_state():
    hp = kt.HyperParameters()
    hp.values = {"conv_blocks": 1, "tuner/epochs": 3, "tuner/initial_epoch": 1}
    search_spaces.get("cnn").build(hp)
    values = recorder.trial_values(hp)
    assert values["tuner_state"] == {"epochs": 3, "initial_epoch": 1}
    assert values["initial_epoch"] == 1
    assert "filters_0" in values["hyperparameters"]
    assert "filters_1" not in values["hyperparameters"]  # inactive for one block
    assert not any(k.startswith("tuner/") for k in values["hyperparameters"])


def test_progress_line_counts_and_tracks_the_best():
    out = io.StringIO()
    progress = Progress(total=4, stream=out)
    progress.resume_from([{"status": "completed", "val_accuracy": 0.9, "trial_id": "00"}])
    record = {"status": "completed", "val_accuracy": 0.95, "test_accuracy": 0.94, "trial_id": "01"}
    progress.update(record)
    failed = {"status": "failed", "error": "ValueError: boom", "trial_id": "02"}
    progress.update(failed)
    first, second = out.getvalue().splitlines()
    assert first.startswith("trial 2/4 [01]") and "eta" in first and "0:" in first
    assert "val 0.9500 test 0.9400" in first and "best val 0.9500 (trial 01)" in first
    assert second.startswith("trial 3/4 [02]") and "FAILED: ValueError: boom" in second


def test_seed_zero_really_seeds_the_oracle(tmp_path):
    tuner = tuning.make_tuner(tiny_config(tmp_path, seed=0, space="cnn"))
    assert tuner.oracle.seed == 0 + tuning.ORACLE_SEED_OFFSET
    other = tuning.make_tuner(tiny_config(tmp_path, run="u", seed=1, space="cnn"))
    assert other.oracle.seed != tuner.oracle.seed


def test_run_dir_config_is_written_then_checked_on_resume(tmp_path):
    config = tiny_config(tmp_path)
    splits = tuning.load_splits(config)
    assert tuning.prepare_run_dir(config, splits) is False
    written = json.loads((config.run_dir / records.CONFIG_FILE).read_text())
    assert written["space"] == "seed" and written["dataset_sha256"] == splits.sha256
    assert tuning.prepare_run_dir(config, splits) is True
    changed = tiny_config(tmp_path, tuner="grid")
    with pytest.raises(ConfigError, match="different tuner"):
        tuning.prepare_run_dir(changed, splits)
    assert json.loads((config.run_dir / records.CONFIG_FILE).read_text()) == written


def test_a_run_folder_with_work_but_no_config_is_refused_as_it_is(tmp_path):
    config = tiny_config(tmp_path)
    splits = tuning.load_splits(config)
    tuning.prepare_run_dir(config, splits)
    (config.run_dir / records.CONFIG_FILE).unlink()
    record = config.run_dir / records.TRIALS_DIR / "00.json"
    record.parent.mkdir()
    record.write_text("{}")
    other = tiny_config(tmp_path, train_limit=999)
    with pytest.raises(ConfigError, match=r"config.json is missing, yet .* trials/.*--fresh"):
        tuning.prepare_run_dir(other, splits)
    assert not (config.run_dir / records.CONFIG_FILE).exists()  # nothing written in its place


def test_an_unreadable_config_names_the_file_and_the_way_out(tmp_path):
    config = tiny_config(tmp_path)
    splits = tuning.load_splits(config)
    tuning.prepare_run_dir(config, splits)
    path = config.run_dir / records.CONFIG_FILE
    path.write_text('{"space": "se')
    with pytest.raises(ConfigError, match=r"config.json is unreadable \(JSONDecodeError.*--fresh"):
        tuning.prepare_run_dir(config, splits)
    assert path.read_text() == '{"space": "se'


def test_each_new_environment_of_a_run_is_noted_once(tmp_path, monkeypatch):
    config = tiny_config(tmp_path)
    splits = tuning.load_splits(config)
    tuning.prepare_run_dir(config, splits)
    tuning.prepare_run_dir(config, splits)  # resumed where it began: nothing new
    (first,) = records.load_environments(config.run_dir)
    assert first["cpu_count"] == os.cpu_count() and first["keras"] == keras.__version__
    upgraded = {**environment.environment(), "tensorflow": "9.9.9"}
    monkeypatch.setattr(environment, "environment", lambda: upgraded)
    tuning.prepare_run_dir(config, splits)
    seen = records.load_environments(config.run_dir)
    assert [e["tensorflow"] for e in seen] == [first["tensorflow"], "9.9.9"]


def test_a_run_from_before_a_new_setting_resumes_at_its_default(tmp_path):
    config = tiny_config(tmp_path)
    splits = tuning.load_splits(config)
    tuning.prepare_run_dir(config, splits)
    path = config.run_dir / records.CONFIG_FILE
    older = json.loads(path.read_text())
    del older["mixed_precision"]  # written before the flag existed
    path.write_text(json.dumps(older))
    assert tuning.prepare_run_dir(config, splits) is True
    with pytest.raises(ConfigError, match="different mixed_precision"):
        tuning.prepare_run_dir(tiny_config(tmp_path, mixed_precision=True), splits)


def test_a_search_records_each_trial_with_test_metrics(tmp_path):
    config = tiny_config(tmp_path)
    out = io.StringIO()
    tuning.run_search(config, stream=out)
    (record,) = records.load_records(config.run_dir)
    records.validate_record(record)
    assert record["status"] == "completed" and record["space"] == "seed"
    assert record["architecture"] == "seed baseline"  # the space's own label
    assert record["epochs_run"] == 1 and record["best_epoch"] == 1
    assert record["val_accuracy"] == record["history"]["val_accuracy"][0]
    assert record["dataset"]["test"] == TINY["test_limit"]
    assert record["versions"]["keras"] == keras.__version__
    preds = records.load_predictions(config.run_dir, record)
    assert len(preds["y_pred"]) == TINY["test_limit"]
    assert record["test_accuracy"] == pytest.approx(np.mean(preds["y_pred"] == preds["y_true"]))
    assert "trial 1/1" in out.getvalue()
    cost = record["inference"]
    assert record["schema"] == records.SCHEMA_VERSION == 2
    assert cost["latency_ms"] > 0 and cost["images_per_second"] > 0 and cost["threads"] >= 1
    # seed: conv 3x3x32 and 3x3x64, dense 128 and 10 (search_spaces/seed.py) set the FLOPs
    assert cost["flops"] > 2 * record["params"] and cost["bytes"] > 4 * record["params"]
    assert cost["beside_training"] is False


def test_a_failed_inference_measurement_keeps_the_trial(tmp_path, monkeypatch):
    from bench.train import served

    def no_timing(model):
        raise RuntimeError("no clock")

    monkeypatch.setattr(served, "cost", no_timing)
    config = tiny_config(tmp_path)
    tuning.run_search(config, stream=io.StringIO())
    (record,) = records.load_records(config.run_dir)
    assert record["status"] == "completed"
    assert record["inference"] == {"error": "RuntimeError: no clock"}


def test_a_fashion_mnist_run_trains_on_it_and_reports_its_class_names(tmp_path):
    from bench.core import data
    from bench.report import writer

    config = tiny_config(tmp_path, dataset="fashion_mnist")
    tuning.run_search(config, stream=io.StringIO())
    (record,) = records.load_records(config.run_dir)
    fashion = data.load_raw(dataset="fashion_mnist")
    assert record["dataset"]["name"] == "fashion_mnist"
    assert record["dataset"]["sha256"] == fashion.sha256
    preds = records.load_predictions(config.run_dir, record)
    assert np.array_equal(preds["y_true"], fashion.y_test[: TINY["test_limit"]])
    from bench.release import export
    from bench.search import confirm

    # confirm and export read the run's own dataset back, checked by its SHA256.
    (again,) = confirm.confirm_run(config.run_dir, top=1, seeds=1, stream=io.StringIO())
    assert again["trial_id"] == record["trial_id"]
    best = export.export_run(config.run_dir)
    shipped = json.loads((best / "config.json").read_text())
    assert shipped["dataset"]["name"] == "fashion_mnist"
    card = (best / "model_card.md").read_text()
    assert card.startswith("# Model card: Fashion-MNIST classifier")
    assert "Zalando" in card and "MNIST handwritten digits" not in card
    writer.write_report([config.run_dir], tmp_path / "out")
    text = (tmp_path / "out" / writer.REPORT_MD).read_text()
    assert "| 1 | Trouser |" in text and "## Confirmed with repeated seeds" in text
    with pytest.raises(ConfigError, match="different dataset"):
        tuning.prepare_run_dir(tiny_config(tmp_path), tuning.load_splits(tiny_config(tmp_path)))


def _hparams_logged(folder) -> dict:
    """The hyperparameters TensorBoard's HParams plugin finds in a trial's log folder."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2

    found = {}
    for path in folder.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data
                if plugin.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
                    for name, logged in data.session_start_info.hparams.items():
                        found[name] = logged.WhichOneof("kind") and getattr(
                            logged, logged.WhichOneof("kind")
                        )
    return found


def test_tensorboard_logs_each_trial_with_its_hyperparameters(tmp_path):
    config = tiny_config(tmp_path, space="tiny", max_trials=2, tensorboard=True)
    tuning.run_search(config, stream=io.StringIO())
    saved = records.load_records(config.run_dir)
    assert len(saved) == 2
    for record in saved:
        folder = config.run_dir / records.TENSORBOARD_DIR / record["trial_id"]
        assert list(folder.rglob("train/events.out.tfevents.*"))  # the loss curves
        logged = _hparams_logged(folder)
        assert logged == pytest.approx(record["hyperparameters"])


class BreaksOffDefaults:
    """A space whose default model builds (as checked before a search) but no tuned one does."""

    def __init__(self, exc: Exception):
        self.exc = exc

    def __call__(self, hp):
        if hp.Float("x", 0.0, 1.0, default=0.0) != 0.0:
            raise self.exc
        return search_spaces.get("seed").build(hp)


def test_failed_trials_are_recorded_and_too_many_stop_the_run(tmp_path, monkeypatch):
    build = BreaksOffDefaults(ValueError("this space cannot build\nsecond line"))
    broken = types.SimpleNamespace(build=build, FIT_DEFAULTS={}, DESCRIPTION="broken")
    monkeypatch.setitem(search_spaces.SPACES, "broken", broken)
    config = tiny_config(tmp_path, space="broken", max_trials=5, max_failures=3)
    with pytest.raises(tuning.SearchError, match="3 trials in a row failed"):
        tuning.run_search(config, stream=io.StringIO())
    first, *failed = records.load_records(config.run_dir)
    assert first["status"] == "completed"  # the first trial tries the defaults, which build
    assert len(failed) == 3
    assert {r["status"] for r in failed} == {"failed"}
    assert failed[0]["error"] == "ValueError: this space cannot build"
    assert "Traceback" in failed[0]["traceback"]


def test_an_out_of_memory_trial_is_recorded_as_failed_and_the_search_goes_on(tmp_path, monkeypatch):
    import tensorflow as tf

    oom = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    space = types.SimpleNamespace(build=BreaksOffDefaults(oom), FIT_DEFAULTS={}, DESCRIPTION="x")
    monkeypatch.setitem(search_spaces.SPACES, "oom", space)
    config = tiny_config(tmp_path, space="oom", max_trials=3)
    tuning.run_search(config, stream=io.StringIO())
    _defaults, *failed = records.load_records(config.run_dir)
    assert len(failed) == 2  # the first failure did not end the search
    assert failed[0]["error"] == "ResourceExhaustedError: OOM when allocating tensor"


def test_hyperband_runs_its_planned_schedule(tmp_path):
    config = tiny_config(tmp_path, space="cnn", tuner="hyperband", max_epochs=2, max_trials=None)
    planned = tuning.planned_trials(config)
    assert planned == 2  # one bracket of ceil(1 + log3(2)) trials
    config = tiny_config(
        tmp_path, run="hb", space="tiny", tuner="hyperband", max_epochs=2, max_trials=None
    )
    tuning.run_search(config, stream=io.StringIO())
    done = records.load_records(config.run_dir)
    assert len(done) == planned
    assert all(r["tuner_state"]["epochs"] == 2 for r in done)


def test_a_new_run_tries_the_best_configurations_of_earlier_runs_after_the_defaults(tmp_path):
    tiny = dict(space="tiny", max_trials=3)
    tuning.run_search(tiny_config(tmp_path, run="a", **tiny), stream=io.StringIO())
    earlier = records.ranked_by_validation(records.load_records(tmp_path / "a"))
    config = tiny_config(tmp_path, run="b", **tiny)
    tuning.run_search(config, stream=io.StringIO())
    warm = records.load_config(config.run_dir)[tuning.WARM_START_KEY]
    assert [w["trial_id"] for w in warm] == [r["trial_id"] for r in earlier]  # by validation
    done = records.load_records(config.run_dir)
    first = records.load_records(tmp_path / "a")[0]
    assert done[0]["hyperparameters"] == first["hyperparameters"]  # the defaults, first
    # Then the earlier run's best that are not the defaults, in their order.
    others = [
        w["hyperparameters"] for w in warm if w["hyperparameters"] != first["hyperparameters"]
    ]
    assert [r["hyperparameters"] for r in done[1:]] == others[:2]
    # Without warm starts, none is planned: the config, written before the first trial, says so.
    cold = tiny_config(tmp_path, run="c", warm_start=False, space="tiny", max_trials=1)
    tuning.run_search(cold, stream=io.StringIO())
    assert records.load_config(cold.run_dir)[tuning.WARM_START_KEY] == []
