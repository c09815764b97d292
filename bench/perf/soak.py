"""`make soak`: a real search killed and resumed after each kill, first as one process and then
as a chief with 2 workers (killing the chief or a worker); then the checks that such a night
must pass: every planned trial finished, none recorded twice, none trained again once its
record was written, every JSON file parses, no epoch backup left over, and no epoch trained
twice but the one each kill cut.

Kills come at random moments and at named moments (bench.core.faults), where a random kill
rarely lands: right after a trial's record is written (SIGKILL, and SIGINT in turn; in the
cluster, every worker of one launch after its second record), between an export's renames, and
while a report is written. After those two, the previous or the new `best/` must still be
there (its config.json parses), the report folder whole (index.html, report.md and trials.csv
from the same write), and the next command must leave nothing of the killed one behind.

The epochs trained are counted from the processes' own epoch lines (bench.train.epoch_lines), so
the count sees every epoch, also those a kill threw away; a trial finished twice shows as two
progress lines, a refused second record, or a record that changed from one launch to the next.
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
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.core import faults, records
from bench.search import distributed
from bench.train import checkpoint

SEARCH = (
    "--space", "tiny", "--tuner", "random", "--max-epochs", "3", "--seed", "0",
    "--train-limit", "20000", "--val-size", "2000", "--test-limit", "2000",
)  # fmt: skip
QUICK_SEARCH = (
    "--space", "tiny", "--tuner", "random", "--max-epochs", "2", "--seed", "0",
    "--train-limit", "1000", "--val-size", "200", "--test-limit", "200",
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """How hard a soak presses."""

    kills: int = 20  # one process, at random moments
    record_kills: int = 4  # one process, right after a record (SIGKILL and SIGINT in turn)
    trials: int = 100  # more than all those launches cut short finish, so that every kill lands
    cluster_kills: int = 5  # the chief or a worker, in turn
    cluster_trials: int = 30
    search: tuple[str, ...] = SEARCH


FULL = Plan()
# A check of the soak itself, in minutes: every kind of kill once or twice, on a small search.
QUICK = replace(
    FULL, kills=1, record_kills=2, trials=6, cluster_kills=1, cluster_trials=6, search=QUICK_SEARCH
)
KILL_AFTER_S = (3.0, 25.0)  # start-up takes some seconds, a trial about ten
SEED = 11
RECORD_POINT = "record.written"  # bench/search/recorder.py
EXPORT_POINT = "export.between_renames"  # bench/release/export.py
REPORT_POINT = "report.writing"  # bench/report/writer.py
RECORD_NTH = (1, 3)  # a targeted launch dies after one of its first few records
CLUSTER_RECORD_NTH = 2  # in the cluster, every worker process of one launch, restarts too
CLUSTER_RESUMES = 4  # launches beyond one per kill, before the cluster soak gives up
EPOCH_LINE = re.compile(r"trial (\S+) epoch (\d+)/\d+ \|")  # an epoch's end, not a step
FINISHED_LINE = re.compile(r"^trial \d+(?:/\d+)? \[([^\]]+)\]", re.M)  # bench.search.progress
REFUSED_LINE = re.compile(r"^trial (\S+) is finished already", re.M)  # a second record refused
BEST_DIR, REPORT_DIR = "best", "report"
REPORT_FILES = ("index.html", "report.md", "trials.csv")
# A guard against a hung launch, not a time target: the last launch runs most of the trials,
# 20 minutes and more on a slow 2-core machine.
TIMEOUT_S = 3600


def soak(results: Path, plan: Plan = FULL) -> dict:
    """Both soaks, one after the other, and what they found."""
    rng = random.Random(SEED)
    return {
        "benchmark": "soak",
        "search": " ".join(plan.search),
        "single": single_process(results / "soak-single", rng, plan),
        "cluster": cluster(results / "soak-cluster", rng, plan),
    }


def bench_command(results_dir: Path, run: str, trials: int, *extra: str, plan=FULL) -> list[str]:
    return [
        sys.executable, "-m", "bench", "search", "--run", run, "--results", str(results_dir),
        "--max-trials", str(trials), *plan.search, *extra,
    ]  # fmt: skip


def kill_at(point: str, nth: int = 1, signame: str = "SIGKILL") -> dict:
    """The environment that makes a process stop itself at a named point (bench.core.faults)."""
    value = f"{point}:{nth}:{signame}"
    faults.parse(value)  # a name the processes would refuse fails here, before any launch
    return {**os.environ, faults.KILL_ENV: value}


@dataclass
class Ledger:
    """The completed records seen after each launch: a finished trial's record never changes."""

    seen: dict = field(default_factory=dict)  # trial id -> (started_at, finished_at)
    replaced: set = field(default_factory=set)

    def note(self, run_dir: Path) -> None:
        for record in records.completed(records.load_records(run_dir, damaged=[])):
            stamp = (record["started_at"], record["finished_at"])
            if self.seen.setdefault(record["trial_id"], stamp) != stamp:
                self.replaced.add(record["trial_id"])


def retrained(finish_logs: list[Path], logs: list[Path], ledger: Ledger) -> list[str]:
    """The trials finished more than once: two progress lines in finish_logs, a second record
    refused in logs, or a record the ledger saw change."""
    finished = Counter()
    again = set(ledger.replaced)
    for log in finish_logs:
        finished.update(FINISHED_LINE.findall(_text(log)))
    for log in logs:
        again.update(REFUSED_LINE.findall(_text(log)))
    return sorted(again | {trial for trial, times in finished.items() if times > 1})


def _text(log: Path) -> str:
    return log.read_text(errors="replace") if log.is_file() else ""


@dataclass
class Launches:
    """One soak's launches of its command, each with its log; the ledger noted after each."""

    command: list[str]
    run_dir: Path
    log_prefix: Path  # <folder>/<name>: logs are <name>-00.log, -01.log, ...
    logs: list[Path] = field(default_factory=list)
    ledger: Ledger = field(default_factory=Ledger)

    def start(self, env: dict | None = None) -> subprocess.Popen:
        prefix = self.log_prefix
        self.logs.append(prefix.with_name(f"{prefix.name}-{len(self.logs):02d}.log"))
        return _start(self.command, self.logs[-1], env)

    def run(self, env: dict | None = None) -> int:
        """A launch to its end; its exit code."""
        code = _finish(self.start(env))
        self.ledger.note(self.run_dir)
        return code


def single_process(folder: Path, rng: random.Random, plan: Plan = FULL) -> dict:
    """plan.kills SIGKILLs of `bench search` at random moments, then plan.record_kills right
    after a record, a resume after each, one to the end; then an export and a report killed
    in their writes."""
    shutil.rmtree(folder, ignore_errors=True)
    command = bench_command(folder, "run", plan.trials, plan=plan)
    runs = Launches(command, folder / "run", folder / "launch")
    kills, code = _random_kills(runs, rng, plan.kills)
    aimed, code = _record_kills(runs, rng, plan.record_kills) if code != 0 else (0, code)
    code = runs.run()
    again = retrained(runs.logs, runs.logs, runs.ledger)
    found = checks(runs.run_dir, plan.trials, runs.logs, kills, code, again)
    found.update(kills=kills + aimed, record_kills=aimed)
    found["export"] = export_killed(folder, runs.run_dir)
    found["report"] = report_killed(folder, runs.run_dir)
    found["passed"] = found["passed"] and found["export"]["passed"] and found["report"]["passed"]
    return found


def _random_kills(runs: Launches, rng: random.Random, kills: int) -> tuple[int, int | None]:
    """Launches each SIGKILLed at a random moment, until `kills` were or the run is over;
    the kills that landed and the last exit code."""
    landed, code = 0, None
    for _ in range(kills):
        proc = runs.start()
        if _wait(proc, rng.uniform(*KILL_AFTER_S)) is None:
            proc.kill()
            landed += 1
        code = proc.wait()
        runs.ledger.note(runs.run_dir)
        if code == 0:
            break  # the run ended before every kill was spent
    return landed, code


def _record_kills(runs: Launches, rng: random.Random, kills: int) -> tuple[int, int | None]:
    """Launches that stop themselves right after one of their first records, with SIGKILL
    and SIGINT in turn; the stops that landed and the last exit code."""
    landed, code = 0, None
    for attempt in range(kills):
        signame = "SIGKILL" if attempt % 2 == 0 else "SIGINT"
        code = runs.run(kill_at(RECORD_POINT, rng.randint(*RECORD_NTH), signame))
        landed += code in (-signal.SIGKILL, 128 + signal.SIGINT)
        if code == 0:
            break
    return landed, code


def cluster(folder: Path, rng: random.Random, plan: Plan = FULL) -> dict:
    """`bench search --workers 2` with plan.cluster_kills SIGKILLs of the chief or a worker at
    random moments, then one launch whose every worker dies right after its second record
    (restarted, the chief hands it back the trial it recorded); a launch that ends in error
    (a chief's death ends the run) is started again."""
    shutil.rmtree(folder, ignore_errors=True)
    command = bench_command(
        folder, "run", plan.cluster_trials, "--workers", "2", "--force", plan=plan
    )
    runs = Launches(command, folder / "run", folder / "supervisor")
    kills, code = _cluster_kills(runs, rng, plan.cluster_kills)
    aimed = 0
    if code != 0:
        code = runs.run(kill_at(RECORD_POINT, CLUSTER_RECORD_NTH))
        aimed = _text(runs.logs[-1]).count("killed by SIGKILL")  # restarted, or left out
    while code != 0 and len(runs.logs) < plan.cluster_kills + CLUSTER_RESUMES:
        code = runs.run()
    logs = sorted((runs.run_dir / distributed.LOGS_DIR).glob("*.log"))
    again = retrained(runs.logs, logs, runs.ledger)  # the supervisor shows each record it sees
    # A chief's death stops both workers, each in the middle of an epoch.
    found = checks(runs.run_dir, plan.cluster_trials, logs, 2 * kills, code, again)
    return {**found, "kills": kills + aimed, "record_kills": aimed}


def _cluster_kills(runs: Launches, rng: random.Random, kills: int) -> tuple[int, int]:
    """SIGKILLs of the chief or a worker, in turn, at random moments; the same command
    resumes a launch that a chief's death ended. The kills and the last exit code."""
    landed, proc = 0, runs.start()
    for _ in range(3 * kills):  # until they have landed, or the run is over
        if landed == kills:
            break
        if _wait(proc, rng.uniform(*KILL_AFTER_S)) is not None:
            runs.ledger.note(runs.run_dir)
            if proc.returncode == 0:
                break
            proc = runs.start()
            continue
        victim = distributed.CHIEF if landed % 2 == 0 else f"worker{landed % 4 // 2}"
        if _kill_child(proc.pid, victim):
            landed += 1
    code = _finish(proc)
    runs.ledger.note(runs.run_dir)
    return landed, code


def export_killed(folder: Path, run_dir: Path) -> dict:
    """`bench export` once to the end, once killed between its renames, once more to the end:
    best/ is there (or set aside, for the next command to put back) after the kill, whole
    after the next export, which leaves nothing of the killed one."""
    command = [sys.executable, "-m", "bench", "export", run_dir.name, "--results", str(folder)]
    first = _finish(_start(command, folder / "export-first.log"))
    env = kill_at(EXPORT_POINT)
    code = _finish(_start(command, folder / "export-killed.log", env))
    reachable = best_reachable(run_dir)
    last = _finish(_start(command, folder / "export-last.log"))
    found = {
        "exit_codes": [first, code, last],
        "killed": code == -signal.SIGKILL,
        "reachable_after_kill": reachable,
        "whole_after_next": _config_parses(run_dir / BEST_DIR),
        "left_behind": leftovers(run_dir, BEST_DIR),
    }
    found["passed"] = (
        first == 0 and last == 0 and found["killed"] and reachable and found["whole_after_next"]
    ) and not found["left_behind"]
    return found


def report_killed(folder: Path, run_dir: Path) -> dict:
    """`bench report` killed while it writes, then again to the end: the report folder is
    whole after the kill (the earlier report), and after the next report, which leaves
    nothing of the killed one."""
    command = [sys.executable, "-m", "bench", "report", run_dir.name, "--results", str(folder)]
    began = time.time()
    code = _finish(_start(command, folder / "report-killed.log", kill_at(REPORT_POINT)))
    whole = report_whole(run_dir / REPORT_DIR, began)
    began = time.time()
    last = _finish(_start(command, folder / "report-last.log"))
    found = {
        "exit_codes": [code, last],
        "killed": code == -signal.SIGKILL,
        "whole_after_kill": whole,
        "whole_after_next": report_whole(run_dir / REPORT_DIR, began, new=True),
        "left_behind": leftovers(run_dir, REPORT_DIR),
    }
    found["passed"] = (
        last == 0 and found["killed"] and whole and found["whole_after_next"]
    ) and not found["left_behind"]
    return found


def _config_parses(folder: Path) -> bool:
    try:
        return isinstance(json.loads((folder / "config.json").read_text()), dict)
    except (OSError, ValueError):
        return False


def best_reachable(run_dir: Path) -> bool:
    """Whether best/ holds an export whose config.json parses, or one set aside beside it
    (`.best.*`, which the next command that reads it puts back) does."""
    beside = [p for p in run_dir.glob(f".{BEST_DIR}.*") if p.is_dir()]
    return any(_config_parses(folder) for folder in [run_dir / BEST_DIR, *beside])


def report_whole(folder: Path, since: float, new: bool = False) -> bool:
    """Whether the report folder holds index.html, report.md and trials.csv of one write:
    all of them from before `since` (an earlier report) or all from after it (the new one;
    only that, with new)."""
    try:
        stamps = [(folder / name).stat().st_mtime for name in REPORT_FILES]
    except OSError:
        return False
    after = [stamp >= since for stamp in stamps]
    return all(after) if new else all(after) or not any(after)


def leftovers(run_dir: Path, name: str) -> list[str]:
    """What writes of run_dir/name left beside it: scratch names start with `.<name>.`."""
    return sorted(p.name for p in run_dir.glob(f".{name}.*"))


def checks(
    run_dir: Path, trials: int, logs: list[Path], cuts: int, code: int, again: list[str] = ()
) -> dict:
    """What a night that was killed must still be, with at most `cuts` epochs cut short by
    the kills and no trial finished twice (`again`, see retrained); `passed` is all of them."""
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
        epochs.update(EPOCH_LINE.findall(_text(log)))
    again_epochs = sum(count - 1 for count in epochs.values())
    backups = list((run_dir / checkpoint.RESUME_DIR).glob("*"))
    found = {
        "exit_code": code,
        "trials_planned": trials,
        "trials_finished": sum(r["status"] == records.STATUS_COMPLETED for r in done),
        "recorded_twice": len(ids) - len(set(ids)),
        "finished_again": list(again),
        "unreadable_json": unreadable,
        "epoch_backups_left": len(backups),
        "epochs_trained": sum(epochs.values()),
        "epochs_trained_again": again_epochs,
    }
    found["passed"] = (
        code == 0
        and found["trials_finished"] == trials
        and not found["recorded_twice"]
        and not found["finished_again"]
        and not unreadable
        and not backups
        and again_epochs <= cuts
    )
    return found


def _start(command: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


def _finish(proc: subprocess.Popen) -> int:
    """The launch's exit code; a launch still running after TIMEOUT_S is killed, and the soak
    fails naming it, rather than leave it training beside the next."""
    try:
        return proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(
            f"{' '.join(proc.args)} hung: still running after {TIMEOUT_S} s"
        ) from None


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
    lines = [f"{'soak':8s} {'kills':>5s} {'aimed':>5s} {'trials':>9s} {'twice':>5s} "
             f"{'again':>5s} {'bad json':>8s} {'backups':>7s} {'epochs':>6s} {'again':>5s} "
             "passed"]  # fmt: skip
    for name in ("single", "cluster"):
        r = result[name]
        lines.append(
            f"{name:8s} {r['kills']:5d} {r.get('record_kills', 0):5d} "
            f"{r['trials_finished']:4d}/{r['trials_planned']:<4d} {r['recorded_twice']:5d} "
            f"{len(r.get('finished_again', [])):5d} {len(r['unreadable_json']):8d} "
            f"{r['epoch_backups_left']:7d} {r['epochs_trained']:6d} "
            f"{r['epochs_trained_again']:5d} {'yes' if r['passed'] else 'NO'}"
        )
    for name in ("export", "report"):
        if name in result["single"]:
            r = result["single"][name]
            lines.append(
                f"{name:8s} killed {'yes' if r['killed'] else 'NO'}, whole after it and after "
                f"the next: {'yes' if r['passed'] else 'NO'} (exit codes {r['exit_codes']})"
            )
    return "\n".join(lines)
