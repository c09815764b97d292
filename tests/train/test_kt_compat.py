"""The KerasTuner compatibility layer: explicit, idempotent, version-checked, used by every
entry point that runs KerasTuner."""

import io
import json

import keras_tuner
import pytest
from keras_tuner.src import utils as kt_utils
from keras_tuner.src.distribute import oracle_client

from bench.core.config import SearchConfig
from bench.errors import UnsupportedKerasTuner
from bench.release import export
from bench.search import confirm, tuning
from bench.train import kt_compat


def test_install_swaps_in_an_atomic_json_writer_once(tmp_path):
    kt_compat.install()
    kt_compat.install()
    assert kt_utils.save_json is kt_compat.atomic_save_json
    assert oracle_client.TIMEOUT == kt_compat.RPC_TIMEOUT_S
    path = tmp_path / "oracle.json"
    assert kt_utils.save_json(path, {"a": 1}) == '{"a": 1}'
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["oracle.json"]  # no temporary file left


def test_the_installed_keras_tuner_is_a_known_version():
    kt_compat.check_version(keras_tuner.__version__)


@pytest.mark.parametrize("version", ["1.4.6", "1.5.0", "2.0.0", "unknown", ""])
def test_an_unknown_keras_tuner_is_refused_naming_what_is_known(version):
    with pytest.raises(UnsupportedKerasTuner, match=r"keras-tuner>=1\.4\.7,<1\.5\.0"):
        kt_compat.check_version(version)


class Installed(Exception):
    """Raised by the patched install(): the entry point called it before anything else."""


def _refuse(*args, **kwargs):
    raise Installed


@pytest.mark.parametrize(
    "entry",
    [
        lambda config: tuning.run_search(config, stream=io.StringIO()),
        tuning.serve_chief,
        lambda config: tuning.run_worker(config, stream=io.StringIO()),
        lambda config: confirm.confirm_run(config.run_dir, 1, 1, stream=io.StringIO()),
        lambda config: export.export_run(config.run_dir),
    ],
    ids=["run_search", "serve_chief", "run_worker", "confirm_run", "export_run"],
)
def test_every_entry_point_that_runs_keras_tuner_installs_first(entry, tmp_path, monkeypatch):
    monkeypatch.setattr(kt_compat, "install", _refuse)
    config = SearchConfig(run="x", space="tiny", results=str(tmp_path))
    with pytest.raises(Installed):
        entry(config)
    assert list(tmp_path.iterdir()) == []  # nothing was done before it


def test_trial_checkpoint_is_where_the_tuner_keeps_it(tmp_path):
    tuner = keras_tuner.RandomSearch(
        lambda hp: None,
        objective="val_accuracy",
        max_trials=1,
        directory=str(tmp_path),
        project_name="tuner",
    )
    expected = kt_compat.trial_checkpoint(tmp_path / "tuner", "07")
    assert kt_compat.checkpoint_of(tuner, "07") == str(expected)
