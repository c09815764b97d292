"""bench.train.epoch_lines: a line per epoch of long training, and within a long epoch."""

import io

import keras
import numpy as np

from bench.train.epoch_lines import EpochLines


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drive(lines: EpochLines, clock: Clock, epochs: range, steps: int, seconds_per_step: float):
    """Call the callback as model.fit would, the clock moving per step."""
    lines.set_params({"epochs": epochs.stop, "steps": steps})
    lines.on_train_begin()
    for epoch in epochs:
        lines.on_epoch_begin(epoch)
        for batch in range(steps):
            clock.now += seconds_per_step
            lines.on_train_batch_end(batch, {"loss": 0.5, "accuracy": 0.9})
        lines.on_epoch_end(epoch, {"loss": 0.4, "accuracy": 0.92, "val_accuracy": 0.95})
    lines.on_train_end()


def test_a_line_per_epoch_with_elapsed_eta_and_metrics():
    clock, out = Clock(), io.StringIO()
    drive(EpochLines("trial 07", out, clock=clock), clock, range(3), steps=4, seconds_per_step=5)
    assert out.getvalue().splitlines() == [
        "trial 07 epoch 1/3 | elapsed 0:00:20 | eta 0:00:40 | loss 0.4000 acc 0.9200 val 0.9500",
        "trial 07 epoch 2/3 | elapsed 0:00:40 | eta 0:00:20 | loss 0.4000 acc 0.9200 val 0.9500",
        "trial 07 epoch 3/3 | elapsed 0:01:00 | eta 0:00:00 | loss 0.4000 acc 0.9200 val 0.9500",
    ]


def test_a_long_epoch_prints_a_line_every_interval():
    clock, out = Clock(), io.StringIO()
    lines = EpochLines("release", out, interval=30, clock=clock)
    drive(lines, clock, range(2), steps=10, seconds_per_step=10)
    first_epoch = out.getvalue().splitlines()[:4]
    assert first_epoch == [
        "release epoch 1/2 step 3/10 | elapsed 0:00:30 | eta 0:02:50 | loss 0.5000 acc 0.9000",
        "release epoch 1/2 step 6/10 | elapsed 0:01:00 | eta 0:02:20 | loss 0.5000 acc 0.9000",
        "release epoch 1/2 step 9/10 | elapsed 0:01:30 | eta 0:01:50 | loss 0.5000 acc 0.9000",
        "release epoch 1/2 | elapsed 0:01:40 | eta 0:01:40 | loss 0.4000 acc 0.9200 val 0.9500",
    ]


def test_a_resumed_fit_counts_its_eta_from_where_it_resumed():
    clock, out = Clock(), io.StringIO()
    lines = EpochLines("trial 03", out, interval=1000, clock=clock)
    drive(lines, clock, range(2, 5), steps=2, seconds_per_step=30)
    first = out.getvalue().splitlines()[0]
    assert first.startswith("trial 03 epoch 3/5 | elapsed 0:01:00 | eta 0:02:00 |")


def test_a_terminal_gets_a_live_bar_and_the_epoch_lines():
    clock, out = Clock(), Terminal()
    drive(EpochLines("trial 01", out, interval=1, clock=clock), clock, range(2), 5, 10)
    text = out.getvalue()
    assert "\r" in text and "step 1/5" not in text  # the bar, not the lines within an epoch
    ends = [line for line in text.split("\n") if "eta" in line and "val 0.9500" in line]
    assert len(ends) == 2
    assert "trial 01 epoch 2/2 | elapsed 0:01:40 | eta 0:00:00 | loss 0.4000" in ends[-1]


def test_model_fit_drives_it():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.default_rng(0).random((64, 4)), np.arange(64) % 2
    out = io.StringIO()
    model.fit(x, y, batch_size=16, epochs=2, validation_data=(x, y), verbose=0,
              callbacks=[EpochLines("fit", out)])  # fmt: skip
    lines = out.getvalue().splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["fit epoch 1/2", "fit epoch 2/2"]
    assert all(" loss " in line and " val " in line for line in lines)
