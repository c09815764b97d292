"""Several processes on one run: a KerasTuner chief and workers (`bench search --workers N`)."""

import http.server
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pandas as pd
import pytest

from bench import cli, runner
from bench.core import records
from bench.core.budget import Budget
from bench.core.config import MAX_NAME, ConfigError
from bench.report import tables
from bench.search import distributed
from bench.search.progress import Progress
from tests.factories import fake_record, fake_run

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 6
TINY = ["--space", "tiny", "--tuner", "random", "--train-limit", "256", "--val-size", "128"]
TINY += ["--test-limit", "128", "--max-epochs", "2", "--max-trials", str(TRIALS)]
WAIT_S = 600
SHORT_WAIT_S = 0.5  # for a chief that never answers


# -- the parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [("127.0.0.1:8470", ("127.0.0.1", 8470)), ("node-3.lan:1", ("node-3.lan", 1))],
)
def test_addresses_are_host_and_port(text, expected):
    assert distributed.parse_address(text) == expected


@pytest.mark.parametrize("text", ["8470", ":8470", "host:", "host:port", "host:0", "h:70000", ""])
def test_bad_addresses_are_refused(text):
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        distributed.parse_address(text)


@pytest.mark.parametrize("workers, cores, threads", [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 16, 8)])
def test_threads_are_split_between_workers(workers, cores, threads):
    assert distributed.split_threads(workers, cores) == threads


@pytest.mark.parametrize(
    "name", ["chief", "my-chief-2", "a/b", "", "x y", "-w", "w" * (MAX_NAME + 1)]
)
def test_worker_ids_that_kerastuner_would_misread_are_refused(name):
    with pytest.raises(ConfigError, match="worker id"):
        distributed.check_worker_id(name)


def test_child_arguments_drop_the_supervisor_flags():
    argv = [
        "search",
        "--run",
        "r",
        "--fresh",
        "--workers",
        "2",
        "--listen=0.0.0.0:1",
        "--force",
        "--seed",
        "3",
    ]
    kept = runner.without_flags(argv, runner.SUPERVISOR_ONLY)
    assert kept == ["search", "--run", "r", "--seed", "3"]


GB = 2**30


@pytest.mark.parametrize(
    "cores, memory, limit", [(2, 21 * GB, 2), (16, 9 * GB, 4), (2, GB // 2, 1), (8, None, 8)]
)
def test_the_worker_limit_follows_the_cores_and_the_free_memory(cores, memory, limit, monkeypatch):
    monkeypatch.setattr(distributed, "available_memory", lambda: memory)
    assert distributed.worker_limit(cores)[0] == limit
    distributed.check_worker_count(limit, cores)
    with pytest.raises(ConfigError, match=f"--workers {limit + 1} is more .* at most {limit} "):
        distributed.check_worker_count(limit + 1, cores)


def test_a_hundred_workers_on_this_machine_are_refused_before_any_starts(capsys, tmp_path):
    argv = ["search", "--run", "w", "--results", str(tmp_path), "--workers", "100"]
    assert cli.main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--workers 100 is more than this machine runs: at most" in line and "--force" in line
    assert list(tmp_path.iterdir()) == []


class Hanging:
    """A child that ends only when killed; its stop() takes all the grace it is given."""

    def __init__(self, clock):
        self.clock, self.graces = clock, []

    def signal(self, signum):
        pass

    def stop(self, grace):
        self.graces.append(grace)
        self.clock.now += grace


def test_stopping_many_hung_workers_takes_one_grace_time_not_one_each(monkeypatch):
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(distributed.time, "monotonic", lambda: clock.now)
    crew = {f"w{i}": Hanging(clock) for i in range(10)}
    cluster = types.SimpleNamespace(crew=crew, chief=Hanging(clock))
    distributed.Cluster.stop_all(cluster)
    assert sum(sum(w.graces) for w in crew.values()) == distributed.STOP_GRACE_S
    assert clock.now == 2 * distributed.STOP_GRACE_S  # the workers', then the chief's


def test_the_supervisor_says_where_each_worker_is_every_interval_when_it_changed(
    monkeypatch, tmp_path
):
    clock = types.SimpleNamespace(now=100.0)
    monkeypatch.setattr(distributed.time, "monotonic", lambda: clock.now)
    logs = {"w1": "  trial 05 epoch 3/15 | elapsed 0:04:00 | eta 0:16:00 | loss 0.1", "w2": "x"}
    crew = {name: types.SimpleNamespace(last_line=lambda n=name: logs[n]) for name in logs}
    out = io.StringIO()
    cluster = distributed.Cluster(tmp_path, [], 2, 1, "127.0.0.1", 1, None, stream=out, crew=crew)
    cluster.show_status()
    assert out.getvalue() == ""  # not yet: the first line comes after an interval
    clock.now += distributed.STATUS_INTERVAL_S
    cluster.show_status()
    assert out.getvalue() == "workers: w1 trial 05 epoch 3/15 | w2 between trials\n"
    clock.now += distributed.STATUS_INTERVAL_S
    cluster.show_status()  # nothing changed: nothing said
    logs["w2"] = "  trial 06 epoch 1/15 step 40/391 | elapsed 0:00:30 | eta ? | loss 0.5"
    cluster.done["w1"] = 0
    clock.now += distributed.STATUS_INTERVAL_S
    cluster.show_status()
    assert out.getvalue().splitlines()[-1] == "workers: w2 trial 06 epoch 1/15"


def test_the_stopwatch_adds_up_calls_and_starts_again_when_read():
    clock = distributed.Stopwatch()
    assert clock.take() is None  # never timed: not a distributed worker
    nap = clock.timed(lambda seconds: time.sleep(seconds) or seconds)
    assert nap(0.02) == 0.02
    nap(0.02)
    first = clock.take()
    assert 0.04 <= first < 1.0
    assert clock.take() == 0.0


def test_the_worker_table_counts_trials_and_busy_time():
    rows = []
    for index, (worker, status) in enumerate(
        [("w0", "completed"), ("w0", "failed"), ("w1", "completed")]
    ):
        record = fake_record(trial_id=str(index), status=status)
        record.update(
            started_at="2026-11-27T00:00:00+00:00",
            finished_at="2026-11-27T00:01:40+00:00",  # the run's wall time: 100 s
            train_seconds=30.0,
            eval_seconds=10.0,
            process={"pid": 1, "rss_mb": 1.0, "worker": worker, "oracle_seconds": 0.5 * index},
        )
        if status == "failed":
            record.update(error="ValueError: x", val_accuracy=None, test_accuracy=None)
        rows.append(record)
    frame = tables.workers(tables.trials_frame([("r", rows)]))
    w0, w1 = frame.to_dict("records")
    assert (w0["worker"], w0["trials"], w0["failed"]) == ("w0", 2, 1)
    assert w0["busy_hours"] == pytest.approx(80 / 3600)
    assert w0["busy_share"] == pytest.approx(0.8)
    assert w0["oracle_wait_s"] == pytest.approx(0.25)
    assert (w1["trials"], w1["busy_share"]) == (1, pytest.approx(0.4))
    single = tables.trials_frame([("s", [fake_record()])])
    assert tables.workers(single).empty  # one process: no worker table


def test_progress_lines_name_the_worker():
    out = io.StringIO()
    progress = Progress(total=2, stream=out)
    record = fake_record(trial_id="7")
    record["process"] = {"worker": "worker1"}
    progress.show(record)
    assert "trial 1/2 [7] worker1 |" in out.getvalue()
    assert progress.ran == 0  # another process ran it


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def web_server():
    """A plain web server's port, where a worker might be pointed by mistake."""
    server = http.server.HTTPServer((distributed.LOOPBACK, 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def join(capsys, monkeypatch, tmp_path, port: int) -> tuple[int, str, float]:
    """`bench worker` on a run folder, with the chief at port of this machine: its exit code,
    its stderr and how long it took."""
    for name in (distributed.ENV_ID, distributed.ENV_IP, distributed.ENV_PORT):
        monkeypatch.setenv(name, "")  # restored after the test: the worker sets them
    monkeypatch.setattr(distributed, "CHIEF_WAIT_S", SHORT_WAIT_S)
    fake_run(tmp_path, run="r1", n=1, failed=0, with_seed_baseline=False)
    began = time.monotonic()
    argv = ["worker", "--chief", f"127.0.0.1:{port}", "--run", "r1", "--results", str(tmp_path)]
    code = cli.main(argv)
    return code, capsys.readouterr().err, time.monotonic() - began


def test_a_worker_with_no_chief_says_none_answered(tmp_path, capsys, monkeypatch):
    port = distributed.free_port()  # nothing listens there
    code, err, seconds = join(capsys, monkeypatch, tmp_path, port)
    assert code == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: no chief answered at 127.0.0.1:{port} (waited 0.5 s)")
    assert "lost the chief" not in line
    assert seconds < distributed.CHIEF_ASK_S


def test_a_worker_pointed_at_a_web_server_says_it_is_no_chief(
    tmp_path, capsys, monkeypatch, web_server
):
    code, err, seconds = join(capsys, monkeypatch, tmp_path, web_server)
    assert code == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: what answers at 127.0.0.1:{web_server} is not a KerasTuner")
    assert seconds < distributed.CHIEF_ASK_S


# -- real runs -------------------------------------------------------------------------------


def search_args(results: Path, run: str, *extra: str) -> list[str]:
    return ["search", "--run", run, "--results", str(results), *TINY, *extra]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def read_until(proc: subprocess.Popen, pattern: str, seen: list[str]) -> re.Match:
    """Read the supervisor's lines until one matches pattern."""
    for line in proc.stdout:
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no line like {pattern!r} in {seen}; stderr: {proc.stderr.read()}")


def finish(proc: subprocess.Popen, seen: list[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=WAIT_S)
    return proc.returncode, "".join(seen) + out, err


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def assert_every_trial_once(run_dir: Path) -> list[dict]:
    done = records.load_records(run_dir)
    assert len(done) == TRIALS and {r["status"] for r in done} == {"completed"}
    table = pd.read_csv(run_dir / "report" / "trials.csv", dtype={"trial_id": str})
    assert len(table) == TRIALS and table["trial_id"].is_unique
    assert not list(run_dir.glob("resume/*"))
    return done


@pytest.mark.parametrize(
    "tuner, lineage",
    [
        pytest.param(["hyperband"], "trial_id", marks=pytest.mark.slow),  # asha covers restarts
        (["asha", "--promotion", "continue"], "trial_id"),
    ],
    ids=["hyperband", "asha"],
)
def test_a_worker_killed_in_a_trial_is_restarted_and_every_trial_finishes(tmp_path, tuner, lineage):
    # Hyperband (6 trials over 3 epochs) and ASHA continuing its promotions: later trials go
    # on from earlier trials' checkpoints, which any worker finds in the shared run folder (a
    # missing one fails the trial), and the chief's oracle promotes what either worker finished.
    rungs = ["--tuner", *tuner, "--max-epochs", "3", "--max-trials", str(TRIALS)]
    proc = start(search_args(tmp_path, "w", "--workers", "2", *rungs))
    seen: list[str] = []
    pid = int(read_until(proc, r"worker0 pid (\d+)", seen).group(1))
    read_until(proc, r"^trial 1/", seen)  # work is under way: worker0 is in a trial or starting one
    os.kill(pid, signal.SIGKILL)
    code, out, err = finish(proc, seen)
    assert code == 0, err
    assert "2 workers x 1 threads" in out  # the two cores split between them
    assert f"worker0 (pid {pid}) killed by SIGKILL; restarting it" in out
    done = assert_every_trial_once(tmp_path / "w")
    assert any(lineage in r["tuner_state"] for r in done)  # some went on from another


@pytest.mark.slow  # make soak kills a random search and its chief and workers the same way
def test_a_killed_chief_stops_the_workers_and_the_run_resumes(tmp_path):
    args = search_args(tmp_path, "c", "--workers", "2")
    proc = start(args)
    seen: list[str] = []
    chief = int(read_until(proc, r"chief at \S+ \(pid (\d+)\)", seen).group(1))
    workers = [int(read_until(proc, rf"worker{i} pid (\d+)", seen).group(1)) for i in range(2)]
    read_until(proc, r"^trial 1/", seen)
    os.kill(chief, signal.SIGKILL)
    code, out, err = finish(proc, seen)
    assert code == 1
    assert "error: the chief killed by SIGKILL; stopping the workers" in out
    assert not any(alive(pid) for pid in workers)
    assert (tmp_path / "c" / "report" / "index.html").is_file()
    code, out, err = finish(start(args), [])
    assert code == 0 and "resuming run c" in out, err
    assert_every_trial_once(tmp_path / "c")


def test_a_chief_and_two_workers_one_joined_from_elsewhere_share_a_run(tmp_path):
    """worker0 is started by `bench search --workers 1`, far-1 by `bench worker`, as on
    another machine; both run trials, each trial once, and the report reads the run."""
    port = distributed.free_port()
    chief = start(search_args(tmp_path, "j", "--workers", "1", "--listen", f"127.0.0.1:{port}"))
    seen: list[str] = []
    read_until(chief, r"chief at 127.0.0.1", seen)
    joined = start(
        ["worker", "--chief", f"127.0.0.1:{port}", "--run", "j", "--results", str(tmp_path)]
        + ["--id", "far-1", "--threads", "1"]
    )
    worker_out, worker_err = joined.communicate(timeout=WAIT_S)
    assert joined.returncode == 0, worker_err
    assert "worker far-1 joins run j" in worker_out
    code, out, err = finish(chief, seen)
    assert code == 0, err
    done = assert_every_trial_once(tmp_path / "j")
    workers = [r["process"]["worker"] for r in done]
    assert set(workers) == {"worker0", "far-1"}  # both ran trials
    assert all(r["process"]["oracle_seconds"] >= 0 for r in done)
    report = (tmp_path / "j" / "report" / "report.md").read_text()
    assert "## Workers" in report
    for worker in ("worker0", "far-1"):
        assert f"| j | {worker} | {workers.count(worker)} |" in report


def test_a_worker_needs_the_run_folder_of_its_chief(tmp_path, capsys):
    code = cli.main(
        ["worker", "--chief", "127.0.0.1:1", "--run", "none", "--results", str(tmp_path)]
    )
    assert code == 2
    assert "has no readable config.json" in capsys.readouterr().err


def test_a_worker_needs_a_chief(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(distributed.ENV_IP, raising=False)
    code = cli.main(["worker", "--run", "r", "--results", str(tmp_path)])
    assert code == 2
    assert "no chief: give --chief HOST:PORT or set KERASTUNER_ORACLE_IP" in capsys.readouterr().err


def test_the_chief_address_may_come_from_kerastuners_variables(monkeypatch):
    monkeypatch.setenv(distributed.ENV_IP, "10.0.0.5")
    monkeypatch.setenv(distributed.ENV_PORT, "8470")
    assert distributed.chief_from_environment() == "10.0.0.5:8470"
    monkeypatch.delenv(distributed.ENV_PORT)
    assert distributed.chief_from_environment() is None


def test_workers_get_what_is_left_of_the_budget_less_the_supervisors_margin(tmp_path):
    started = []
    worker = types.SimpleNamespace(start=started.append)

    def cluster(budget):
        return distributed.Cluster(
            run_dir=tmp_path,
            argv=[],
            workers=1,
            threads=1,
            host="127.0.0.1",
            port=1,
            progress=Progress(total=1, budget=budget),
        )

    # A budget of 100 s that starts half a second from now: 100 s are left.
    cluster(Budget(100.0, start=time.monotonic() + 0.5)).launch(worker)
    cluster(Budget(None)).launch(worker)
    cluster(Budget(5.0)).launch(worker)
    margin = distributed.SUPERVISOR_MARGIN_S
    assert started == [["--budget", f"{100 - margin}s"], [], ["--budget", "1s"]]
