"""Every command ends on SIGTERM with one line and 143, as on Ctrl-C with 130; a reader of its
output that goes away (`| head -1`) ends it quietly, as Unix tools end."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli
from bench.core import faults
from bench.errors import EXIT_BROKEN_PIPE, EXIT_TERMINATED
from tests.factories import fake_run
from tests.test_cli import run_cli

ROOT = Path(__file__).resolve().parent.parent
SUBPROCESS_TIMEOUT_S = 60


@pytest.fixture
def sigterm_caught():
    """A SIGTERM handler of the test's own, so that a command that does not handle the signal
    does not end the tests; restored after."""
    caught = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
    yield caught
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_during_a_command_is_one_line_and_143(capsys, monkeypatch, sigterm_caught):
    def handler(args):
        os.kill(os.getpid(), signal.SIGTERM)
        return 0

    monkeypatch.setitem(cli.COMMANDS, "spaces", (handler, "x", None))
    own = signal.getsignal(signal.SIGTERM)
    code, _, err = run_cli(capsys, "spaces")
    assert (code, err) == (EXIT_TERMINATED, "terminated\n")
    assert sigterm_caught == []
    assert signal.getsignal(signal.SIGTERM) is own  # the caller's handler is back


def bench(*argv, env=None, stdout=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *argv],
        cwd=ROOT,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_sigterm_during_a_report_says_terminated(tmp_path):
    fake_run(tmp_path, run="r", n=3)
    env = {faults.KILL_ENV: "command.run:1:SIGTERM"}
    child = bench("report", "r", "--results", str(tmp_path), env=env)
    _, err = child.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert child.returncode == EXIT_TERMINATED
    assert err == "terminated\n"
    assert not (tmp_path / "r" / "report").exists()


# A command that prints more than a pipe's reader takes, in a process of its own.
PRINTS = """
import sys
from bench import cli
cli.COMMANDS["report"] = (lambda args: print("a line\\n" * 1000) or 0, "x", None)
cli.EARLY_CHECKS.pop("report")
sys.exit(cli.main(["report", "r"]))
"""


def test_a_closed_pipe_ends_a_command_quietly():
    child = subprocess.Popen(
        [sys.executable, "-c", PRINTS],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child.stdout.close()  # `| head -0`: the reader is gone before the command writes
    err = child.stderr.read()
    assert child.wait(timeout=SUBPROCESS_TIMEOUT_S) in (0, EXIT_BROKEN_PIPE)
    assert err == ""  # no error line, and no "Exception ignored" as Python exits


def test_a_closed_pipe_mid_output_leaves_the_rest_unwritten(monkeypatch, capsys):
    read_end, write_end = os.pipe()
    os.close(read_end)
    closed = os.fdopen(write_end, "w")

    def handler(args):
        print("a line for the reader that left", flush=True)
        return 0

    monkeypatch.setitem(cli.COMMANDS, "spaces", (handler, "x", None))
    monkeypatch.setattr(sys, "stdout", closed)
    try:
        assert cli.main(["spaces"]) == EXIT_BROKEN_PIPE
        print("after", file=closed, flush=True)  # now /dev/null: no error
    finally:
        closed.close()
    assert capsys.readouterr().err == ""


def test_a_broken_pipe_that_is_not_the_output_stays_a_failure(capsys, monkeypatch):
    def handler(args):
        raise BrokenPipeError(32, "Broken pipe")  # a child process's pipe, say

    monkeypatch.setitem(cli.COMMANDS, "spaces", (handler, "x", None))
    code, _, err = run_cli(capsys, "spaces")
    assert code == 1 and err.startswith("error (BrokenPipeError)")
