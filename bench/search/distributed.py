"""Several processes on one run: KerasTuner's own chief and workers, started and watched here.

KerasTuner does the distributing: a chief process serves the oracle over gRPC
(KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT) and each worker, named by KERASTUNER_TUNER_ID,
asks it for trials, runs them and writes its records, checkpoints and epoch backups into the
shared run folder. This module adds what a night needs around that: it starts a chief and N
workers on this machine, splits the CPU threads between them, prints one progress line per
trial any worker finishes (read from the records), restarts a worker that dies (under the
same id, so the chief hands it back the trial it had), and stops everything with a clear
message when the chief dies or a signal comes.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.core import environment, records
from bench.core.config import check_name
from bench.errors import EXIT_FAILURE, EXIT_MORE, EXIT_USAGE, ConfigError

ENV_ID = "KERASTUNER_TUNER_ID"
ENV_IP = "KERASTUNER_ORACLE_IP"
ENV_PORT = "KERASTUNER_ORACLE_PORT"
CHIEF = "chief"  # KerasTuner treats any tuner id containing "chief" as the chief
LOOPBACK = "127.0.0.1"
MAX_RESTARTS = 3  # per worker, for deaths; a worker that ran its --trials-per-process share is
# started again without counting
POLL_S = 0.5
STATUS_INTERVAL_S = 30.0  # how often the supervisor says where its workers are
WORKER_AT = re.compile(r"trial \S+ epoch \d+/\d+")  # bench.train.epoch_lines, in a worker's log
# Of a --budget, kept back from the workers for the supervisor's own end: stopping the chief
# and writing the report of the whole run.
SUPERVISOR_MARGIN_S = 15
STOP_GRACE_S = 20.0  # after SIGTERM or SIGINT, a child may take this long to write and exit
LOGS_DIR = "logs"
# A worker waits this long for a chief it has never reached (one started beside it needs some
# seconds to listen); a chief it reached and then lost gets kt_compat.RPC_TIMEOUT_S.
CHIEF_WAIT_S = 60.0
CHIEF_ASK_S = 5.0  # for one answer of a chief that is there
CHIEF_RETRY_S = 0.5
NO_CONNECTION = "UNAVAILABLE"  # gRPC's status when it could not talk to what is there
NOTHING_LISTENS = "nothing listens"
WAIT_ON = (NOTHING_LISTENS, "DEADLINE_EXCEEDED")  # a chief not yet started, or busy
NOT_A_CHIEF = {
    NO_CONNECTION: "it does not speak gRPC",
    "UNIMPLEMENTED": "a gRPC server without KerasTuner's oracle service",
}
PR_SET_PDEATHSIG = 1


def worker_name() -> str | None:
    """This process's worker id in a distributed run; None in a single process or the chief."""
    name = os.environ.get(ENV_ID)
    if name and ENV_IP in os.environ and CHIEF not in name:
        return name
    return None


def check_worker_id(name: str) -> str:
    """A worker's id names its log file and KerasTuner's tuner id, where 'chief' means the
    chief."""
    if name and CHIEF in name:
        raise ConfigError(f"worker id {name!r} must be a plain name without 'chief' in it")
    return check_name(name, "worker id")


def chief_from_environment() -> str | None:
    """HOST:PORT from KerasTuner's own variables, when both are set."""
    host, port = os.environ.get(ENV_IP), os.environ.get(ENV_PORT)
    return f"{host}:{port}" if host and port else None


def parse_address(text: str) -> tuple[str, int]:
    """("host", port) from "HOST:PORT"; ConfigError otherwise."""
    host, sep, port = (text or "").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"address {text!r} is not HOST:PORT (e.g. 127.0.0.1:8470)")
    return host, int(port)


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


# A search process on full MNIST peaks near 1.5 GB (docs/benchmarks.md, `make bench`); a
# worker is given that and room for a larger model.
WORKER_MEMORY_BYTES = 2 * 2**30


def available_memory() -> int | None:
    """Bytes of memory the machine can give new processes (Linux MemAvailable), else None."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def worker_limit(cores: int | None = None, memory: int | None = None) -> tuple[int, str]:
    """The most workers this machine runs well, one a core and WORKER_MEMORY_BYTES each, and
    what limits them, in words."""
    cores = cores or environment.cpu_count()
    memory = available_memory() if memory is None else memory
    limit, why = cores, f"{cores} cores"
    if memory is not None:
        fits = max(1, memory // WORKER_MEMORY_BYTES)
        gb = f"{memory / 2**30:.1f} GB free at {WORKER_MEMORY_BYTES / 2**30:.0f} GB a worker"
        limit, why = min(limit, fits), f"{why}, {gb}"
    return limit, why


def check_worker_count(workers: int, cores: int | None = None, memory: int | None = None):
    """ConfigError for more workers than worker_limit() allows."""
    limit, why = worker_limit(cores, memory)
    if workers > limit:
        raise ConfigError(
            f"--workers {workers} is more than this machine runs: at most {limit} ({why}); "
            "--force starts them anyway"
        )


def split_threads(workers: int, cores: int | None = None) -> int:
    """TensorFlow threads for each of `workers` processes sharing `cores` (at least one)."""
    return max(1, (cores or environment.cpu_count()) // workers)


class Stopwatch:
    """Adds up the seconds spent inside wrapped calls; take() hands them over and restarts."""

    def __init__(self):
        self.seconds = 0.0
        self.used = False

    def timed(self, call):
        @functools.wraps(call)
        def wrapper(*args, **kwargs):
            began = time.monotonic()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds += time.monotonic() - began
                self.used = True

        return wrapper

    def take(self) -> float | None:
        """Seconds since the last take(), or None when nothing was ever timed."""
        if not self.used:
            return None
        seconds, self.seconds = self.seconds, 0.0
        return round(seconds, 4)


ORACLE_CALLS = ("create_trial", "end_trial", "update_trial", "get_trial", "get_space")


def time_oracle_calls(oracle, clock: Stopwatch) -> None:
    """Make a worker's oracle client count the time its calls to the chief take."""
    for name in ORACLE_CALLS:
        setattr(oracle, name, clock.timed(getattr(oracle, name)))


def grpc_error() -> type[Exception]:
    import grpc

    return grpc.RpcError


def reach_chief(host: str, port: int, wait_s: float | None = None) -> None:
    """Return once a KerasTuner chief answers at host:port. ConfigError when none answered
    within wait_s (default CHIEF_WAIT_S), and at once when what answers there is not one."""
    address = f"{host}:{port}"
    wait_s = CHIEF_WAIT_S if wait_s is None else wait_s
    deadline = time.monotonic() + wait_s
    while (failure := _ask_chief(host, port)) is not None:
        if failure not in WAIT_ON:
            why = NOT_A_CHIEF.get(failure, failure)
            raise ConfigError(
                f"what answers at {address} is not a KerasTuner chief ({why}): give the address "
                "the run's chief listens at"
            )
        if time.monotonic() >= deadline:
            raise ConfigError(
                f"no chief answered at {address} (waited {wait_s:g} s): start the run's chief "
                "first (bench search --workers N --listen HOST:PORT) or check the address"
            )
        time.sleep(CHIEF_RETRY_S)


def _ask_chief(host: str, port: int) -> str | None:
    """None when the chief at host:port answered, NOTHING_LISTENS, or the gRPC failure of
    what took the connection (asked twice, in case the chief began to listen between)."""
    from bench.train import kt_compat

    for _ in range(2):
        failure = kt_compat.ask_chief(f"{host}:{port}", CHIEF_ASK_S)
        if failure is None:
            return None
        if failure == NO_CONNECTION and not listening(host, port):
            return NOTHING_LISTENS
    return failure


def listening(host: str, port: int) -> bool:
    """Whether anything takes a TCP connection at host:port."""
    try:
        with socket.create_connection((host, port), timeout=CHIEF_ASK_S):
            return True
    except OSError:
        return False


def lost_chief_message(exc: Exception) -> str:
    code = exc.code().name if hasattr(exc, "code") else type(exc).__name__
    where = f"{os.environ.get(ENV_IP)}:{os.environ.get(ENV_PORT)}"
    return (
        f"lost the chief at {where} ({code}); this worker stops. Finished trials are kept: "
        "resume the run from the chief's machine"
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    """Linux: the child gets SIGTERM when the supervisor dies, however it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class Child:
    """One chief or worker process of the run, with its log file."""

    name: str
    argv: list[str]
    env: dict
    log: Path
    proc: subprocess.Popen | None = None
    deaths: int = 0

    def start(self, extra: list[str] = ()) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench", *self.argv, *extra],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the supervisor, which passes it on
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    def poll(self) -> int | None:
        return self.proc.poll()

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop(self, grace: float) -> None:
        """Wait up to grace seconds for the process to end after a signal, then kill it."""
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def last_line(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class Cluster:
    """A chief and its local workers on one run, watched until the run is over."""

    run_dir: Path
    argv: list[str]  # the `bench search` arguments every child gets, plus its --role
    workers: int
    threads: int
    host: str
    port: int
    progress: object  # bench.search.progress.Progress
    wait_for_chief: bool = False  # other machines' workers may still be at work (--listen)
    stream: object = field(default_factory=lambda: sys.stdout)
    chief: Child | None = None
    crew: dict[str, Child] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)  # worker -> exit code, once it is over
    shown: dict[str, str] = field(default_factory=dict)  # trial id -> finished_at on screen
    stamps: dict[str, int] = field(default_factory=dict)  # record file -> mtime when read
    stop_signal: int | None = None
    status: str = ""  # the workers' line last shown
    status_at: float = field(default_factory=lambda: time.monotonic())

    def show_status(self, every: float = STATUS_INTERVAL_S) -> None:
        """Every `every` seconds, one line of where each worker is (from its log's epoch
        lines), when it changed."""
        if time.monotonic() - self.status_at < every:
            return
        self.status_at = time.monotonic()
        status = self.worker_status()
        if status != self.status:
            self.status = status
            self.say(status)

    def worker_status(self) -> str:
        """ "workers: w1 trial 05 epoch 3/15 | w2 starting", of the workers still at work."""
        at_work = [name for name in self.crew if name not in self.done]
        where = (WORKER_AT.search(self.crew[name].last_line()) for name in at_work)
        shown = [
            f"{name} {m.group(0) if m else 'between trials'}"
            for name, m in zip(at_work, where, strict=True)
        ]
        return "workers: " + " | ".join(shown)

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def child(self, name: str, role: str, threads: int | None) -> Child:
        env = {**os.environ, ENV_ID: name, ENV_IP: self.host, ENV_PORT: str(self.port)}
        argv = [*self.argv, "--role", role]
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
            argv += ["--threads", str(threads)]
        return Child(name, argv, env, self.run_dir / LOGS_DIR / f"{name}.log")

    def launch(self, worker: Child) -> None:
        """Start (or restart) a worker with what is left of the time budget."""
        left = self.progress.budget.left()
        # argparse keeps the last --budget: the worker gets what is left, less the margin.
        extra = [] if left is None else ["--budget", f"{max(int(left) - SUPERVISOR_MARGIN_S, 1)}s"]
        worker.start(extra)

    def start(self) -> None:
        self.chief = self.child(CHIEF, "chief", 1)
        self.chief.start()
        for index in range(self.workers):
            name = f"worker{index}"
            self.crew[name] = self.child(name, "worker", self.threads)
            self.launch(self.crew[name])
        self.say(
            f"chief at {self.host}:{self.port} (pid {self.chief.proc.pid}), "
            f"{self.workers} workers x {self.threads} threads; logs in {self.run_dir / LOGS_DIR}"
        )
        for name, worker in self.crew.items():
            self.say(f"{name} pid {worker.proc.pid}")

    def show_new_records(self) -> None:
        """Print the trials finished since the last look (only files that changed are read:
        this runs twice a second over a run of hundreds of records)."""
        for path in sorted(records.trials_dir(self.run_dir).glob("*.json")):
            try:
                stamp = path.stat().st_mtime_ns
                if self.stamps.get(path.name) == stamp:
                    continue
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # replaced while being read: the next look gets it
            self.stamps[path.name] = stamp
            if self.shown.get(record["trial_id"]) != record["finished_at"]:
                self.shown[record["trial_id"]] = record["finished_at"]
                self.progress.show(record)

    def stop_all(self, signum: int = signal.SIGTERM) -> None:
        """Signal every worker, then the chief; SIGKILL what has not ended after a grace time.

        A worker blocked in a call to a dead chief runs no Python signal handler until gRPC
        gives up; a kill is safe (every file is written atomically, and the resume goes on
        from the trial's last epoch backup).
        """
        for worker in self.crew.values():
            worker.signal(signum)
        # One grace time for all of them: waiting for each in turn would add theirs up.
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in self.crew.values():
            worker.stop(max(deadline - time.monotonic(), 0.0))
        self.chief.signal(signal.SIGTERM)
        self.chief.stop(STOP_GRACE_S)

    def watch(self) -> int:
        """Wait for the run to end; returns the supervisor's exit code (as `bench search`)."""
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in handled}
        try:
            return self._watch()
        finally:
            self.show_new_records()
            for signum, handler in previous.items():  # the confirmation and release after it
                signal.signal(signum, handler)

    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum

    def _watch(self) -> int:
        while True:
            time.sleep(POLL_S)
            self.show_new_records()
            self.show_status()
            if self.stop_signal is not None:
                self.stop_all(self.stop_signal)
                return 128 + self.stop_signal
            # The chief first: workers that lose it stop too, and the chief is the cause.
            chief_code = self.chief.poll()
            if chief_code not in (None, 0):
                self.say(f"error: the chief {describe_exit(chief_code)}; stopping the workers")
                self.stop_all()
                return 1
            failure = self._check_workers()
            if failure is not None:
                self.stop_all()
                return failure
            if len(self.done) == len(self.crew) and self._chief_may_go():
                self._let_chief_go()
                return 0 if all(code == 0 for code in self.done.values()) else 1

    def _chief_may_go(self) -> bool:
        """With --listen, workers elsewhere may still run: the chief ends when KerasTuner says
        (every worker got its stop) or when the time budget is spent."""
        if not self.wait_for_chief:
            return True
        left = self.progress.budget.left()
        return self.chief.poll() is not None or (left is not None and left <= 0)

    def _check_workers(self) -> int | None:
        """Restart workers that died; an exit code when the run cannot go on."""
        for name, worker in self.crew.items():
            if name in self.done or (code := worker.poll()) is None:
                continue
            if code == EXIT_MORE:  # ran its --trials-per-process share: a fresh process goes on
                self.launch(worker)
            elif code == 0:
                self.done[name] = code
            elif code in (EXIT_FAILURE, EXIT_USAGE):  # it said why (failures, a bad setting)
                self.say(f"error: {name} stopped: {worker.last_line()}")
                return code
            elif worker.deaths < MAX_RESTARTS:
                worker.deaths += 1
                self.say(
                    f"{name} (pid {worker.proc.pid}) {describe_exit(code)}; restarting it "
                    f"({worker.deaths} of {MAX_RESTARTS}): it goes on with the trial it had"
                )
                self.launch(worker)
            else:
                self.say(f"{name} {describe_exit(code)} {MAX_RESTARTS + 1} times; left out")
                self.done[name] = code
        return None

    def _let_chief_go(self) -> None:
        # Its oracle was saved when it answered the last worker: nothing is lost by stopping
        # it now rather than waiting for KerasTuner's own 20-second exit check.
        self.chief.signal(signal.SIGTERM)
        self.chief.stop(STOP_GRACE_S)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for record in records.load_records(self.run_dir):
            worker = (record.get("process") or {}).get("worker") or "-"
            counts[worker] = counts.get(worker, 0) + 1
        return ", ".join(f"{name}: {n} trials" for name, n in sorted(counts.items()))
