"""bench.perf.commands: one table of benchmark commands, each with its flags and handler."""

import subprocess
import sys
from pathlib import Path

import pytest

from bench.perf import commands

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_every_command_in_the_table_parses_with_its_own_flags():
    parser = commands.build_parser()
    for name, (handler, _, _) in commands.COMMANDS.items():
        argv = [name, "--results", "r"]
        if name == "optuna-child":
            argv += ["--run", "x", "--seed", "0", "--budget", "60", "--max-epochs", "1"]
        args = parser.parse_args(argv)
        assert args.handler is handler and args.results == "r"
    assert parser.parse_args(["search", "--budget", "60"]).budget == 60
    with pytest.raises(SystemExit):
        parser.parse_args(["suite", "--budget", "60"])  # a flag of another command


def test_each_benchmark_has_a_line_of_help_and_the_child_processes_none():
    lines = commands.build_parser().format_help().splitlines()
    for name, (_, help_text, _) in commands.COMMANDS.items():
        described = [line.split(None, 1) for line in lines if line.split()[:1] == [name]]
        if help_text is None:
            assert described == []
        else:  # argparse may wrap a long help onto the next line
            ((_, shown),) = described
            assert help_text.startswith(shown)


def test_python_m_bench_perf_runs_the_table(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench.perf", "table", "--results", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2  # nothing measured there yet
    assert "none yet" in done.stderr
