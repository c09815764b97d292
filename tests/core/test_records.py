"""Trial records: schema, atomic writes, predictions, order and the best-by-validation pick."""

import errno
import io
import json
import os
import pickle
import stat

import numpy as np
import pytest

from bench.core import records
from tests.factories import fake_record


def test_a_record_missing_a_key_is_refused(tmp_path):
    record = fake_record()
    del record["test_loss"]
    with pytest.raises(ValueError, match="test_loss"):
        records.write_record(tmp_path, record)
    assert not records.trials_dir(tmp_path).exists() or not any(
        records.trials_dir(tmp_path).iterdir()
    )


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"status": "done"}, "status"),
        ({"status": "failed", "error": None}, "must say why"),
        ({"test_accuracy": None}, "test_accuracy"),
    ],
)
def test_inconsistent_records_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        records.validate_record({**fake_record(), **changes})


def test_write_then_load_round_trips_numpy_values(tmp_path):
    record = fake_record(trial_id="07")
    record["val_accuracy"] = np.float32(0.5)
    record["params"] = np.int64(1234)
    records.write_record(tmp_path, record)
    (loaded,) = records.load_records(tmp_path)
    assert loaded["val_accuracy"] == 0.5 and loaded["params"] == 1234
    assert [p.name for p in records.trials_dir(tmp_path).iterdir()] == ["07.json"]


def test_atomic_write_replaces_whole_files_with_a_readable_mode(tmp_path):
    path = tmp_path / "sub" / "x.txt"
    records.atomic_write_text(path, "old")
    records.atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert os.listdir(path.parent) == ["x.txt"]  # no temporary file left
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "x.json"
    records.atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        records.atomic_write_json(path, {"a": object()})
    assert path.read_text().strip() == '{\n  "a": 1\n}'
    assert os.listdir(tmp_path) == ["x.json"]


def test_predictions_round_trip(tmp_path):
    probs = np.random.default_rng(0).dirichlet(np.ones(10), size=20)
    labels = np.arange(20) % 10
    name = records.write_predictions(tmp_path, "03", labels, probs)
    loaded = records.load_predictions(tmp_path, {"predictions": name})
    np.testing.assert_array_equal(loaded["y_true"], labels)
    np.testing.assert_array_equal(loaded["y_pred"], probs.argmax(1))
    np.testing.assert_allclose(loaded["probs"], probs, atol=1e-3)
    assert records.load_predictions(tmp_path, {"predictions": None}) is None


def test_records_load_in_start_order(tmp_path):
    for trial_id, started in (("b", "2024-01-01T00:02:00"), ("a", "2024-01-01T00:05:00")):
        records.write_record(tmp_path, fake_record(trial_id=trial_id, started_at=started))
    assert [r["trial_id"] for r in records.load_records(tmp_path)] == ["b", "a"]


def test_best_by_validation_ignores_test_and_breaks_ties_by_loss():
    low_loss = fake_record(trial_id="1", val_accuracy=0.99, val_loss=0.02, test_accuracy=0.90)
    high_loss = fake_record(trial_id="2", val_accuracy=0.99, val_loss=0.05, test_accuracy=0.999)
    worse = fake_record(trial_id="3", val_accuracy=0.98, val_loss=0.01, test_accuracy=0.999)
    failed = fake_record(trial_id="4", status="failed")
    best = records.best_by_validation([high_loss, worse, failed, low_loss])
    assert best["trial_id"] == "1"
    assert records.best_by_validation([failed]) is None


def damage(path) -> str:
    """Cut a file in half, as a write that the disk cut short would; returns its path."""
    path.write_text(path.read_text()[: len(path.read_text()) // 2])
    return str(path)


def test_a_damaged_record_is_named_with_what_to_do_or_left_out_when_asked(tmp_path):
    for trial_id in ("00", "01", "02"):
        records.write_record(tmp_path, fake_record(trial_id=trial_id))
    broken = damage(records.trials_dir(tmp_path) / "01.json")
    with pytest.raises(records.DamagedFile, match=f"{broken} is damaged .*--fresh"):
        records.load_records(tmp_path)
    damaged = []
    assert [r["trial_id"] for r in records.load_records(tmp_path, damaged)] == ["00", "02"]
    assert len(damaged) == 1 and broken in damaged[0]
    (records.trials_dir(tmp_path) / "01.json").write_text('["not", "a", "record"]')
    with pytest.raises(records.DamagedFile, match=r"01.json is damaged \(not a JSON object\)"):
        records.load_records(tmp_path)
    (records.trials_dir(tmp_path) / "01.json").write_text('{"trial_id": "01"}')
    with pytest.raises(records.DamagedFile, match=r"01.json is damaged \(missing key status\)"):
        records.load_records(tmp_path)


def npz_damages(path) -> dict:
    """What a predictions file may have turned into, by what the reader must say of it."""
    good = path.read_bytes()
    no_probs = io.BytesIO()
    np.savez(no_probs, y_true=np.zeros(3), y_pred=np.zeros(3))
    return {
        "not a valid .npz": [
            os.urandom(4096),  # random bytes: numpy's own advice would be to unpickle them
            pickle.dumps({"y_true": [1]}),
            good[: len(good) // 2],
            b"",
        ],
        "missing key probs": [no_probs.getvalue()],
    }


def test_a_damaged_predictions_file_is_named_with_our_reason_never_numpys(tmp_path):
    probs = np.random.default_rng(0).dirichlet(np.ones(10), size=20)
    name = records.write_predictions(tmp_path, "03", np.arange(20) % 10, probs)
    path = records.trials_dir(tmp_path) / name
    for reason, contents in npz_damages(path).items():
        for data in contents:
            path.write_bytes(data)
            with pytest.raises(records.DamagedFile) as caught:
                records.load_predictions(tmp_path, {"predictions": name})
            message = str(caught.value)
            assert message.startswith(f"{path} is damaged ({reason}); ")
            assert "pickle" not in message
    path.unlink()
    with pytest.raises(records.DamagedFile, match=f"{path} cannot be read"):
        records.load_predictions(tmp_path, {"predictions": name})


def test_a_damaged_confirmation_record_says_it_will_be_trained_again(tmp_path):
    folder = records.confirm_dir(tmp_path)
    folder.mkdir()
    records.atomic_write_json(folder / "00-seed1001.json", {"trial_id": "00", "seed": 1001})
    broken = damage(folder / "00-seed1001.json")
    with pytest.raises(records.DamagedFile, match=f"{broken} is damaged .*trains that seed"):
        records.load_confirmed(tmp_path)
    damaged = []
    assert records.load_confirmed(tmp_path, damaged) == [] and broken in damaged[0]


def test_a_write_the_disk_has_no_room_for_is_a_disk_full_naming_it(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    records.atomic_write_json(path, {"kept": True})

    def no_room(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(records.os, "fsync", no_room)
    with pytest.raises(records.DiskFull, match=f"the disk is full: {path} cannot be written"):
        records.atomic_write_json(path, {"kept": False})
    assert json.loads(path.read_text()) == {"kept": True}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left


def test_room_is_checked_before_writing_with_a_margin(tmp_path, monkeypatch):
    real = records.shutil.disk_usage
    free = records.DISK_MARGIN_BYTES + 1000
    monkeypatch.setattr(records.shutil, "disk_usage", lambda p: real(p)._replace(free=free))
    records.ensure_room(tmp_path / "new" / "folder", 999)
    with pytest.raises(records.DiskFull, match="MB free"):
        records.atomic_write_bytes(tmp_path / "big.bin", b"x" * 1001)
    assert not (tmp_path / "big.bin").exists()
