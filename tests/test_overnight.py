"""A night that goes wrong: kills, signals, budgets, failing trials, bad input, --fresh."""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import search_spaces
from bench import cli
from bench.core import budget, records, swap
from bench.train import checkpoint

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--train-limit", "256", "--val-size", "128", "--test-limit", "128", "--max-epochs", "1"]
KILLS = 3
KILL_SEED = 7
TRIALS = 4


def bench_args(results: Path, run: str, *extra: str) -> list[str]:
    return ["search", "--run", run, "--results", str(results), "--tuner", "random", *TINY, *extra]


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(args: list[str]) -> subprocess.CompletedProcess:
    proc = start(args)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def wait_for_first_trial(proc: subprocess.Popen) -> None:
    for line in proc.stdout:
        if line.startswith("trial 1/"):
            return
    raise AssertionError(f"search ended before a trial: {proc.stderr.read()}")


def assert_run_is_whole(run_dir: Path, trials: int) -> None:
    for path in run_dir.rglob("*.json"):
        json.loads(path.read_text())  # every JSON file parses, KerasTuner's included
    done = records.load_records(run_dir)
    assert len(done) == trials
    assert {r["status"] for r in done} == {"completed"}
    table = pd.read_csv(run_dir / "report" / "trials.csv", dtype={"trial_id": str})
    assert len(table) == trials and table["trial_id"].is_unique
    assert sorted(table["trial_id"]) == sorted(r["trial_id"] for r in done)
    assert not list(run_dir.glob(f"{checkpoint.RESUME_DIR}/*"))  # no epoch backup left over


@pytest.mark.parametrize(
    "tuner",
    [
        pytest.param(["random"], marks=pytest.mark.slow),
        ["asha"],
    ],  # make soak kills a random search and its chief and workers the same way; asha continues
    ids=" ".join,
)
def test_sigkill_at_random_moments_then_resume(tmp_path, tuner):
    args = bench_args(tmp_path, "k", "--space", "tiny", "--tuner", *tuner)
    # Three epochs a trial, so that some kills land after an epoch backup.
    args += ["--max-trials", str(TRIALS), "--max-epochs", "3"]
    rng = random.Random(KILL_SEED)
    for _ in range(KILLS):
        proc = start(args)
        time.sleep(rng.uniform(4.0, 12.0))  # start-up takes ~4 s, a tiny trial 1-5 s
        proc.kill()
        proc.communicate()
    done = finish(args)
    assert done.returncode == 0, done.stderr
    assert_run_is_whole(tmp_path / "k", TRIALS)


def test_sigterm_keeps_finished_trials_prints_the_resume_command_and_it_works(tmp_path):
    args = bench_args(tmp_path, "t", "--space", "tiny", "--max-trials", "3")
    proc = start(args)
    wait_for_first_trial(proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    resume = err.strip().splitlines()[-1].split("Resume with: ", 1)[1]
    assert resume.startswith("bench search --run t")
    assert (tmp_path / "t" / "report" / "index.html").exists()
    kept = records.load_records(tmp_path / "t")
    assert kept and all(r["status"] == "completed" for r in kept)
    done = finish(resume.split()[1:])
    assert done.returncode == 0, done.stderr
    assert_run_is_whole(tmp_path / "t", 3)


def test_sigint_exits_130_with_a_report(tmp_path):
    proc = start(bench_args(tmp_path, "i", "--space", "tiny"))
    wait_for_first_trial(proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped by SIGINT" in err
    assert (tmp_path / "i" / "report" / "report.md").exists()


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def spend_the_budget_in_the_first_batch(monkeypatch) -> None:
    """The run's clock jumps past its whole budget during the first batch trained, so that
    the cut lands inside a trial whatever the machine's pace."""
    real_check = budget.Budget.check

    def check(self):
        skipped = self.seconds or 0.0
        clock = types.SimpleNamespace(monotonic=lambda: time.monotonic() + skipped)
        monkeypatch.setattr(budget, "time", clock)
        real_check(self)

    monkeypatch.setattr(budget.Budget, "check", check)


def test_a_trial_cut_by_the_budget_runs_again_on_resume(tmp_path, capsys, monkeypatch):
    args = bench_args(tmp_path, "c", "--space", "seed", "--max-epochs", "2")
    with monkeypatch.context() as patched:
        spend_the_budget_in_the_first_batch(patched)
        code, out, _ = run_cli(capsys, *args, "--budget", "1h")
    assert code == 0 and "stopped the trial in progress" in out
    assert records.load_records(tmp_path / "c") == []
    code, out, _ = run_cli(capsys, *args, "--max-epochs", "1")
    assert code == 2  # a changed setting is refused, not mixed in
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "resuming" in out
    (record,) = records.load_records(tmp_path / "c")
    assert record["status"] == "completed" and record["epochs_run"] == 2


def nan_space():
    def build(hp):
        model = keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                keras.layers.Flatten(),
                keras.layers.Lambda(lambda x: x * np.nan),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    return types.SimpleNamespace(build=build, FIT_DEFAULTS={}, DESCRIPTION="nan")


def test_nan_loss_and_oversized_models_are_failed_trials(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(search_spaces.SPACES, "nan", nan_space())
    code, _, err = run_cli(capsys, *bench_args(tmp_path, "n", "--space", "nan"))
    assert code == 0, err
    (record,) = records.load_records(tmp_path / "n")
    assert record["status"] == "failed" and "loss became nan in epoch 1" in record["error"]
    # The traceback stays in the record; the terminal gets the progress line alone.
    assert "Traceback" in record["traceback"] and "Traceback" not in err
    code, _, err = run_cli(
        capsys, *bench_args(tmp_path, "p", "--space", "seed"), "--max-params", "1000", "--debug"
    )
    assert code == 0, err
    assert "Traceback" in err  # --debug shows it as the trial fails
    (record,) = records.load_records(tmp_path / "p")
    assert record["status"] == "failed" and "Oversized model: 59933 parameters" in record["error"]
    report = (tmp_path / "p" / "report" / "report.md").read_text()
    assert "Oversized model" in report and "No trial finished" in report


def always_broken(hp):
    raise ValueError("no model here")


def test_a_space_whose_default_model_fails_is_bad_input(tmp_path, capsys, monkeypatch):
    broken = types.SimpleNamespace(build=always_broken, FIT_DEFAULTS={}, DESCRIPTION="x")
    monkeypatch.setitem(search_spaces.SPACES, "broken", broken)
    code, _, err = run_cli(capsys, *bench_args(tmp_path, "x", "--space", "broken"))
    assert code == 2
    assert "space 'broken' cannot build its default model: ValueError: no model here" in err
    assert not (tmp_path / "x").exists()


def test_spaces_that_do_not_import_are_bad_input(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "search_spaces", None)  # import now raises ImportError
    code, _, err = run_cli(capsys, *bench_args(tmp_path, "x"))
    assert code == 2 and "the search spaces do not import" in err
    assert cli.main(["spaces"]) == 2


def test_a_results_path_that_is_a_file_is_bad_input(tmp_path, capsys):
    results = tmp_path / "file"
    results.write_text("not a folder")
    code, _, err = run_cli(capsys, *bench_args(results, "x", "--space", "seed"))
    assert code == 2 and "is not writable" in err
    assert results.read_text() == "not a folder"


@pytest.mark.parametrize("budget", ["7x", "0m", "soon"])
def test_bad_budgets_are_bad_input(tmp_path, capsys, budget):
    code, _, err = run_cli(capsys, *bench_args(tmp_path, "x"), "--budget", budget)
    assert code == 2 and "duration" in err


def test_fresh_moves_the_old_run_aside(tmp_path, capsys, figures_left_out):
    args = bench_args(tmp_path, "f", "--space", "seed")
    assert run_cli(capsys, *args)[0] == 0
    (old,) = records.load_records(tmp_path / "f")
    code, out, _ = run_cli(capsys, *args, "--fresh")
    assert code == 0 and "moved the old run to" in out
    # Between the trial lines, a line per epoch of the trial in progress.
    assert re.search(r"^  trial \w+ epoch 1/1 \| elapsed .* \| loss .* val 0\.\d{4}$", out, re.M)
    (aside,) = tmp_path.glob("f.old-*")
    assert records.load_records(aside) == [old]
    (new,) = records.load_records(tmp_path / "f")
    assert new["started_at"] >= old["started_at"]


def test_a_resume_refuses_damaged_files_naming_them_and_keeps_them(
    tmp_path, capsys, figures_left_out
):
    args = bench_args(tmp_path, "d", "--space", "seed")
    assert run_cli(capsys, *args)[0] == 0
    (record,) = records.trials_dir(tmp_path / "d").glob("*.json")
    whole = record.read_text()
    record.write_text(whole[:50])
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert_one_line(err, f"{record} is damaged", "--fresh")
    assert record.read_text() == whole[:50]
    record.write_text(whole)
    oracle = tmp_path / "d" / records.TUNER_PROJECT / "oracle.json"
    oracle.write_text("garbage")
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert_one_line(err, f"{oracle} is damaged", "--fresh")
    assert oracle.read_text() == "garbage"


def disk_filling_after_the_first_trial(run_dir: Path, monkeypatch) -> None:
    """shutil.disk_usage as a disk that, once a trial's record is written, has no room for a
    model's checkpoint and epoch backup (checked for the run folder itself), while the small
    files after them (the records, the report) still fit."""
    real = shutil.disk_usage

    def usage(path):
        free = real(path).free
        if Path(path) == run_dir and any(records.trials_dir(run_dir).glob("*.json")):
            free = records.DISK_MARGIN_BYTES
        return real(path)._replace(free=free)

    monkeypatch.setattr(records.shutil, "disk_usage", usage)


def test_a_full_disk_stops_the_search_like_a_budget_and_the_same_command_resumes(
    tmp_path, capsys, monkeypatch
):
    args = bench_args(tmp_path, "full", "--space", "tiny", "--max-trials", "2")
    (tmp_path / "full" / "report").mkdir(parents=True)  # its files are checked there
    with monkeypatch.context() as patched:
        disk_filling_after_the_first_trial(tmp_path / "full", patched)
        code, out, err = run_cli(capsys, *args)
    assert code == 1, out + err
    assert len(err.strip().splitlines()) == 1, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: the disk is full: ") and str(tmp_path / "full") in line
    assert "the same command resumes" in line
    (first,) = records.load_records(tmp_path / "full")  # kept; the second was cut, not failed
    assert not [p for p in (tmp_path / "full").rglob(".*") if swap.SCRATCH.match(p.name)]
    assert (tmp_path / "full" / "report" / "report.md").is_file()  # small enough to fit
    code, out, err = run_cli(capsys, *args)  # space freed
    assert code == 0, err
    assert [r["status"] for r in records.load_records(tmp_path / "full")] == ["completed"] * 2


def test_a_run_does_not_start_on_a_full_disk(tmp_path, capsys, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(records.shutil, "disk_usage", lambda path: real(path)._replace(free=0))
    code, _, err = run_cli(capsys, *bench_args(tmp_path / "results", "none", "--space", "seed"))
    assert code == 1
    assert_one_line(err, "the disk is full", str(tmp_path / "results"))
    assert not (tmp_path / "results").exists()


def assert_one_line(err: str, *fragments: str) -> None:
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and all(f in line for f in fragments), line


def test_trials_per_process_runs_each_share_in_a_fresh_process(tmp_path, capsys, figures_left_out):
    # Whatever else a week-long run may grow (docs/design.md), a fresh process per share of
    # trials bounds it.
    args = bench_args(tmp_path, "w", "--space", "tiny", "--max-trials", "4")
    code, out, err = run_cli(capsys, *args, "--trials-per-process", "2")
    assert code == 0, err
    done = records.load_records(tmp_path / "w")
    assert len(done) == 4 and {r["status"] for r in done} == {"completed"}
    by_pid: dict[int, list[float]] = {}
    for record in done:
        by_pid.setdefault(record["process"]["pid"], []).append(record["process"]["rss_mb"])
    assert len(by_pid) == 2 and all(len(rss) == 2 for rss in by_pid.values())
    assert all(mb > 0 for rss in by_pid.values() for mb in rss)
    assert (tmp_path / "w" / "report" / "index.html").exists()


def test_sigterm_to_the_supervisor_reaches_its_worker(tmp_path):
    args = bench_args(tmp_path, "s", "--space", "tiny", "--max-trials", "6")
    proc = start([*args, "--trials-per-process", "3"])
    wait_for_first_trial(proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Resume with: bench search --run s" in err
    assert (tmp_path / "s" / "report" / "index.html").exists()
