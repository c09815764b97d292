"""Shared fixtures (every test starts from the same random state; exports of the tests' tiny
models are held to a looser serving-format rule than real ones) and the order of the files."""

import os
import random
from collections import Counter

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TEST_SEED = 1234
# The files of many seconds, longest first (a 2-core machine took 15 to 150 s for each).
# `make test` gives each worker a file at a time (pytest-xdist --dist loadfile): these go first,
# so that short files fill in at the end and no long one is left running alone while the other
# worker idles. A file left out of the list only runs later.
LONG_FILES = (
    "tests/test_overnight.py",
    "tests/search/test_distributed.py",
    "tests/release/test_export.py",
    "tests/release/test_ensemble.py",
    "tests/search/test_tuning.py",
    "tests/train/test_grad_registry.py",
    "tests/test_space_files.py",
    "tests/search/test_confirm.py",
    "tests/perf/test_policies.py",
    "tests/report/test_writer.py",
    "tests/test_notebook.py",
    "tests/train/test_checkpoint.py",
    "tests/search/test_asha.py",
    "tests/release/test_formats.py",
    "tests/test_e2e.py",
    "tests/report/test_plots.py",
    "tests/test_night.py",
    "tests/release/test_reference.py",
    "tests/perf/test_commands.py",
    "tests/test_browser.py",
)


def pytest_configure(config):
    # pytest-xdist would order the files by their number of tests instead, which leaves the
    # long files of few tests to the end.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """LONG_FILES first, then the other files by their number of tests, most first; a file's
    tests stay together and in their order."""
    counts = Counter(_file_of(item) for item in items)

    def rank(item) -> tuple[int, int]:
        path = _file_of(item)
        long = LONG_FILES.index(path) if path in LONG_FILES else len(LONG_FILES)
        return long, -counts[path]

    items.sort(key=rank)


def _file_of(item) -> str:
    return item.nodeid.split("::", 1)[0]


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
def figures_left_out(monkeypatch):
    """Reports written whole but for their figures (seconds each to draw), in tests of what a
    search does around its report; the figures are drawn by the report tests and by every
    search run as a process."""
    from bench.report import writer

    monkeypatch.setattr(writer, "_draw_figures", lambda ctx: ([], []))


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
