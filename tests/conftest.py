"""Shared fixtures: every test starts from the same random state, and exports of the tests'
tiny models are held to a looser serving-format rule than real ones."""

import os
import random

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TEST_SEED = 1234


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(TEST_SEED)
    np.random.seed(TEST_SEED)
    yield


# The tests' tiny models (a few hundred images, an epoch) answer many digits near a tie, which
# int8 weights may flip; a conversion that fails outright still loses far more than this.
TINY_MODEL_FORMAT_DROP = 0.05


@pytest.fixture(autouse=True)
def _tiny_model_format_rule(request, monkeypatch):
    if "exact_format_rule" not in request.keywords:
        monkeypatch.setattr("bench.release.formats.MAX_ACCURACY_DROP", TINY_MODEL_FORMAT_DROP)


@pytest.fixture
def few_retrain_images(request, monkeypatch):
    """Releases, ensemble members and references train on the first RETRAIN_IMAGES (the test
    module's own) of the 60,000 training images."""
    from bench.core import data

    count = request.module.RETRAIN_IMAGES
    full_set = data.full_training_set
    monkeypatch.setattr(
        data, "full_training_set", lambda raw: tuple(a[:count] for a in full_set(raw))
    )
