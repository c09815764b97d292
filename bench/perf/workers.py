"""`make bench-workers`: the same small search as 1 worker x all threads and as N workers x 1
thread, its trials per hour and the chief's overhead per trial."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean

from bench.core import environment, records
from bench.search import distributed

SECONDS_PER_HOUR = 3600.0
# Small enough for a few minutes on 2 cores, big enough that a trial outweighs its start-up.
WORKERS_SEARCH = [
    "--space", "tiny", "--tuner", "random", "--seed", "0",
    "--train-limit", "5000", "--val-size", "1000", "--test-limit", "1000",
    "--max-epochs", "3", "--patience", "3", "--no-warm-start",
]  # fmt: skip


def trials_per_hour(trials: int, seconds: float) -> float:
    return trials / seconds * SECONDS_PER_HOUR if seconds > 0 else float("nan")


def span_seconds(trial_records: list[dict]) -> float:
    """From the first trial's start to the last one's end: the run's working time."""
    started = min(dt.datetime.fromisoformat(r["started_at"]) for r in trial_records)
    finished = max(dt.datetime.fromisoformat(r["finished_at"]) for r in trial_records)
    return (finished - started).total_seconds()


def layout_figures(label: str, workers: int, threads: int, wall: float, done: list[dict]) -> dict:
    """What one layout's run measured: throughput over the wall time and over the trials' span."""
    waits = [r["process"].get("oracle_seconds") for r in done if r.get("process")]
    waits = [w for w in waits if w is not None]
    span = span_seconds(done) if done else float("nan")
    return {
        "layout": label,
        "workers": workers,
        "threads_per_worker": threads,
        "trials": len(done),
        "completed": len(records.completed(done)),
        "wall_seconds": round(wall, 2),
        "span_seconds": round(span, 2),
        "trials_per_hour": trials_per_hour(len(done), wall),
        "trials_per_hour_working": trials_per_hour(len(done), span),
        "chief_seconds_per_trial": mean(waits) if waits else None,
        "train_seconds_per_trial": mean(r["train_seconds"] or 0.0 for r in done) if done else None,
    }


def compare(single: dict, split: dict) -> dict:
    """The ratios of the split layout (N workers x 1 thread) over the single one."""
    return {
        "trials_per_hour_ratio": split["trials_per_hour"] / single["trials_per_hour"],
        "working_ratio": split["trials_per_hour_working"] / single["trials_per_hour_working"],
    }


def run_layout(results: Path, trials: int, workers: int, threads: int) -> dict:
    label = f"{workers}x{threads}"
    run = f"bench-workers-{label}"
    argv = ["search", "--run", run, "--results", str(results), *WORKERS_SEARCH]
    argv += ["--max-trials", str(trials), "--workers", str(workers), "--threads", str(threads)]
    shutil.rmtree(results / run, ignore_errors=True)  # this benchmark's own scratch run
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "bench", *argv], check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - began
    return layout_figures(label, workers, threads, wall, records.load_records(results / run))


def workers_benchmark(results: Path, trials: int, workers: int) -> dict:
    cores = environment.cpu_count()
    single = run_layout(results, trials, 1, cores)
    split = run_layout(results, trials, workers, distributed.split_threads(workers, cores))
    return {
        "benchmark": "workers",
        "cores": cores,
        "search": [*WORKERS_SEARCH, "--max-trials", str(trials)],
        "layouts": [single, split],
        **compare(single, split),
    }


def table(result: dict) -> str:
    lines = [
        f"{'layout':8s} {'trials':>6s} {'wall s':>8s} {'trials/h':>9s} {'working/h':>10s} "
        f"{'chief s/trial':>14s}"
    ]
    for row in result["layouts"]:
        wait = row["chief_seconds_per_trial"]
        lines.append(
            f"{row['layout']:8s} {row['trials']:6d} {row['wall_seconds']:8.1f} "
            f"{row['trials_per_hour']:9.1f} {row['trials_per_hour_working']:10.1f} "
            f"{'-' if wait is None else f'{wait:.4f}':>14s}"
        )
    lines.append(
        f"ratio {result['layouts'][1]['layout']} / {result['layouts'][0]['layout']}: "
        f"{result['trials_per_hour_ratio']:.2f}x trials per hour "
        f"({result['working_ratio']:.2f}x over the trials' own span)"
    )
    return "\n".join(lines)
