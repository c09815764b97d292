"""bench.perf.commands: one table of benchmark commands, each with its flags and handler."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core import records
from bench.perf import commands, policies
from tests.factories import fake_record

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_every_command_in_the_table_parses_with_its_own_flags():
    parser = commands.build_parser()
    for name, (handler, _, _) in commands.COMMANDS.items():
        argv = [name, "--results", "r"]
        if name in policies.CHILD_COMMANDS.values():
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


def fake_runs(calls: list[str], die_at: int | None = None):
    """A stand-in for the runs' processes: each writes what a short real run leaves (a trial
    record, or an outside optimizer's events and settings) and, the die_at-th, is
    interrupted half-way."""

    def run_child(command: list[str]) -> None:
        run_dir = (
            Path(command[command.index("--results") + 1]) / command[command.index("--run") + 1]
        )
        calls.append(run_dir.name)
        run_dir.mkdir(parents=True)
        if len(calls) == die_at:
            (run_dir / "half-done").write_text("")
            raise KeyboardInterrupt
        seed = int(command[command.index("--seed") + 1])
        if set(command) & set(policies.CHILD_COMMANDS.values()):
            events = [{"ended_at": records.utc_now(), "epochs": 2, "configuration": "{}",
                       "val_accuracy": 0.99, "test_accuracy": 0.991}]  # fmt: skip
            records.atomic_write_json(run_dir / policies.EVENTS_FILE, events)
            records.atomic_write_json(run_dir / policies.OPTIMIZER_FILE, {"optimizer": "x"})
        else:
            record = fake_record(run=run_dir.name, seed=seed, finished_at=records.utc_now())
            records.atomic_write_json(records.record_path(run_dir, "00"), record)

    return run_child


def test_a_benchmark_cut_short_keeps_its_finished_runs_and_the_next_runs_only_the_rest(
    tmp_path, monkeypatch
):
    argv = ["search", "--results", str(tmp_path), "--seeds", "0", "1", "--budget", "60"]
    argv += ["--policies", "random", "optuna"]
    out = tmp_path / commands.PERF_DIR
    calls: list[str] = []
    monkeypatch.setattr(policies, "run_child", fake_runs(calls, die_at=3))
    assert commands.main(argv) == 130
    assert calls == [policies.run_name(p, 0) for p in ("random", "optuna")] + [
        "bench-search-random-1"
    ]
    finished = {path.parent.name for path in out.glob(f"*/{policies.SUMMARY_FILE}")}
    assert finished == set(calls[:2])  # seed 0 whole
    assert not (out / "search.json").exists()

    calls.clear()
    monkeypatch.setattr(policies, "run_child", fake_runs(calls))
    assert commands.main(argv) == 0
    assert calls == ["bench-search-random-1", "bench-search-optuna-1"]  # the cut one afresh
    assert not (out / "bench-search-random-1" / "half-done").exists()
    result = json.loads((out / "search.json").read_text())
    got = [(r["policy"], r["seed"], r["search_seed"]) for r in result["runs"]]
    assert got == [(p, s, policies.search_seed(s)) for s in (0, 1) for p in ("random", "optuna")]
    assert [r["trials"] for r in result["runs"]] == [1, 1, 1, 1]
    assert result["field"]["paired_seeds"] == [0, 1] and (out / "search.png").is_file()

    calls.clear()
    assert commands.main([*argv, "--max-epochs", "2"]) == 0  # other settings: all run again
    assert len(calls) == 4


def test_the_search_seeds_are_benchmark_seeds_within_their_range():
    parser = commands.build_parser()
    assert parser.parse_args(["search"]).seeds == [0, 1, 2, 3, 4]
    assert parser.parse_args(["search", "--seeds", "3", "7"]).seeds == [3, 7]
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["search", "--seeds", str(policies.MAX_BENCH_SEED + 1)])
    assert exit_info.value.code == 2


def test_dehb_is_refused_up_front_below_two_epochs(tmp_path, monkeypatch, capsys):
    calls: list[str] = []
    monkeypatch.setattr(policies, "run_child", fake_runs(calls))
    argv = ["search", "--results", str(tmp_path), "--seeds", "0", "--budget", "60"]
    assert commands.main([*argv, "--max-epochs", "1", "--policies", "random", "dehb"]) == 2
    assert calls == [] and "dehb needs --max-epochs 2" in capsys.readouterr().err
