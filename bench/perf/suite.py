"""`make bench`: the suite's training path against a plain fit, trial overhead, and memory."""

from __future__ import annotations

import datetime as dt
import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

from bench.core import records

THROUGHPUT_IMAGES = 20_000  # per timed epoch: seconds of the seed model on 2 cores
THROUGHPUT_REPEATS = 5
# Each timed fit runs this many epochs and its first is not counted: a later epoch also ends the
# previous epoch's data iterator, as every epoch of a real (multi-epoch) fit does. One-epoch
# fits would leave that to fit's return, outside the clock (with tf.data's autotuning on, it
# takes seconds: bench.train.pipeline).
EPOCHS_PER_FIT = 2
LARGEST_IMAGES = 2_000  # the largest model trains ~10x slower
LARGEST_REPEATS = 2
OVERHEAD_TRIALS = 3
# Full-size epochs of the seed model (50,000 images), two of them: a trial's fixed costs
# (build, the test predictions, the record) are ~2 s whatever its length, so the overhead
# falls as trials grow; an overnight cnn_plus trial (15 epochs, 30-60 min) is far longer.
OVERHEAD_SEARCH = {"max_epochs": 2, "patience": 2}
BYTES_PER_MB = 2**20
KB_PER_MB = 1024  # ru_maxrss is in kilobytes on Linux


def images_per_second(images: int, seconds: float) -> float:
    return images / seconds if seconds > 0 else float("nan")


def later_epochs(fits: list[list[float]]) -> list[float]:
    """The epoch times of several fits, each fit's first epoch left out."""
    return [seconds for fit in fits for seconds in fit[1:]]


def median_rate(images: int, epoch_seconds: list[float]) -> float:
    """Images per second of the median epoch: robust to a slow epoch on a shared machine."""
    return images_per_second(images, median(epoch_seconds))


def overhead(trial_seconds: float, fit_seconds: float) -> float:
    """The share of a trial's wall time spent outside model.fit."""
    return (trial_seconds - fit_seconds) / trial_seconds if trial_seconds > 0 else float("nan")


def trial_overheads(trial_records: list[dict]) -> list[dict]:
    """Per completed trial: its wall time (start to record written), the bare fit, the
    overhead, and where the rest went: build (KerasTuner's run_trial outside fit), the test
    evaluation, and the remainder (records, predictions file)."""
    rows = []
    for record in records.completed(trial_records):
        wall = _seconds_between(record["started_at"], record["finished_at"])
        fit = record.get("fit_seconds")
        if fit is None:
            continue
        train, evaluation = record["train_seconds"], record["eval_seconds"]
        rows.append(
            {
                "trial_id": record["trial_id"],
                "trial_seconds": round(wall, 3),
                "fit_seconds": fit,
                "overhead": overhead(wall, fit),
                "build_seconds": round(train - fit, 3),
                "eval_seconds": evaluation,
                # + 0.0: a remainder below the clocks' millisecond reads 0.00, not -0.00.
                "other_seconds": round(wall - train - evaluation, 3) + 0.0,
            }
        )
    return rows


def _seconds_between(start: str, end: str) -> float:
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def pixel_megabytes(images: int, dtype_bytes: int) -> float:
    return images * 28 * 28 * dtype_bytes / BYTES_PER_MB


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


# -- measurements (these need TensorFlow and take minutes) --------------------------------


def _epoch_clock():
    import keras

    class EpochClock(keras.callbacks.Callback):
        """Seconds of each epoch, from inside fit: a fit call's own set-up is not counted."""

        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._began)

    return EpochClock()


def throughput(splits, batch_size: int, repeats: int, seed: int = 0) -> dict:
    """The seed model trained by a plain fit on float32 arrays and by the suite's path, one
    fit of EPOCHS_PER_FIT epochs each in turn (order swapped every repeat); images per second
    of the median epoch after each fit's first."""
    import keras

    from bench.train import pipeline
    from search_spaces import seed as seed_space

    x, y = splits.x_train, splits.y_train  # the float32 arrays a plain fit would take
    suite_set = pipeline.training_set(splits.train_images, y, batch_size, seed)
    keras.utils.set_random_seed(seed)
    models = {"plain": seed_space.build(None), "suite": seed_space.build(None)}
    fits = {
        "plain": lambda cb, epochs: models["plain"].fit(
            x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[cb]
        ),
        "suite": lambda cb, epochs: models["suite"].fit(
            suite_set, epochs=epochs, shuffle=False, verbose=0, callbacks=[cb]
        ),
    }
    for fit in fits.values():
        fit(_epoch_clock(), 1)  # the first epoch traces the train step: not timed
    timed: dict[str, list[list[float]]] = {name: [] for name in fits}
    for repeat in range(repeats):
        for name in sorted(fits, reverse=bool(repeat % 2)):
            clock = _epoch_clock()
            fits[name](clock, EPOCHS_PER_FIT)
            timed[name].append(clock.seconds)
    epochs = {name: later_epochs(fit_seconds) for name, fit_seconds in timed.items()}
    images = len(y)
    plain = median_rate(images, epochs["plain"])
    suite = median_rate(images, epochs["suite"])
    return {
        "model": "seed",
        "batch_size": batch_size,
        "images_per_epoch": images,
        "epochs_per_fit": EPOCHS_PER_FIT,
        "plain_epoch_seconds": [round(s, 3) for s in epochs["plain"]],
        "suite_epoch_seconds": [round(s, 3) for s in epochs["suite"]],
        "plain_images_per_s": plain,
        "suite_images_per_s": suite,
        "ratio": ratio(suite, plain),
    }


def largest_model_throughput(splits, space: str, batch_size: int, repeats: int) -> dict:
    """Images per second of the biggest model the space can draw, on the suite's path."""
    from bench.train import fitting, pipeline
    from search_spaces import get as get_space

    values = get_space(space).LARGEST
    model = fitting.build_model(space, values)
    train = pipeline.training_set(splits.train_images, splits.y_train, batch_size, 0)
    clock = _epoch_clock()
    model.fit(train, epochs=1 + repeats, shuffle=False, verbose=0, callbacks=[clock])
    seconds = clock.seconds[1:]  # the first epoch traces
    return {
        "space": space,
        "hyperparameters": values,
        "params": int(model.count_params()),
        "batch_size": batch_size,
        "images_per_epoch": len(splits.y_train),
        "epoch_seconds": [round(s, 3) for s in seconds],
        "images_per_s": median_rate(len(splits.y_train), seconds),
    }


def trial_overhead(results: Path, count: int) -> dict:
    """Whole seed-model trials (one per run: the space has nothing to vary) vs their fits."""
    from bench.core.config import SearchConfig
    from bench.search import tuning

    rows = []
    for number in range(count):
        config = SearchConfig(
            run=f"bench-overhead-{number}",
            space="seed",
            tuner="random",
            max_trials=1,
            batch_size=200,
            results=str(results),
            **OVERHEAD_SEARCH,
        ).validate()
        _scratch(config.run_dir)
        tuning.run_search(config, stream=io.StringIO())
        rows += trial_overheads(records.load_records(config.run_dir))
    return {
        "search": {"space": "seed", **OVERHEAD_SEARCH, "trials": count},
        "trials": rows,
        "median_overhead": median(r["overhead"] for r in rows) if rows else None,
        **{
            f"median_{part}": median(r[part] for r in rows) if rows else None
            for part in ("fit_seconds", "build_seconds", "eval_seconds", "other_seconds")
        },
    }


def _scratch(run_dir: Path) -> None:
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)  # this benchmark's own scratch run


def memory(results: Path) -> dict:
    """Peak RSS of a fresh process that loads full MNIST and runs one seed-model trial."""
    command = [sys.executable, "-m", "bench.perf", "memory-child", "--results", str(results)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    child = json.loads(done.stdout.strip().splitlines()[-1])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / KB_PER_MB
    images = child["images"]
    return {
        **child,
        "peak_rss_mb": round(peak, 1),
        "pixels_uint8_mb": round(pixel_megabytes(images, 1), 1),
        "pixels_float32_mb": round(pixel_megabytes(images, 4), 1),
        "search_growth_mb": round(peak - child["rss_after_data_mb"], 1),
    }


def memory_child(results: Path) -> dict:
    """Runs in its own process (see memory): RSS after imports, after the data, after a trial."""
    from bench.core import data
    from bench.core.config import SearchConfig
    from bench.search import recorder, tuning

    after_imports = recorder.resident_mb()
    splits = data.load()
    after_data = recorder.resident_mb()
    config = SearchConfig(
        run="bench-memory", space="seed", tuner="random", max_trials=1, max_epochs=1,
        batch_size=200, results=str(results),
    ).validate()  # fmt: skip
    _scratch(config.run_dir)
    tuning.run_search(config, stream=io.StringIO())
    return {
        "images": sum(splits.sizes().values()),
        "rss_after_imports_mb": after_imports,
        "rss_after_data_mb": after_data,
        "rss_after_trial_mb": recorder.resident_mb(),
    }


def suite_benchmark(results: Path, repeats: int) -> dict:
    from bench.core import data
    from search_spaces import seed as seed_space

    batch = seed_space.FIT_DEFAULTS["batch_size"]
    splits = data.load(train_limit=THROUGHPUT_IMAGES)
    small = data.load(train_limit=LARGEST_IMAGES)
    return {
        "benchmark": "suite",
        "throughput": throughput(splits, batch, repeats),
        "largest": largest_model_throughput(small, "cnn_plus", 128, LARGEST_REPEATS),
        "overhead": trial_overhead(results, OVERHEAD_TRIALS),
        "memory": memory(results),
    }


def suite_table(result: dict) -> str:
    speed, big = result["throughput"], result["largest"]
    cost, mem = result["overhead"], result["memory"]
    lines = [
        f"seed model, batch {speed['batch_size']}, {speed['images_per_epoch']:,} images/epoch:",
        f"  plain model.fit on float32 arrays {speed['plain_images_per_s']:8.0f} images/s",
        f"  suite training path (tf.data)     {speed['suite_images_per_s']:8.0f} images/s",
        f"  ratio suite / plain               {speed['ratio']:8.2f}x",
        f"largest {big['space']} model ({big['params']:,} params): "
        f"{big['images_per_s']:.0f} images/s",
        f"per-trial overhead (trial wall vs bare fit), median of {len(cost['trials'])}: "
        f"{(cost['median_overhead'] or float('nan')):.1%} of a trial whose fit took "
        f"{cost['median_fit_seconds']:.1f} s (build {cost['median_build_seconds']:.2f} s, "
        f"test evaluation {cost['median_eval_seconds']:.2f} s, "
        f"records {cost['median_other_seconds']:.2f} s)",
        f"memory: peak RSS {mem['peak_rss_mb']:.0f} MB for {mem['images']:,} images "
        f"(pixels {mem['pixels_uint8_mb']:.0f} MB as uint8, {mem['pixels_float32_mb']:.0f} MB "
        f"as float32); the search added {mem['search_growth_mb']:.0f} MB to the loaded data",
    ]
    return "\n".join(lines)
