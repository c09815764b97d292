"""The model as served, saved atomically with the mode of every result."""

import os
import stat

import keras
import pytest

from bench.train import served


@pytest.fixture
def team_umask():
    umask = os.umask(0o022)
    yield
    os.umask(umask)


def small_model() -> keras.Model:
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))


def test_a_saved_model_is_readable_by_the_team_and_leaves_no_temporary_file(tmp_path, team_umask):
    path = tmp_path / "00-seed1.keras"  # as `bench confirm` keeps each retraining's model
    served.save_served(small_model(), path)
    served.save_served(small_model(), path)  # over an earlier one
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not tempfile.mkstemp's 0600
    assert os.listdir(tmp_path) == [path.name]
    assert keras.saving.load_model(path).output_shape == (None, 2)
