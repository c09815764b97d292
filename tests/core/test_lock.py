"""One run, one writer: the lock refuses a second holder and dies with its process."""

import subprocess
import sys
import time

import pytest

from bench.core.lock import LOCK_FILE, RunLocked, run_lock

HOLD = """
import sys, time
from pathlib import Path
from bench.core.lock import run_lock
with run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


def holder(run_dir):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    proc = holder(tmp_path / "run")
    try:
        with pytest.raises(RunLocked, match=f"in use by process {proc.pid} on"):
            with run_lock(tmp_path / "run"):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_no_stuck_lock(tmp_path):
    proc = holder(tmp_path / "run")
    proc.kill()  # SIGKILL: no cleanup code runs
    proc.wait()
    assert (tmp_path / "run" / LOCK_FILE).exists()
    with run_lock(tmp_path / "run"):
        pass


def test_the_same_run_cannot_be_locked_twice_in_one_process(tmp_path):
    with run_lock(tmp_path / "run"):
        with pytest.raises(RunLocked):
            with run_lock(tmp_path / "run"):
                pass
    started = time.monotonic()
    with run_lock(tmp_path / "run"):  # released on exit
        assert time.monotonic() - started < 5
