"""A long search in one process: resident memory stops growing from trial to trial."""

import io
import types

import keras
import numpy as np

import search_spaces
from bench.core import records
from bench.core.config import SearchConfig
from bench.search import tuning
from bench.train import grad_registry

TRIALS = 30  # enough for a steady growth rate over the last 15 to show
LAST = 15  # the growth is measured over the last LAST trials
# Without bench.train.grad_registry the growth is 4-7 MB a trial here (TensorFlow keeps every
# traced step).
MAX_GROWTH_MB_PER_TRIAL = 0.5


def tiny_build(hp):
    hp.Int("tag", 0, 10**6)  # a new configuration every trial; the model stays the same size
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(2, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_a_fit_leaves_no_traced_gradient_behind():
    before = grad_registry.custom_gradient_entries()
    with grad_registry.released_traces():
        model = tiny_build(types.SimpleNamespace(Int=lambda *a: 0))
        x = np.zeros((8, 28, 28, 1), np.float32)
        model.fit(x, np.zeros(8, np.int64), epochs=1, verbose=0)
        # The leak this guards against is real in this TensorFlow: the fit added entries.
        assert grad_registry.custom_gradient_entries() - before
    assert grad_registry.custom_gradient_entries() == before


def test_memory_stops_growing_over_a_long_search_in_one_process(tmp_path, monkeypatch):
    space = types.SimpleNamespace(build=tiny_build, FIT_DEFAULTS={}, DESCRIPTION="tiny")
    monkeypatch.setitem(search_spaces.SPACES, "tiny", space)
    config = SearchConfig(
        run="long",
        space="tiny",
        tuner="random",
        max_trials=TRIALS,
        results=str(tmp_path),
        train_limit=64,
        val_size=64,
        test_limit=64,
        max_epochs=1,
        batch_size=32,
    ).validate()
    tuning.run_search(config, stream=io.StringIO())
    done = records.load_records(config.run_dir)  # in the order they ran
    assert len(done) == TRIALS and len({r["process"]["pid"] for r in done}) == 1
    rss = [r["process"]["rss_mb"] for r in done]
    growth = (rss[-1] - rss[-LAST - 1]) / LAST
    assert growth < MAX_GROWTH_MB_PER_TRIAL, f"RSS grew {growth:.2f} MB a trial: {rss}"
