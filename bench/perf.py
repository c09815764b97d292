"""Benchmarks, measured side by side in one invocation (never timed tests).

`python -m bench.perf suite` (`make bench`): the training path's speed and memory.
1. Throughput of the seed model at its batch size: a plain model.fit on float32 arrays vs
   the suite's path (bench.pipeline), one epoch each in turn, so both see the same machine
   load; medians over the repeats. Also the largest model of the default space.
2. Per-trial overhead: the wall time of whole seed-model trials (build, fit, test evaluation,
   records) vs the bare fit inside them (the record's fit_seconds).
3. Memory: peak resident memory of a search process on full MNIST, and what the data costs.
Figures go to results/perf/perf.json and a short table on stdout.

`python -m bench.perf workers` (`make bench-workers`): the same small search (tiny space,
random tuner, fixed seed, so both layouts train the same models) as 1 worker x all threads
and as N workers x 1 thread. It reports trials per hour of each, their ratio, and the chief's
overhead per trial (the time a worker spends in calls to the chief). Figures go to
results/perf/workers.json and a short table on stdout; the two runs it makes
(results/perf/bench-workers-*) are replaced each time.

`python -m bench.perf search` (`make bench-search`): search policies side by side
(bench.perf_search). `python -m bench.perf soak` (`make soak`): a search killed at random
moments and resumed, then checked (bench.perf_soak).

All record the machine (CPU model, its AVX2 / AVX-512 / BF16 flags, cores) beside the
figures. `python -m bench.perf table` prints their tables as docs/benchmarks.md has them;
`python -m bench.perf publish` copies the JSON to docs/benchmarks/ and rewrites those tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean

from bench import distributed, envinfo, perf_doc, perf_search, perf_soak, perf_suite, records

PERF_DIR = "perf"
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
    cores = distributed.cpu_count()
    single = run_layout(results, trials, 1, cores)
    split = run_layout(results, trials, workers, distributed.split_threads(workers, cores))
    return {
        "benchmark": "workers",
        "cores": cores,
        "search": [*WORKERS_SEARCH, "--max-trials", str(trials)],
        "layouts": [single, split],
        **compare(single, split),
        **provenance("workers"),
    }


def provenance(name: str) -> dict:
    """What produced a benchmark's figures: the command, the machine, the code, the time."""
    return {
        "command": perf_doc.BENCHMARKS[name][1],
        "machine": envinfo.machine(),
        "git_commit": envinfo.git_commit(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def soak(out_dir: Path) -> int:
    """`make soak`: soak.json and a table; exit 1 unless every check passed."""
    result = {**perf_soak.soak(out_dir), **provenance("soak")}
    records.atomic_write_json(out_dir / "soak.json", result)
    print(perf_soak.table(result))
    print(f"written: {out_dir / 'soak.json'}")
    return 0 if result["single"]["passed"] and result["cluster"]["passed"] else 1


def search(out_dir: Path, budget: int, epochs: int, policies=perf_search.POLICIES) -> int:
    """`make bench-search`: the policies side by side; search.json, search.png and a table."""
    from bench import plots

    measured = perf_search.search_benchmark(out_dir, budget, epochs, policies=policies)
    result = {**measured, **provenance("search")}
    result["command"] = perf_search.make_command(budget, epochs, policies)
    records.atomic_write_json(out_dir / "search.json", result)
    figure = plots.plot_search_benchmark(perf_search.curves(result))
    records.atomic_write_bytes(out_dir / "search.png", plots.figure_png(figure))
    print(perf_search.table(result))
    print(f"written: {out_dir / 'search.json'}, {out_dir / 'search.png'}")
    return 0


def print_tables(out_dir: Path) -> int:
    """Print the doc's table of every benchmark measured into out_dir."""
    found = 0
    for name, (filename, command) in perf_doc.BENCHMARKS.items():
        path = out_dir / filename
        if path.is_file():
            print(perf_doc.table(name, json.loads(path.read_text())), end="\n\n")
            found += 1
        else:
            print(f"{path}: none yet (`{command}` writes it)", file=sys.stderr)
    return 0 if found else 2


def publish(out_dir: Path) -> int:
    """Copy the measured JSON into docs/benchmarks/ and rewrite docs/benchmarks.md's tables."""
    for filename, _ in perf_doc.BENCHMARKS.values():
        if (out_dir / filename).is_file():
            text = (out_dir / filename).read_text()
            records.atomic_write_text(perf_doc.DATA_DIR / filename, text)
    doc = perf_doc.render_doc(perf_doc.DOC.read_text())
    records.atomic_write_text(perf_doc.DOC, doc)
    print(f"written: {perf_doc.DOC}")
    return 0


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__)
    sub = parser.add_subparsers(dest="benchmark", required=True)
    workers = sub.add_parser("workers", help="1 worker x all threads vs N workers x 1 thread")
    workers.add_argument("--trials", type=int, default=8)
    workers.add_argument("--workers", type=int, default=2)
    workers.add_argument("--results", default="results")
    suite = sub.add_parser("suite", help="training path vs plain fit, trial overhead, memory")
    suite.add_argument("--repeats", type=int, default=perf_suite.THROUGHPUT_REPEATS)
    suite.add_argument("--results", default="results")
    child = sub.add_parser("memory-child", help=argparse.SUPPRESS)
    child.add_argument("--results", default="results")
    policies = sub.add_parser("search", help="random, hyperband, asha and Optuna side by side")
    policies.add_argument("--budget", type=int, default=perf_search.BUDGET_S, help="seconds")
    policies.add_argument(
        "--policies",
        nargs="+",
        choices=perf_search.POLICIES,
        default=perf_search.POLICIES,
        help="the policies to run (default all)",
    )
    policies.add_argument("--max-epochs", type=int, default=perf_search.MAX_EPOCHS)
    policies.add_argument("--results", default="results")
    study = sub.add_parser("optuna-child", help=argparse.SUPPRESS)
    for flag in ("--run", "--results"):
        study.add_argument(flag, required=True)
    for flag in ("--seed", "--budget", "--max-epochs"):
        study.add_argument(flag, type=int, required=True)
    soaked = sub.add_parser("soak", help="a search killed 20 times, then its chief and workers")
    soaked.add_argument("--results", default="results")
    shown = sub.add_parser("table", help="print the measured tables as docs/benchmarks.md has them")
    shown.add_argument("--results", default="results")
    docs = sub.add_parser("publish", help="copy the measured figures into docs/benchmarks.md")
    docs.add_argument("--results", default="results")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out_dir = Path(args.results) / PERF_DIR
    if args.benchmark == "table":
        return print_tables(out_dir)
    if args.benchmark == "optuna-child":
        from bench import optuna_adapter

        run_dir = Path(args.results) / args.run
        optuna_adapter.run_study(run_dir, args.seed, args.budget, args.max_epochs, perf_search.DATA)
        return 0
    if args.benchmark == "search":
        return search(out_dir, args.budget, args.max_epochs, tuple(args.policies))
    if args.benchmark == "publish":
        return publish(out_dir)
    if args.benchmark == "soak":
        return soak(out_dir)
    if args.benchmark == "memory-child":
        print(json.dumps(perf_suite.memory_child(out_dir)))
        return 0
    if args.benchmark == "suite":
        result = {**perf_suite.suite_benchmark(out_dir, args.repeats), **provenance("suite")}
        records.atomic_write_json(out_dir / "perf.json", result)
        print(perf_suite.suite_table(result))
        print(f"written: {out_dir / 'perf.json'}")
        return 0
    result = workers_benchmark(out_dir, args.trials, args.workers)
    records.atomic_write_json(out_dir / "workers.json", result)
    print(table(result))
    print(f"written: {out_dir / 'workers.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
