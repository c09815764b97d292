"""Every registered space builds a compiled model that maps MNIST images to 10 classes."""

import keras_tuner as kt
import numpy as np
import pytest

import search_spaces
from search_spaces import cnn

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
