"""`make soak`: a real search killed with SIGKILL at random moments and resumed after each
kill, first as one process and then as a chief with 2 workers (killing the chief or a
worker); then the checks that such a night must pass: every planned trial finished, none
recorded twice, every JSON file parses, no epoch backup left over, and no epoch trained
twice but the one each kill cut.

The epochs trained are counted from the processes' own epoch lines (bench.train.epoch_lines), so
the count sees every epoch, also those a kill threw away.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.core import records
from bench.search import distributed
from bench.train import checkpoint

SEARCH = [
    "--space", "tiny", "--tuner", "random", "--max-epochs", "3", "--seed", "0",
    "--train-limit", "20000", "--val-size", "2000", "--test-limit", "2000",
]  # fmt: skip
KILLS = 20  # one process
TRIALS = 100  # more than 20 launches cut short finish, so that every kill lands
CLUSTER_KILLS = 5  # the chief or a worker, in turn
CLUSTER_TRIALS = 30
KILL_AFTER_S = (3.0, 25.0)  # start-up takes some seconds, a trial about ten
SEED = 11
EPOCH_LINE = re.compile(r"trial (\S+) epoch (\d+)/\d+ \|")  # an epoch's end, not a step
TIMEOUT_S = 900


def soak(results: Path) -> dict:
    """Both soaks, one after the other, and what they found."""
    rng = random.Random(SEED)
    return {
        "benchmark": "soak",
        "search": " ".join(SEARCH),
        "single": single_process(results / "soak-single", rng),
        "cluster": cluster(results / "soak-cluster", rng),
    }


def bench_command(results_dir: Path, run: str, trials: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "bench", "search", "--run", run, "--results", str(results_dir),
        "--max-trials", str(trials), *SEARCH, *extra,
    ]  # fmt: skip


def single_process(folder: Path, rng: random.Random) -> dict:
    """KILLS SIGKILLs of `bench search` at random moments, a resume after each, then one to
    the end."""
    shutil.rmtree(folder, ignore_errors=True)
    command = bench_command(folder, "run", TRIALS)
    logs, kills = [], 0
    for attempt in range(KILLS):
        log = folder / f"launch-{attempt:02d}.log"
        proc = _start(command, log)
        if _wait(proc, rng.uniform(*KILL_AFTER_S)) is None:
            proc.kill()
            kills += 1
        proc.wait()
        logs.append(log)
        if proc.returncode == 0:
            break  # the run ended before every kill was spent
    logs.append(folder / "launch-last.log")
    code = _start(command, logs[-1]).wait(timeout=TIMEOUT_S)
    return {"kills": kills, **checks(folder / "run", TRIALS, logs, kills, code)}


def cluster(folder: Path, rng: random.Random) -> dict:
    """`bench search --workers 2` with CLUSTER_KILLS SIGKILLs of the chief or a worker (in
    turn) at random moments; a chief's death ends the run (exit 1) and it is started again."""
    shutil.rmtree(folder, ignore_errors=True)
    command = bench_command(folder, "run", CLUSTER_TRIALS, "--workers", "2", "--force")
    run_dir, kills, launches = folder / "run", 0, 0
    proc = _start(command, folder / "supervisor-00.log")
    for _ in range(3 * CLUSTER_KILLS):  # until CLUSTER_KILLS have landed, or the run is over
        if kills == CLUSTER_KILLS:
            break
        if _wait(proc, rng.uniform(*KILL_AFTER_S)) is not None:
            if proc.returncode == 0:
                break
            launches += 1  # the chief's death ended it: the same command resumes
            proc = _start(command, folder / f"supervisor-{launches:02d}.log")
            continue
        victim = distributed.CHIEF if kills % 2 == 0 else f"worker{kills % 4 // 2}"
        if _kill_child(proc.pid, victim):
            kills += 1
    code = proc.wait(timeout=TIMEOUT_S)
    while code != 0 and launches < CLUSTER_KILLS + 2:  # after a chief's death, resume
        launches += 1
        code = _start(command, folder / f"supervisor-{launches:02d}.log").wait(timeout=TIMEOUT_S)
    logs = sorted((run_dir / distributed.LOGS_DIR).glob("*.log"))
    # A chief's death stops both workers, each in the middle of an epoch.
    return {"kills": kills, **checks(run_dir, CLUSTER_TRIALS, logs, 2 * kills, code)}


def checks(run_dir: Path, trials: int, logs: list[Path], cuts: int, code: int) -> dict:
    """What a night that was killed must still be, with at most `cuts` epochs cut short by
    the kills; `passed` is all of them."""
    unreadable = []
    for path in run_dir.rglob("*.json"):
        try:
            json.loads(path.read_text())
        except ValueError:
            unreadable.append(str(path))
    done = records.load_records(run_dir)
    ids = [r["trial_id"] for r in done]
    epochs = Counter()
    for log in logs:
        text = log.read_text(errors="replace") if log.is_file() else ""
        epochs.update(EPOCH_LINE.findall(text))
    retrained = sum(count - 1 for count in epochs.values())
    backups = list((run_dir / checkpoint.RESUME_DIR).glob("*"))
    found = {
        "exit_code": code,
        "trials_planned": trials,
        "trials_finished": sum(r["status"] == records.STATUS_COMPLETED for r in done),
        "recorded_twice": len(ids) - len(set(ids)),
        "unreadable_json": unreadable,
        "epoch_backups_left": len(backups),
        "epochs_trained": sum(epochs.values()),
        "epochs_trained_again": retrained,
    }
    found["passed"] = (
        code == 0
        and found["trials_finished"] == trials
        and not found["recorded_twice"]
        and not unreadable
        and not backups
        and retrained <= cuts
    )
    return found


def _start(command: list[str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def _wait(proc: subprocess.Popen, seconds: float) -> int | None:
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


def _kill_child(parent: int, name: str) -> bool:
    """SIGKILL the supervisor's child whose worker id (its environment) is `name`."""
    for pid in _children(parent):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"{distributed.ENV_ID}={name}".encode() in environ:
            os.kill(pid, signal.SIGKILL)
            return True
    return False


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:  # the field after the state is the parent's pid
            found.append(int(stat.parent.name))
    return found


def table(result: dict) -> str:
    lines = [f"{'soak':8s} {'kills':>5s} {'trials':>9s} {'twice':>5s} {'bad json':>8s} "
             f"{'backups':>7s} {'epochs':>6s} {'again':>5s} passed"]  # fmt: skip
    for name in ("single", "cluster"):
        r = result[name]
        lines.append(
            f"{name:8s} {r['kills']:5d} {r['trials_finished']:4d}/{r['trials_planned']:<4d} "
            f"{r['recorded_twice']:5d} {len(r['unreadable_json']):8d} "
            f"{r['epoch_backups_left']:7d} {r['epochs_trained']:6d} "
            f"{r['epochs_trained_again']:5d} {'yes' if r['passed'] else 'NO'}"
        )
    return "\n".join(lines)
