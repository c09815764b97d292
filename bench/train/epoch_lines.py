"""Long training made visible: a line after every epoch of a trial, a confirmation retraining
or a release, and one every LINE_INTERVAL_S seconds inside a long epoch; on a terminal, a live
bar instead of the lines within an epoch."""

from __future__ import annotations

import numbers
import time

import keras
from tqdm import tqdm

from bench.core.budget import hms

LINE_INTERVAL_S = 30.0
METRICS = (("loss", "loss"), ("accuracy", "acc"), ("val_accuracy", "val"))


class EpochLines(keras.callbacks.Callback):
    """Prints "<label> epoch i/N | elapsed | eta | loss, acc (and val at the epoch's end)"
    to `stream`. The ETA is this fit's: its epochs so far at their pace, the rest to go (a fit
    resumed from an epoch backup counts from where it resumed)."""

    def __init__(self, label: str, stream, interval: float = LINE_INTERVAL_S, clock=None):
        super().__init__()
        self.label, self.stream, self.interval = label, stream, interval
        self.clock = clock or time.monotonic
        self.live = _is_terminal(stream)
        self.bar: tqdm | None = None

    def on_train_begin(self, logs=None):
        self.epochs = self.params.get("epochs") or 1
        self.steps = self.params.get("steps")  # None for a dataset of unknown length
        self.began = self.clock()
        self.first_epoch: int | None = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch
        self.epoch, self.last_line = epoch, self.clock()
        if self.live:
            self.bar = tqdm(
                total=self.steps, desc=self._where(), file=self.stream, leave=False, unit="step"
            )

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update(1)
            return
        now = self.clock()
        if now - self.last_line >= self.interval:
            self.last_line = now
            self._print(self._line(batch + 1, logs, now))

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self._print(self._line(None, logs, self.clock()))

    def on_train_end(self, logs=None):
        if self.bar is not None:  # a fit cut short inside an epoch (a budget, a signal)
            self.bar.close()
            self.bar = None

    def _where(self) -> str:
        return f"{self.label} epoch {self.epoch + 1}/{self.epochs}"

    def _line(self, step: int | None, logs: dict | None, now: float) -> str:
        """The line after `step` batches of the current epoch (None: at its end)."""
        elapsed = now - self.began
        of = f"/{self.steps}" if self.steps else ""
        where = self._where() + ("" if step is None else f" step {step}{of}")
        done = self.epoch - self.first_epoch + (1.0 if step is None else self._share(step))
        eta = "?"
        if done > 0 and (step is None or self.steps):
            eta = hms(elapsed / done * max(self.epochs - self.first_epoch - done, 0.0))
        parts = [where, f"elapsed {hms(elapsed)}", f"eta {eta}"]
        shown = [
            f"{name} {logs[key]:.4f}"
            for key, name in METRICS
            if logs and isinstance(logs.get(key), numbers.Real)
        ]
        return " | ".join(parts + [" ".join(shown)] if shown else parts)

    def _share(self, step: int) -> float:
        return step / self.steps if self.steps else 0.0

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
