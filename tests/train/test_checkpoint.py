"""A cut-off trial goes on from its last finished epoch, with its callbacks' state."""

import errno
import io
import json
import stat

import keras
import keras_tuner as kt
import numpy as np
import pytest
from keras_tuner.src.engine import tuner_utils

from bench.core import records, swap
from bench.core.config import SearchConfig
from bench.errors import DiskFull
from bench.search import tuning
from bench.train import checkpoint

VALUES = {"units": 8, "tuner/epochs": 4}


def tiny_data():
    rng = np.random.default_rng(0)
    x = rng.random((64, 6), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    return x, y


def tiny_model():
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def fit(folder, epochs, values=VALUES, patience=10):
    """Fit a fresh tiny model with the callbacks a trial has; returns (model, callbacks...)."""
    keras.utils.set_random_seed(1)
    model = tiny_model()
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=patience)
    objective = kt.Objective("val_accuracy", direction="max")
    best = tuner_utils.SaveBestEpoch(objective, str(folder / "best.weights.h5"))
    backup = checkpoint.EpochBackup(folder / "backup", values, [stop, best])
    x, y = tiny_data()
    history = model.fit(
        x,
        y,
        validation_data=(x, y),
        epochs=epochs,
        batch_size=16,
        verbose=0,
        callbacks=[stop, best, backup],
    )
    return model, history, stop, best, backup


def state(folder):
    return json.loads((folder / "backup" / checkpoint.STATE_FILE).read_text())


def test_each_epoch_leaves_one_weights_file_and_a_state_naming_it(tmp_path):
    model, history, stop, best, _ = fit(tmp_path, epochs=3)
    saved = state(tmp_path)
    assert saved["epoch"] == 3 and saved["epochs"] == [0, 1, 2]
    assert saved["history"]["val_accuracy"] == pytest.approx(history.history["val_accuracy"])
    assert saved["early_stopping"]["best"] == pytest.approx(stop.best)
    assert saved["best_value"] == pytest.approx(best.best_value)
    files = sorted(p.name for p in (tmp_path / "backup").iterdir())
    assert files == ["epoch-3.weights.h5", checkpoint.STATE_FILE]
    for name in files:  # the mode of every result (the umask is the tests' own)
        assert stat.S_IMODE((tmp_path / "backup" / name).stat().st_mode) == swap.file_mode()


def test_a_rerun_goes_on_from_the_saved_epoch_with_weights_optimizer_and_callback_state(tmp_path):
    first, first_history, first_stop, first_best, _ = fit(tmp_path, epochs=2)
    weights = [w.copy() for w in first.get_weights()]
    steps = int(first.optimizer.iterations.numpy())

    restored = {}

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            restored.setdefault("first_epoch", epoch)
            restored.setdefault("weights", [w.copy() for w in self.model.get_weights()])
            restored.setdefault("steps", int(self.model.optimizer.iterations.numpy()))

    original_fit = keras.Model.fit

    def fit_with_spy(self, *args, callbacks=(), **kwargs):
        return original_fit(self, *args, callbacks=[*callbacks, Spy()], **kwargs)

    keras.Model.fit = fit_with_spy
    try:
        _, history, stop, best, backup = fit(tmp_path, epochs=4)
    finally:
        keras.Model.fit = original_fit
    assert backup.resumed_at == 2
    assert restored["first_epoch"] == 2
    assert restored["steps"] == steps  # the optimizer's slots and step count came back
    for got, want in zip(restored["weights"], weights, strict=True):
        np.testing.assert_array_equal(got, want)
    # The returned history covers the whole trial: two saved epochs, then two new ones.
    assert history.epoch == [0, 1, 2, 3]
    assert history.history["val_accuracy"][:2] == pytest.approx(
        first_history.history["val_accuracy"]
    )
    assert len(history.history["loss"]) == 4
    assert best.best_value >= first_best.best_value
    assert stop.best >= first_stop.best


def test_a_trial_that_had_stopped_early_trains_no_further(tmp_path):
    fit(tmp_path, epochs=30, patience=0)
    saved = state(tmp_path)
    assert saved["stopped"] and saved["epoch"] < 30
    _, history, _, _, backup = fit(tmp_path, epochs=30, patience=0)
    assert backup.resumed_at == saved["epoch"]
    assert history.epoch == saved["epochs"]


def test_a_backup_of_other_hyperparameters_is_not_restored(tmp_path):
    fit(tmp_path, epochs=2)
    _, history, _, _, backup = fit(tmp_path, epochs=3, values={**VALUES, "units": 16})
    assert backup.resumed_at is None
    assert history.epoch == [0, 1, 2]


def test_a_damaged_backup_is_discarded_and_the_trial_starts_over_from_fresh_weights(
    tmp_path, capsys
):
    fit(tmp_path, epochs=2)
    weights = tmp_path / "backup" / state(tmp_path)["weights"]
    weights.write_bytes(weights.read_bytes()[:300])  # a disk error cut it short
    model, history, _, _, backup = fit(tmp_path, epochs=3)
    assert backup.resumed_at is None and history.epoch == [0, 1, 2]
    assert f"epoch backup {weights} is damaged" in capsys.readouterr().out
    # Trained from the weights it was built with: the same as a fit that never had a backup.
    (tmp_path / "other").mkdir()
    fresh, _, _, _, _ = fit(tmp_path / "other", epochs=3)
    for mine, theirs in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    assert state(tmp_path)["epoch"] == 3  # and backed up anew


STATE = {
    "values": VALUES,
    "epoch": 2,
    "weights": "epoch-2.weights.h5",
    "stopped": False,
    "epochs": [0, 1],
    "history": {},
}


@pytest.mark.parametrize(
    "text, reason",
    [
        (json.dumps(STATE)[:40], "not valid JSON"),
        (json.dumps({k: v for k, v in STATE.items() if k != "epoch"}), "missing key epoch"),
        (json.dumps({**STATE, "weights": "epoch-9.weights.h5"}), "names epoch-9.weights.h5"),
    ],
)
def test_a_damaged_backup_state_is_named_in_one_line_and_discarded(tmp_path, capsys, text, reason):
    folder = tmp_path / "backup"
    folder.mkdir()
    (folder / "epoch-2.weights.h5").write_bytes(b"weights")
    (folder / checkpoint.STATE_FILE).write_text(text)
    backup = checkpoint.EpochBackup(folder, VALUES)
    assert backup.load_state() is None and backup.load_state() is None
    (line,) = capsys.readouterr().out.splitlines()  # one line, however often it is asked
    path = folder / checkpoint.STATE_FILE
    assert line.startswith(f"epoch backup {path} is damaged ({reason}")
    assert line.endswith("discarded, the trial starts again from its first epoch")
    assert not folder.exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / checkpoint.STATE_FILE).write_text(json.dumps({**STATE, "values": {"units": 16}}))
    assert checkpoint.EpochBackup(other, VALUES).load_state() is None  # not damaged: another's
    assert capsys.readouterr().out == "" and other.exists()


def test_a_backup_the_disk_has_no_room_for_stops_the_fit_as_a_full_disk(tmp_path, monkeypatch):
    fit(tmp_path, epochs=1)

    save = keras.Model.save_weights

    def no_room(self, path, overwrite=True):  # for the backup; the best-epoch file fits
        if "backup" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return save(self, path, overwrite=overwrite)

    monkeypatch.setattr(keras.Model, "save_weights", no_room)
    with pytest.raises(DiskFull, match="the disk is full: .*epoch-2.weights.h5"):
        fit(tmp_path, epochs=3)
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == [
        "epoch-1.weights.h5",
        checkpoint.STATE_FILE,
    ]  # the last good backup, and nothing half-written beside it


class Cut(BaseException):
    """Stands for a kill: nothing after it runs."""


def small_run(tmp_path, **settings) -> SearchConfig:
    """A random search on 256 training images."""
    sizes = dict(train_limit=256, val_size=128, test_limit=128, batch_size=64)
    return SearchConfig(tuner="random", results=str(tmp_path), **sizes, **settings).validate()


def test_a_search_cut_in_a_trial_resumes_it_at_the_next_epoch(tmp_path, monkeypatch):
    config = small_run(tmp_path, run="cut", space="seed", max_trials=1, max_epochs=4, patience=10)
    save_epoch = checkpoint.EpochBackup.on_epoch_end
    trained = []

    def cut_after_two(self, epoch, logs=None):
        save_epoch(self, epoch, logs)
        trained.append(epoch)
        if epoch == 1:
            raise Cut

    monkeypatch.setattr(checkpoint.EpochBackup, "on_epoch_end", cut_after_two)
    with pytest.raises(Cut):
        tuning.run_search(config, stream=io.StringIO())
    assert records.load_records(config.run_dir) == []
    assert checkpoint.backup_dir(config.run_dir, "0").is_dir()

    def count(self, epoch, logs=None):
        save_epoch(self, epoch, logs)
        trained.append(epoch)

    monkeypatch.setattr(checkpoint.EpochBackup, "on_epoch_end", count)
    tuning.run_search(config, stream=io.StringIO())
    assert trained == [0, 1, 2, 3]  # epochs 0-1 before the cut, 2-3 after it, none twice
    (record,) = records.load_records(config.run_dir)
    assert record["status"] == "completed" and record["resumed_at_epoch"] == 2
    assert record["epochs_run"] == 4 and len(record["history"]["val_accuracy"]) == 4
    assert record["best_epoch"] == int(np.argmax(record["history"]["val_accuracy"])) + 1
    assert not checkpoint.backup_dir(config.run_dir, "0").exists()


def test_a_trial_whose_creation_a_kill_cut_short_is_drawn_again_on_resume(tmp_path, monkeypatch):
    """KerasTuner writes a new trial's trial.json, then oracle.json: a kill between the two
    left a trial that counted towards max_trials but never ran (the run ended a trial short)."""
    config = small_run(tmp_path, run="half", space="tiny", max_trials=3, max_epochs=1)
    save_oracle = kt.Oracle.save

    def cut_before_committing_the_second_trial(self):
        if len(self.trials) == 2 and len(self.start_order) == 2:  # inside create_trial
            raise Cut
        save_oracle(self)

    monkeypatch.setattr(kt.Oracle, "save", cut_before_committing_the_second_trial)
    with pytest.raises(Cut):
        tuning.run_search(config, stream=io.StringIO())
    assert len(records.load_records(config.run_dir)) == 1
    monkeypatch.setattr(kt.Oracle, "save", save_oracle)
    out = io.StringIO()
    assert tuning.run_search(config, stream=out)
    done = records.load_records(config.run_dir)
    assert sorted(r["trial_id"] for r in done) == ["0", "1", "2"], out.getvalue()
    assert {r["status"] for r in done} == {"completed"}
