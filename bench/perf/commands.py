"""The benchmarks' commands, one table: `python -m bench.perf NAME`, measured side by side in
one invocation (never timed tests).

- `suite` (`make bench`): the training path's speed and memory: the seed model's throughput on
  a plain model.fit against the suite's path (bench.train.pipeline), one epoch each in turn so
  both see the same machine load; whole trials against the bare fits inside them; the peak
  resident memory of a search process on full MNIST, and what the data costs.
- `workers` (`make bench-workers`): one small search as 1 worker x all threads and as N workers
  x 1 thread (bench.perf.workers).
- `search` (`make bench-search`): search policies side by side over seeds, each finished run
  kept for the next invocation (bench.perf.policies), and the field's statistics
  (bench.perf.policy_stats); Optuna and DEHB each run in a child process
  (`optuna-child`, `dehb-child`: bench.perf.optuna_adapter, bench.perf.dehb_adapter).
- `soak` (`make soak`): a search killed at random and at named moments and resumed, then checked
  (bench.perf.soak).
- `releases`: configurations released with the release recipe, seed by seed, beside the
  space's defaults released the same way (bench.perf.releases).
- `table` prints the measured tables as docs/benchmarks.md has them; `publish` copies the JSON
  to docs/benchmarks/ and rewrites those tables.

Every benchmark records the machine (CPU model, its AVX2 / AVX-512 / BF16 flags, cores) beside
its figures, under results/perf/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from bench.core import environment, records
from bench.core.budget import MIN_BUDGET_S
from bench.core.config import (
    MAX_BUDGET_S,
    MAX_EPOCHS,
    MAX_SEED,
    MAX_TRIALS,
    MAX_WORKERS,
    bounded_int,
)
from bench.core.data import TRAIN_COUNT
from bench.perf import doc_tables, policies, policy_stats, soak, suite, workers

PERF_DIR = "perf"
SEARCH_FIGURE = "search.png"  # beside search.json, and published beside it
MAX_REPEATS = 100
# Each benchmark's numbers and their (lowest, highest): a search's budget is a `bench search
# --budget`, which takes a trial and the report at least.
LIMITS = {
    "repeats": (1, MAX_REPEATS),
    "trials": (1, MAX_TRIALS),
    "workers": (1, MAX_WORKERS),
    "budget": (math.ceil(MIN_BUDGET_S), MAX_BUDGET_S),
    "child_budget": (1, MAX_BUDGET_S),
    "max_epochs": (1, MAX_EPOCHS),
    "seed": (0, MAX_SEED),
    "bench_seed": (0, policies.MAX_BENCH_SEED),
    "holdout": (0, TRAIN_COUNT - 1),
}


def limited(name: str):
    return bounded_int(*LIMITS[name])


def provenance(name: str) -> dict:
    """What produced a benchmark's figures: the command, the machine, the code, the time."""
    return {
        "command": doc_tables.BENCHMARKS[name][1],
        "machine": environment.machine(),
        "git_commit": environment.git_commit(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_result(out_dir: Path, filename: str, result: dict, table: str) -> None:
    records.atomic_write_json(out_dir / filename, result)
    print(table)
    print(f"written: {out_dir / filename}")


def run_suite(args, out_dir: Path) -> int:
    """`make bench`: perf.json and a table."""
    result = {**suite.suite_benchmark(out_dir, args.repeats), **provenance("suite")}
    write_result(out_dir, "perf.json", result, suite.suite_table(result))
    return 0


def run_workers(args, out_dir: Path) -> int:
    """`make bench-workers`: workers.json and a table."""
    measured = workers.workers_benchmark(out_dir, args.trials, args.workers)
    result = {**measured, **provenance("workers")}
    write_result(out_dir, "workers.json", result, workers.table(result))
    return 0


def run_soak(args, out_dir: Path) -> int:
    """`make soak`: soak.json and a table; exit 1 unless every check passed."""
    result = {**soak.soak(out_dir), **provenance("soak")}
    write_result(out_dir, "soak.json", result, soak.table(result))
    return 0 if result["single"]["passed"] and result["cluster"]["passed"] else 1


def run_search(args, out_dir: Path) -> int:
    """`make bench-search`: the policies side by side at each seed, the runs that finished
    before with the same settings kept; search.json, search.png and the field's table."""
    chosen, seeds = tuple(args.policies), tuple(dict.fromkeys(args.seeds))
    if "dehb" in chosen and args.max_epochs < policies.MIN_DEHB_EPOCHS:
        print(
            f"dehb needs --max-epochs {policies.MIN_DEHB_EPOCHS} or more (its fidelities run "
            "from 1 epoch up); leave it out of --policies",
            file=sys.stderr,
        )
        return 2
    try:
        measured = policies.search_benchmark(out_dir, args.budget, args.max_epochs, seeds, chosen)
    except KeyboardInterrupt:
        print(
            f"interrupted: the finished runs are kept under {out_dir}; the same command runs "
            "the others",
            file=sys.stderr,
        )
        return 130
    result = {**measured, **provenance("search")}
    result["command"] = policies.make_command(args.budget, args.max_epochs, chosen, seeds)
    result["field"] = policy_stats.field(result["runs"], args.budget)
    result["winner"] = result["field"]["winner"]
    records.atomic_write_bytes(out_dir / SEARCH_FIGURE, search_figure(result))
    write_result(out_dir, "search.json", result, policy_stats.text_table(result["field"]))
    print(f"written: {out_dir / SEARCH_FIGURE}")
    return 0


def search_figure(result: dict) -> bytes:
    """The PNG of a search benchmark's curves: each policy's mean best-so-far validation with
    its band over the seeds, and its average rank over time."""
    from bench.report import plots

    best = policy_stats.best_so_far(result["runs"], result["budget_seconds"] / 60.0)
    bands, ranks = policy_stats.curve_bands(best), policy_stats.rank_over_time(best)
    return plots.figure_png(plots.plot_search_benchmark(bands, ranks))


def run_releases(args, out_dir: Path) -> int:
    """Configurations released seed by seed beside the defaults: release.json and a table."""
    from bench.perf import releases

    published = doc_tables.published("releases")
    measured = releases.release_benchmark(
        out_dir, args.variants, args.seeds, published, args.recipes, args.holdout, args.tta
    )
    result = {**provenance("releases"), **measured}
    write_result(out_dir, releases.RESULT_FILE, result, doc_tables.table("releases", result))
    return 0


def print_tables(args, out_dir: Path) -> int:
    """Print the doc's table of every benchmark measured into out_dir."""
    found = 0
    for name, (filename, command) in doc_tables.BENCHMARKS.items():
        path = out_dir / filename
        if path.is_file():
            print(doc_tables.table(name, json.loads(path.read_text())), end="\n\n")
            found += 1
        else:
            print(f"{path}: none yet (`{command}` writes it)", file=sys.stderr)
    return 0 if found else 2


def publish(args, out_dir: Path) -> int:
    """Copy the measured JSON into docs/benchmarks/ and rewrite docs/benchmarks.md's tables."""
    for filename, _ in doc_tables.BENCHMARKS.values():
        if (out_dir / filename).is_file():
            text = (out_dir / filename).read_text()
            records.atomic_write_text(doc_tables.DATA_DIR / filename, text)
            if filename == doc_tables.BENCHMARKS["search"][0]:  # its figure, drawn from it
                figure = search_figure(json.loads(text))
                records.atomic_write_bytes(doc_tables.DATA_DIR / SEARCH_FIGURE, figure)
    doc = doc_tables.render_doc(doc_tables.DOC.read_text())
    records.atomic_write_text(doc_tables.DOC, doc)
    print(f"written: {doc_tables.DOC}")
    return 0


def memory_child(args, out_dir: Path) -> int:
    print(json.dumps(suite.memory_child(out_dir)))
    return 0


def optuna_child(args, out_dir: Path) -> int:
    from bench.perf import optuna_adapter

    run_dir = Path(args.results) / args.run
    optuna_adapter.run_study(run_dir, args.seed, args.budget, args.max_epochs, policies.DATA)
    return 0


def dehb_child(args, out_dir: Path) -> int:
    from bench.perf import dehb_adapter

    run_dir = Path(args.results) / args.run
    dehb_adapter.run_study(run_dir, args.seed, args.budget, args.max_epochs, policies.DATA)
    return 0


def workers_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", type=limited("trials"), default=8)
    p.add_argument("--workers", type=limited("workers"), default=2)


def suite_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=limited("repeats"), default=suite.THROUGHPUT_REPEATS)


def search_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget", type=limited("budget"), default=policies.BUDGET_S, help="seconds")
    p.add_argument(
        "--policies",
        nargs="+",
        choices=policies.POLICIES,
        default=policies.POLICIES,
        help="the policies to run (default all)",
    )
    p.add_argument("--max-epochs", type=limited("max_epochs"), default=policies.MAX_EPOCHS)
    p.add_argument(
        "--seeds",
        nargs="+",
        type=limited("bench_seed"),
        default=list(policies.SEEDS),
        help="the benchmark seeds (default 0-4); each derives its search seed",
    )


def releases_flags(p: argparse.ArgumentParser) -> None:
    from bench.perf import releases  # numpy only

    p.add_argument(
        "--variants", nargs="+", choices=tuple(releases.VARIANTS), default=tuple(releases.VARIANTS)
    )
    p.add_argument("--seeds", nargs="+", type=limited("seed"), default=releases.SEEDS)
    p.add_argument(
        "--recipes",
        nargs="+",
        choices=tuple(releases.RECIPES),
        default=(releases.BASE_RECIPE,),
        help="release recipes to train each variant with (default: today's)",
    )
    p.add_argument(
        "--holdout",
        type=limited("holdout"),
        default=0,
        help=f"training digits held out to rank recipes by ({releases.SCREEN_HOLDOUT:,} for a "
        "recipe screen; default 0: a release on all 60,000)",
    )
    p.add_argument(
        "--tta",
        nargs="*",
        type=int,
        choices=(5, 9),
        default=(),
        help="also evaluate every kept model averaged over 5 or 9 shifted copies of each digit",
    )


def child_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True)
    for flag, name in (
        ("--seed", "seed"),
        ("--budget", "child_budget"),
        ("--max-epochs", "max_epochs"),
    ):
        p.add_argument(flag, type=limited(name), required=True)


def no_flags(p: argparse.ArgumentParser) -> None:
    pass


# name: (handler, help (None: an internal child process), extra flags)
COMMANDS = {
    "suite": (run_suite, "training path vs plain fit, trial overhead, memory", suite_flags),
    "workers": (run_workers, "1 worker x all threads vs N workers x 1 thread", workers_flags),
    "search": (run_search, "random, hyperband, asha, Optuna and DEHB side by side", search_flags),
    "soak": (
        run_soak,
        "a search killed at random and at named moments (after a record, in an export, in a "
        "report), then its chief and workers",
        no_flags,
    ),
    "releases": (
        run_releases,
        "configurations released with the release recipe beside the defaults, per seed",
        releases_flags,
    ),
    "table": (print_tables, "print the measured tables as docs/benchmarks.md has them", no_flags),
    "publish": (publish, "copy the measured figures into docs/benchmarks.md", no_flags),
    "memory-child": (memory_child, None, no_flags),
    "optuna-child": (optuna_child, None, child_flags),
    "dehb-child": (dehb_child, None, child_flags),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.perf", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = parser.add_subparsers(dest="benchmark", required=True)
    for name, (handler, help_text, add_flags) in COMMANDS.items():
        # A child process's command gets no help: argparse would list it as "==SUPPRESS==".
        p = sub.add_parser(name, **({} if help_text is None else {"help": help_text}))
        required = name in policies.CHILD_COMMANDS.values()
        p.add_argument("--results", default="results", required=required)
        add_flags(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return args.handler(args, Path(args.results) / PERF_DIR)
