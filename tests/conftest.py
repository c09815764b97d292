"""Shared fixtures: every test starts from the same random state."""

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
