import os
import signal
import subprocess
import sys

import pytest

from bench.core import faults

LOOP = """from bench.core import faults
for i in range(3):
    print(i, flush=True)
    faults.point("x")
"""


def passages(kill_at: str | None) -> tuple[int, list[str]]:
    env = {k: v for k, v in os.environ.items() if k != faults.KILL_ENV}
    if kill_at:
        env[faults.KILL_ENV] = kill_at
    done = subprocess.run([sys.executable, "-c", LOOP], env=env, capture_output=True, text=True)
    return done.returncode, done.stdout.split()


def test_a_point_stops_the_process_at_its_nth_passage_only():
    assert passages(None) == (0, ["0", "1", "2"])
    assert passages("x:2") == (-signal.SIGKILL, ["0", "1"])
    assert passages("x:1:sigterm") == (-signal.SIGTERM, ["0"])
    assert passages("y") == (0, ["0", "1", "2"])  # another point


def test_a_count_below_one_is_refused():
    with pytest.raises(ValueError, match="1 or more"):
        faults.parse("x:0")
