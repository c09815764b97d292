"""How a `bench search` runs: in this process, as a series of processes, or as a KerasTuner
chief and workers; its signals, its report at the end and its exit code."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from bench import night
from bench.core import lock, records, space_source
from bench.core.budget import STOP, Budget, Terminated
from bench.core.config import IDENTITY_FIELDS, SearchConfig, with_space_defaults
from bench.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_MORE,
    EXIT_OK,
    EXIT_TERMINATED,
    DiskFull,
    SearchError,
    UsageError,
)
from bench.search import distributed, tuning
from bench.search.progress import STARTED_ENV, Progress

# Settings a resume command repeats when they differ from the defaults, besides the run's
# identity.
RESUME_FIELDS = (
    *IDENTITY_FIELDS,
    "results",
    "data_dir",
    "trials_per_process",
    "workers",
    "confirm_top",
    "confirm_seeds",
    "release_epochs",
    "release_clean_epochs",
    "release_ema",
    "release_elastic",
)
RESUME_REPEATED = ("release_set",)  # a flag given once for each value
RESUME_SWITCHES = ("tensorboard", "release")
# Flags a supervisor does not pass on to its children (name -> how many values follow it).
SUPERVISOR_ONLY = {"--fresh": 0, "--force": 0, "--workers": 1, "--listen": 1}
REPORTED_CODES = (EXIT_OK, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TERMINATED)
SIGNAL_NAMES = {EXIT_INTERRUPTED: "SIGINT", EXIT_TERMINATED: "SIGTERM"}


def search_config(given: dict) -> SearchConfig:
    """The run's SearchConfig from the settings a person gave (the CLI's flags, the API's
    arguments; a space's default never overrides one), the rest from the space's own fit
    defaults, then SearchConfig's. SpaceError for a space that cannot be read."""
    from bench.train import spaces

    if "space" in given:  # as the run records it: a file's path made absolute
        given = {
            **given,
            "space": space_source.resolve(given["space"], spaces.registry().SPACES)[0],
        }
    config = SearchConfig(**given)
    config = with_space_defaults(config, spaces.fit_defaults(config.space), set(given)).validate()
    night.check_release_set(config)
    return config


def resume_command(config: SearchConfig) -> str:
    """The command that carries on this run: its name and every setting that is not a default."""
    defaults = SearchConfig(run=config.run)
    parts = ["bench", "search", "--run", config.run]
    for name in (*RESUME_FIELDS, *RESUME_SWITCHES):
        value = getattr(config, name)
        if value != getattr(defaults, name):
            flag = f"--{name.replace('_', '-')}"
            if value is False:  # a switch that is on by default
                parts.append(f"--no-{name.replace('_', '-')}")
            else:
                parts += [flag] if value is True else [flag, str(value)]
    for name in RESUME_REPEATED:
        for value in getattr(config, name):
            parts += [f"--{name.replace('_', '-')}", value]
    return shlex.join(parts)


def report_run(run_dir: Path) -> None:
    """Write the run's report and say where it is (nothing for a folder that is not a run)."""
    from bench.report import writer

    if (run_dir / records.CONFIG_FILE).is_file():
        print(f"report: {writer.write_report([run_dir], run_dir / 'report')}", flush=True)


def report_if_room(run_dir: Path) -> None:
    """After a full disk stopped the search: the report of what finished, where it fits."""
    try:
        report_run(run_dir)
    except DiskFull:
        print("the report did not fit on the disk either", file=sys.stderr, flush=True)


def finish(config: SearchConfig, code: int) -> int:
    """The end of a `bench search` that supervised the run: the report of what finished and,
    after a signal, the command that resumes. Returns the exit code."""
    if code in REPORTED_CODES:
        report_run(config.run_dir)
    if code in SIGNAL_NAMES:
        print(
            f"stopped by {SIGNAL_NAMES[code]}; finished trials are kept. "
            f"Resume with: {resume_command(config)}",
            file=sys.stderr,
        )
    return code


def search_here(config: SearchConfig, role: str | None, fresh: bool = False) -> int:
    """Run the search in this process: on its own (role None), or as a child of a supervisor
    (role "process" or "worker"), which then writes the report and says how to resume."""
    previous = STOP.install()
    try:
        code = _search_once(config, role, fresh)
        return code if role else finish(config, code)
    except SearchError:
        if role is None:
            report_run(config.run_dir)
        raise
    except DiskFull:
        if role is None:
            report_if_room(config.run_dir)
        raise
    finally:
        STOP.restore(previous)


def _search_once(config: SearchConfig, role: str | None, fresh: bool) -> int:
    try:
        if role == "worker":
            over = tuning.run_worker(config)
        else:
            # Searched and confirmed, the process that confirmed ships, under the same lock.
            over = tuning.run_search(config, fresh=fresh, then=partial(release, config))
    except (KeyboardInterrupt, Terminated) as exc:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the report finish
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    return EXIT_OK if over else EXIT_MORE


def release(config: SearchConfig, budget: Budget) -> None:
    """With --release, the night's release (night.release) with what is left of the budget;
    the caller holds the run's lock."""
    night.release(config, budget, sys.stdout)


def serve_chief(config: SearchConfig) -> int:
    """The chief of a distributed run, until its supervisor stops it or KerasTuner ends it."""
    # Its state is on disk after every call it answers; a stop needs no unwinding (and
    # KerasTuner's gRPC threads would hold up a normal exit).
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(EXIT_TERMINATED))
    tuning.serve_chief(config)
    return EXIT_OK


def without_flags(argv: list[str], flags: dict[str, int]) -> list[str]:
    """argv without the given flags (name -> how many values follow it)."""
    out, skip = [], 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in flags:
            skip = 0 if "=" in arg else flags[name]
            continue
        out.append(arg)
    return out


def run_cluster(config: SearchConfig, argv: list[str], listen: str | None, fresh: bool) -> int:
    """`bench search --workers N`: a KerasTuner chief and N workers on this run, watched here."""
    host, port = distributed.LOOPBACK, None
    if listen:
        host, port = distributed.parse_address(listen)
    splits = tuning.open_run(config, fresh, sys.stdout)
    with lock.run_lock(config.run_dir):
        resumed = tuning.prepare_run_dir(config, splits)
        progress = Progress(total=tuning.planned_trials(config), budget=Budget(config.budget))
        existing = records.load_records(config.run_dir)
        progress.resume_from(existing)
        print(
            f"{'resuming' if resumed else 'starting'} run {config.run}: space {config.space}, "
            f"tuner {config.tuner}, {progress.total} trials planned ({progress.done} finished)",
            flush=True,
        )
        cluster = distributed.Cluster(
            run_dir=config.run_dir,
            argv=without_flags(argv, SUPERVISOR_ONLY),
            workers=config.workers,
            threads=config.threads or distributed.split_threads(config.workers),
            host=host,
            port=port or distributed.free_port(host),
            progress=progress,
            wait_for_chief=bool(listen),
        )
        cluster.shown = {r["trial_id"]: r["finished_at"] for r in existing}
        cluster.start()
        code = cluster.watch()
        print(f"trials by worker: {cluster.summary() or 'none'}", flush=True)
        if code == EXIT_OK:  # the workers left room in the budget for it
            tuning.confirm_night(config, splits, progress.budget, sys.stdout)
            night.release(config, progress.budget, sys.stdout)
    return finish(config, code)


def _run_child(argv: list[str]) -> int:
    """Run `bench search ... --role process` in a child process, passing signals on to it."""
    child = subprocess.Popen([sys.executable, "-m", "bench", *argv, "--role", "process"])

    def forward(signum, frame):
        child.send_signal(signum)

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, forward) for signum in handled}
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def supervise(config: SearchConfig, argv: list[str]) -> int:
    """Run the search in a series of child processes of --trials-per-process trials each."""
    budget = Budget(config.budget, margin=0.0)
    os.environ.setdefault(STARTED_ENV, str(time.time()))  # the children's elapsed is the run's
    while True:
        child_argv = list(argv)
        if (left := budget.left()) is not None:
            # argparse keeps the last --budget: each child gets what is left.
            child_argv += ["--budget", f"{max(int(left), 1)}s"]
        code = _run_child(child_argv)
        argv = [arg for arg in argv if arg != "--fresh"]  # only the first child starts over
        if code != EXIT_MORE:
            return finish(config, code)


def join_as_worker(
    chief: str | None,
    run_dir: Path,
    worker_id: str | None,
    overrides: dict,
) -> int:
    """`bench worker`: join the distributed run in run_dir, served by the chief at HOST:PORT
    (else KerasTuner's environment variables), with this process's own settings."""
    chief = chief or distributed.chief_from_environment()
    if not chief:
        variables = f"{distributed.ENV_IP} and {distributed.ENV_PORT}"
        raise UsageError(f"no chief: give --chief HOST:PORT or set {variables}")
    host, port = distributed.parse_address(chief)
    try:
        saved = records.load_config(run_dir)
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"run {run_dir.name!r} has no readable config.json in {run_dir.parent}: "
            "the worker needs the run folder the chief writes (a shared folder)"
        ) from exc
    config = SearchConfig.from_json(
        saved, workers=None, trials_per_process=None, **overrides
    ).validate()
    default = os.environ.get(distributed.ENV_ID) or f"{socket.gethostname()}-{os.getpid()}"
    name = worker_id or default
    name = distributed.check_worker_id(name)
    os.environ.update(
        {distributed.ENV_ID: name, distributed.ENV_IP: host, distributed.ENV_PORT: str(port)}
    )
    print(f"worker {name} joins run {config.run} at chief {host}:{port}", flush=True)
    return search_here(config, "worker")
