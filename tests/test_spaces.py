"""Every registered space builds a compiled model that maps MNIST images to 10 classes; a
space of one's own is imported from its file or module."""

import sys

import keras_tuner as kt
import numpy as np
import pytest

import search_spaces
from bench.errors import SpaceError
from bench.train import spaces
from search_spaces import cnn, cnn_plus

IMAGES = 4


@pytest.mark.parametrize("name", sorted(search_spaces.SPACES))
def test_every_space_builds_with_defaults(name):
    module = search_spaces.SPACES[name]
    assert module.DESCRIPTION.strip() and "\n" not in module.DESCRIPTION
    model = module.build(kt.HyperParameters())
    assert model.optimizer is not None  # compiled
    probs = model.predict(np.random.rand(IMAGES, 28, 28, 1).astype("float32"), verbose=0)
    assert probs.shape == (IMAGES, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_registry_rejects_unknown_names_listing_known_ones():
    with pytest.raises(KeyError, match="seed"):
        search_spaces.get("nope")


def test_seed_baseline_is_fixed_and_matches_the_brief():
    hp = kt.HyperParameters()
    model = search_spaces.get("seed").build(hp)
    assert hp.space == []  # no free hyperparameters
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert [(c.filters, c.kernel_size) for c in convs] == [(30, (5, 5)), (15, (3, 3))]
    assert [d.units for d in dense] == [128, 50, 10]
    assert search_spaces.get("seed").FIT_DEFAULTS == {"batch_size": 200, "max_epochs": 10}


def _conv_filters(model):
    return [layer.filters for layer in model.layers if layer.__class__.__name__ == "Conv2D"]


def test_cnn_depth_and_filters_follow_the_hyperparameters():
    hp = kt.HyperParameters()
    hp.values = {"conv_blocks": 3, "filters_0": 16, "filters_1": 40, "filters_2": 200}
    model = cnn.build(hp)
    assert _conv_filters(model) == [16, 40, 200]
    # Blocks beyond the depth are inactive: registered, but not tuned or recorded.
    assert hp.is_active("filters_2") and not hp.is_active("filters_3")


def test_cnn_without_dense_head_has_no_hidden_dense_layer():
    hp = kt.HyperParameters()
    hp.values = {"dense_units": 0}
    model = cnn.build(hp)
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert [d.units for d in dense] == [10]
    assert not hp.is_active("dense_dropout")


@pytest.mark.parametrize("name", cnn.OPTIMIZERS)
def test_cnn_optimizers_and_learning_rate(name):
    hp = kt.HyperParameters()
    hp.values = {"optimizer": name, "learning_rate": 0.005}
    model = cnn.build(hp)
    assert model.optimizer.__class__.__name__.lower() == name
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.005)


def test_cnn_space_has_the_promised_ranges():
    hp = kt.HyperParameters()
    hp.values = {"conv_blocks": 4}
    cnn.build(hp)
    spec = {p.name: p for p in hp.space}
    assert (spec["conv_blocks"].min_value, spec["conv_blocks"].max_value) == (1, 4)
    assert spec["filters_0"].sampling == "log"
    assert (spec["filters_3"].min_value, spec["filters_3"].max_value) == (16, 256)
    assert set(spec["kernel_size"].values) == {3, 5}
    assert spec["conv_dropout"].max_value == 0.5
    assert 0 in spec["dense_units"].values
    assert set(spec["optimizer"].values) == {"adam", "adamw", "sgd", "rmsprop"}
    assert spec["learning_rate"].sampling == "log"


def test_cnn_labels_name_only_built_blocks():
    hp = {
        "conv_blocks": 2,
        "filters_0": 32,
        "filters_1": 64,
        "filters_2": 128,
        "kernel_size": 3,
        "batch_norm": True,
        "conv_dropout": 0.25,
        "dense_units": 128,
        "dense_dropout": 0.5,
        "optimizer": "adam",
        "learning_rate": 0.001,
    }
    name = cnn.describe(hp)
    assert name == "2x[32,64] k3 bn drop0.25 dense128 drop0.5 adam lr1e-3"
    assert cnn.describe({**hp, "learning_rate": 0.0014025726538129193}).endswith("lr1.4e-3")
    assert cnn.describe({**hp, "batch_norm": False}) != name
    assert cnn.describe({**hp, "dense_units": 0}).endswith("drop0.25 adam lr1e-3")


def _draws(name: str, count: int) -> list[dict]:
    """The space's defaults, then `count` random draws (conditions followed)."""
    hp = kt.HyperParameters()
    search_spaces.get(name).build(hp)
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("val_accuracy", "max"), seed=7)
    oracle.update_space(hp)
    return [hp.values] + [oracle._random_values() for _ in range(count)]


def test_cnn_plus_labels_stay_short_and_tell_configurations_apart():
    draws = _draws("cnn_plus", 300)
    labels = [search_spaces.describe("cnn_plus", values) for values in draws]
    assert labels[0] == "3x2x32/.2 bn fl128/.3 r10s10z10 lr2e-3 cos"
    assert max(map(len, labels)) < 60
    longest = {
        **cnn_plus.LARGEST,
        "conv_dropout": 0.4,
        "dense_dropout": 0.5,
        "rotation_degrees": 15.0,
        "shift": 0.15,
        "zoom": 0.15,
        "optimizer": "adamw",
        "learning_rate": 0.000312345,
        "weight_decay": 0.000312345,
        "schedule": "plateau",
        "label_smoothing": 0.05,
    }
    assert len(search_spaces.describe("cnn_plus", longest)) < 60
    assert len(set(labels)) == len({tuple(sorted(v.items())) for v in draws})


@pytest.mark.parametrize("name", sorted(search_spaces.SPACES))
def test_every_label_copes_with_partial_values(name):
    # A trial that failed while building has only the values drawn so far.
    label = search_spaces.describe(name, {})
    assert label and "\n" not in label


def test_a_space_file_is_imported_once_then_again_once_it_changed(tmp_path):
    path = tmp_path / "counted.py"
    path.write_text("VERSION = 1\ndef build(hp):\n    return None\n")
    first = search_spaces.get(str(path))
    assert search_spaces.get(str(path)) is first and first.VERSION == 1
    assert first.__name__.startswith(search_spaces.FILE_MODULE_PREFIX)
    assert sys.modules[first.__name__] is first and first.__file__ == str(path)
    path.write_text("VERSION = 22\ndef build(hp):\n    return None\n")
    assert search_spaces.get(str(path)).VERSION == 22
    assert not (tmp_path / "__pycache__").exists()  # nothing written into the user's folder


def test_a_dotted_module_is_imported_as_python_imports_it(tmp_path, monkeypatch):
    (tmp_path / "userpkg_dotted").mkdir()
    (tmp_path / "userpkg_dotted" / "__init__.py").write_text("")
    (tmp_path / "userpkg_dotted" / "space.py").write_text("def build(hp):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = search_spaces.get("userpkg_dotted.space")
    assert module is sys.modules["userpkg_dotted.space"]
    assert spaces.load("userpkg_dotted.space") is module


def test_fit_defaults_that_name_no_setting_are_refused(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text("FIT_DEFAULTS = {'epochs': 3}\ndef build(hp):\n    return None\n")
    with pytest.raises(SpaceError, match=f"space file {path}: FIT_DEFAULTS must be a dict"):
        spaces.fit_defaults(str(path))
