"""`make bench-search`: one space, one budget, one data subset, the same seeds, under six
search policies side by side: random search of full-length trials, KerasTuner's Hyperband,
the suite's ASHA with promotions trained afresh and with promotions that continue their
parent's weights, Optuna's TPE sampler with its Hyperband pruner, and DEHB.

Each (policy, seed) is a fresh process, one after another (seeds outer, so that a benchmark
cut short leaves whole seeds), so that all see the same machine. Each is its own run folder,
kept with its summary once it finished: the same command again runs only what is missing.
What each evaluated is turned into events (a trial's end, its epochs, its validation and test
accuracy); the best-so-far pick is by validation accuracy, and its test accuracy is reported
beside it, never used to choose. bench.perf.policy_stats turns the runs into the field's
statistics and the verdict.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.core import records
from bench.core.config import LIMITS

POLICIES = ("random", "hyperband", "asha", "asha-continue", "optuna", "dehb")
# The policies of outside optimizers, each run by its own child command (bench.perf.commands)
# that writes the run's events itself.
CHILD_COMMANDS = {"optuna": "optuna-child", "dehb": "dehb-child"}
# DEHB's fidelities run from 1 epoch (bench.perf.dehb_adapter.MIN_EPOCHS) up to the max.
MIN_DEHB_EPOCHS = 2
# The `bench search` flags of the suite's own policies (the others are a --tuner's name).
# The benchmark confirms nothing, so asha's plan keeps full fidelity for the defaults and one
# more configuration rather than a night's top 3: its top rung then has the others' epochs.
ASHA_FLAGS = ["--tuner", "asha", "--confirm-top", "1"]
POLICY_FLAGS = {
    "asha": [*ASHA_FLAGS, "--promotion", "retrain"],
    "asha-continue": [*ASHA_FLAGS, "--promotion", "continue"],
}
SPACE = "cnn_plus"
# Five seeds: the rule of bench.perf.policy_stats was stated for five.
SEEDS = range(5)
# The published setting (docs/benchmarks.md): 15 minutes a run on 10,000 training images.
BUDGET_S = 900
MAX_EPOCHS = 6
DATA = {"train_limit": 10_000, "val_size": 5_000, "test_limit": 10_000}
# What `make search` runs: asha continuing its promotions, since it beat random search of
# full-length trials at both seeds of the first 15-minute measurement (docs/benchmarks.md).
# Another policy replaces it only by the rule of bench.perf.policy_stats.
INCUMBENT = "asha-continue"
TARGETS = (0.99, 0.995)  # test accuracy of the pick, as the report's time-to-accuracy tracks
EVENTS_FILE = "events.json"
OPTIMIZER_FILE = "optimizer.json"  # beside an outside optimizer's events: its settings
SUMMARY_FILE = "summary.json"  # in a run's folder, written once the run finished
# A benchmark seed k searches with seed (k + 1) * SEED_SPACING. KerasTuner's oracles draw from
# the seed states seed + 1, seed + 2, ... (one per hyperparameter drawn), so consecutive search
# seeds would share almost all their random numbers, shifted by one. A benchmark run draws far
# fewer than a million states (hundreds of trials at most, a state per hyperparameter each, a
# few redrawn), and its confirmation seeds lie at most CONFIRM_SEED_OFFSET + MAX_CONFIRM_SEEDS
# above its seed: each benchmark seed owns its block of a million seeds, and no two meet.
SEED_SPACING = 1_000_000
MAX_BENCH_SEED = (LIMITS["seed"][1] + 1) // SEED_SPACING - 2  # its block's end is still a seed


def search_seed(seed: int) -> int:
    """The `bench search --seed` (and Optuna's sampler seed) of benchmark seed `seed`, the
    same for every policy: spaced SEED_SPACING apart, so that two benchmark seeds draw from
    random numbers they do not share."""
    if not 0 <= seed <= MAX_BENCH_SEED:
        raise ValueError(f"benchmark seed {seed} is outside 0-{MAX_BENCH_SEED}")
    return (seed + 1) * SEED_SPACING


def bench_args(run: str, results: Path, policy: str, seed: int, budget: int, epochs: int):
    """The `bench search` arguments of one (policy, seed) run of the suite's own tuners; seed
    is the search seed."""
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in DATA.items()]
    tuner = POLICY_FLAGS.get(policy, ["--tuner", policy])
    return [
        "search", "--run", run, "--results", str(results), "--space", SPACE,
        *tuner, "--seed", str(seed), "--max-epochs", str(epochs),
        "--budget", f"{budget}s", "--max-trials", "1000", "--no-warm-start", *flags,
    ]  # fmt: skip


def make_command(budget: int, epochs: int, policies, seeds=SEEDS) -> str:
    """The `make bench-search` command line that runs these settings."""
    seeds, policies = [str(s) for s in seeds], list(policies)
    if epochs != MAX_EPOCHS:
        command = f"python -m bench.perf search --budget {budget} --max-epochs {epochs}"
        return command + f" --seeds {' '.join(seeds)} --policies {' '.join(policies)}"
    command = "make bench-search"
    if budget != BUDGET_S:
        command += f" SEARCH_BUDGET={budget}"
    if seeds != [str(s) for s in SEEDS]:
        command += f' SEARCH_SEEDS="{" ".join(seeds)}"'
    if policies != list(POLICIES):
        command += f' SEARCH_POLICIES="{" ".join(policies)}"'
    return command


def events_of(trial_records: list[dict]) -> list[dict]:
    """The finished trials of a run as events, in the order they ended."""
    done = sorted(records.completed(trial_records), key=lambda r: r["finished_at"])
    return [
        {
            "ended_at": r["finished_at"],
            "epochs": r["epochs_run"],
            "configuration": json.dumps(r["hyperparameters"], sort_keys=True),
            "val_accuracy": r["val_accuracy"],
            "test_accuracy": r["test_accuracy"],
        }
        for r in done
    ]


def summary(events: list[dict], started: float, wall: float) -> dict:
    """What one run achieved: configurations and epochs, the pick by validation over time
    (its curve: [minutes since the start, best validation so far, the pick's test]) and when
    its test accuracy first reached each target."""
    pick, curve = None, []
    for event in events:
        if pick is None or event["val_accuracy"] > pick["val_accuracy"]:
            pick = event
        minutes = (_seconds(event["ended_at"]) - started) / 60.0
        curve.append([round(minutes, 3), pick["val_accuracy"], pick["test_accuracy"]])
    return {
        "trials": len(events),
        "configurations": len({e["configuration"] for e in events}),
        "epochs": sum(e["epochs"] for e in events),
        "best_val_accuracy": pick["val_accuracy"] if pick else None,
        "test_accuracy_of_pick": pick["test_accuracy"] if pick else None,
        "minutes_to_test": {target_key(t): minutes_to(curve, t) for t in TARGETS},
        "wall_minutes": round(wall / 60.0, 2),
        "curve": curve,
    }


def target_key(target: float) -> str:
    return f"{target:.3f}"


def minutes_to(curve: list, target: float) -> float | None:
    """The minute at which the pick's test accuracy first reached target; None if never."""
    return next((minutes for minutes, _, test in curve if test >= target), None)


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


def run_name(policy: str, seed: int) -> str:
    return f"bench-search-{policy}-{seed}"


def settings(seed: int, budget: int, epochs: int) -> dict:
    """What a finished run must have been run with to count for these settings."""
    return {
        "budget_seconds": budget,
        "max_epochs": epochs,
        "data": DATA,
        "space": SPACE,
        "search_seed": search_seed(seed),
    }


def finished_run(results: Path, policy: str, seed: int, wanted: dict) -> dict | None:
    """The summary row of a run that finished with these settings; None when there is none
    (never run, cut short, or run with other settings)."""
    path = results / run_name(policy, seed) / SUMMARY_FILE
    if not path.is_file():
        return None
    saved = records.read_json(path, f"delete {path.parent} to run it again", ("settings", "run"))
    return saved["run"] if saved["settings"] == wanted else None


def run_child(command: list[str]) -> None:
    """One run's process, to its end."""
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def run_policy(results: Path, policy: str, seed: int, budget: int, epochs: int) -> dict:
    """One (policy, seed) run in a fresh process, in a fresh folder; its summary row (an
    outside optimizer's with its settings, from OPTIMIZER_FILE), also written as the folder's
    summary.json once the run finished."""
    run, wanted = run_name(policy, seed), settings(seed, budget, epochs)
    shutil.rmtree(results / run, ignore_errors=True)  # this benchmark's own scratch run
    chosen = wanted["search_seed"]
    if policy in CHILD_COMMANDS:
        args = [CHILD_COMMANDS[policy], "--run", run, "--results", str(results)]
        command = [sys.executable, "-m", "bench.perf", *args, "--seed", str(chosen)]
        command += ["--budget", str(budget), "--max-epochs", str(epochs)]
    else:
        args = bench_args(run, results, policy, chosen, budget, epochs)
        command = [sys.executable, "-m", "bench", *args]
    started = time.time()
    run_child(command)
    wall = time.time() - started
    row = {"policy": policy, "seed": seed, "search_seed": chosen}
    if policy in CHILD_COMMANDS:
        events = json.loads((results / run / EVENTS_FILE).read_text())
        row["optimizer"] = json.loads((results / run / OPTIMIZER_FILE).read_text())
    else:
        events = events_of(records.load_records(results / run))
    row.update(summary(events, started, wall))
    records.atomic_write_json(results / run / SUMMARY_FILE, {"settings": wanted, "run": row})
    return row


def search_benchmark(
    results: Path, budget: int, epochs: int, seeds=SEEDS, policies=POLICIES, say=None
) -> dict:
    """Every (policy, seed) run, seeds outer: those that finished before with these settings
    kept, the others run afresh; `say` (print by default) hears of each as it starts."""
    say = say or (lambda text: print(text, flush=True))
    runs, plan = [], [(s, p) for s in seeds for p in policies]
    for number, (seed, policy) in enumerate(plan, start=1):
        row = finished_run(results, policy, seed, settings(seed, budget, epochs))
        where = f"[{number}/{len(plan)}] {run_name(policy, seed)}"
        if row is None:
            say(f"{where}: running, {budget} s")
            row = run_policy(results, policy, seed, budget, epochs)
        else:
            say(f"{where}: finished before with these settings, kept")
        runs.append(row)
    return {
        "benchmark": "search",
        "space": SPACE,
        "budget_seconds": budget,
        "max_epochs": epochs,
        "data": DATA,
        "seeds": list(seeds),
        "runs": runs,
    }
