"""Every number a command takes is checked against its range, and every folder it writes for
being writable, before anything is written: one line naming the flag or folder, exit 2."""

import argparse
import errno
import json
import os
from pathlib import Path

import pytest

import bench
from bench import cli, runner
from bench.core import budget, config, records
from bench.core.config import MAX_SEED, SearchConfig
from bench.errors import BadInput, ConfigError, ConfirmError, ExportError
from bench.perf import commands as perf
from tests.factories import fake_run
from tests.test_cli import assert_one_line_error, run_cli

TINY = ["--space", "tiny", "--tuner", "random", "--max-trials", "1", "--max-epochs", "1"]
TINY += ["--train-limit", "256", "--val-size", "128", "--test-limit", "128"]
# What each command needs besides the flag under test.
COMMAND_ARGS = {
    "search": ["--run", "r"],
    "worker": ["--run", "r"],
    "confirm": ["r"],
    "export": ["r", "--retrain"],
    "predict": ["model", "image.png"],
    "report": ["r"],
}


REAL = {"import": cli.import_tensorflow_quietly, "search": runner.search_here}


@pytest.fixture(autouse=True)
def _no_work(monkeypatch):
    """A command that got past its checks goes no further: no training starts in these tests
    (the training commands load TensorFlow first; a search through the API calls
    search_here)."""

    def started(*args, **kwargs):
        raise RuntimeError("the command started its work")

    monkeypatch.setattr(cli, "import_tensorflow_quietly", started)
    monkeypatch.setattr(runner, "search_here", started)


@pytest.fixture
def work_allowed(monkeypatch):
    """For the tests of what happens once the work has started."""
    monkeypatch.setattr(cli, "import_tensorflow_quietly", REAL["import"])
    monkeypatch.setattr(runner, "search_here", REAL["search"])


def numeric_flags(parser: argparse.ArgumentParser, path=()):
    """(command path, option, action) of every option that takes a number, subcommands too."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from numeric_flags(sub, (*path, name))
        elif action.option_strings and action.type is not None and action.type is not str:
            yield path, action.option_strings[0], action


BENCH_FLAGS = list(numeric_flags(cli.build_parser()))
PERF_FLAGS = list(numeric_flags(perf.build_parser()))


def flag_id(entry) -> str:
    return " ".join([*entry[0], entry[1]])


@pytest.mark.parametrize("entry", BENCH_FLAGS + PERF_FLAGS, ids=flag_id)
def test_every_numeric_flag_has_a_range_or_choices(entry):
    _, _, action = entry
    assert hasattr(action.type, "limits") or action.choices, "an unbounded number"


@pytest.mark.parametrize(
    "entry", [e for e in BENCH_FLAGS if hasattr(e[2].type, "limits")], ids=flag_id
)
def test_every_numeric_flag_refuses_a_number_past_its_range_before_any_write(
    capsys, tmp_path, entry
):
    (command,), flag, action = entry
    lowest, highest = action.type.limits
    argv = [command, *COMMAND_ARGS[command], flag, str(highest + 1)]
    if command != "predict":
        argv += ["--results", str(tmp_path)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, flag, str(highest + 1), f"({lowest} to {highest})")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "entry", [e for e in PERF_FLAGS if hasattr(e[2].type, "limits")], ids=flag_id
)
def test_every_benchmark_number_past_its_range_is_a_usage_error(capsys, entry):
    (command,), flag, action = entry
    lowest, highest = action.type.limits
    with pytest.raises(SystemExit) as stop:
        perf.build_parser().parse_args([command, flag, str(highest + 1)])
    assert stop.value.code == 2
    assert f"argument {flag}: must be at most {highest}" in capsys.readouterr().err


@pytest.mark.parametrize("seed", ["4294967296", "99999999999999999999"])
def test_a_seed_past_32_bits_is_refused_and_the_run_name_stays_free(capsys, tmp_path, seed):
    argv = ["search", "--run", "r", "--results", str(tmp_path), *TINY]
    code, _, err = run_cli(capsys, *argv, "--seed", seed)
    assert code == 2
    assert_one_line_error(err, "--seed", seed, f"(0 to {MAX_SEED - config.ORACLE_SEED_OFFSET})")
    assert not (tmp_path / "r").exists()


def test_seeds_a_confirmation_offsets_must_stay_in_range_too(capsys, tmp_path):
    seed = MAX_SEED - config.CONFIRM_SEED_OFFSET - 2
    argv = ["search", "--run", "r", "--results", str(tmp_path), "--seed", str(seed)]
    code, _, err = run_cli(capsys, *argv, "--confirm-seeds", "3")
    assert code == 2
    assert_one_line_error(err, "--confirm-seeds", str(MAX_SEED + 1), f"at most {seed - 1}")
    assert list(tmp_path.iterdir()) == []
    SearchConfig(run="r", seed=seed, confirm_seeds=2).validate()  # the last seed, MAX_SEED


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--run", "r", "--workers", "2", "--listen", "127.0.0.1:99999"],
        ["worker", "--run", "r", "--chief", "127.0.0.1:0"],
    ],
)
def test_an_address_with_a_port_past_its_range_is_refused_before_any_write(capsys, tmp_path, argv):
    code, _, err = run_cli(capsys, *argv, "--results", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, "is not HOST:PORT")
    assert list(tmp_path.iterdir()) == []


def run_files(run_dir: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_an_export_seed_past_32_bits_is_refused_with_the_run_untouched(capsys, tmp_path):
    run_dir = fake_run(tmp_path, run="done", n=2)
    before = run_files(run_dir)
    argv = ["export", "done", "--results", str(tmp_path), "--retrain"]
    code, _, err = run_cli(capsys, *argv, "--seed", "99999999999999")
    assert code == 2
    assert_one_line_error(err, "--seed", "99999999999999", f"(0 to {MAX_SEED})")
    assert run_files(run_dir) == before


def test_confirm_seeds_are_capped_and_offset_from_the_runs_seed(capsys, tmp_path):
    run_dir = fake_run(tmp_path, run="done", n=2)
    code, _, err = run_cli(capsys, "confirm", "done", "--results", str(tmp_path), "--seeds", "1e11")
    assert code == 2 and "--seeds" in err
    code, _, err = run_cli(
        capsys, "confirm", "done", "--results", str(tmp_path), "--seeds", "99999999999"
    )
    assert code == 2
    assert_one_line_error(err, "--seeds", "99999999999", f"(1 to {config.MAX_CONFIRM_SEEDS})")
    saved = json.loads((run_dir / records.CONFIG_FILE).read_text())
    saved["seed"] = MAX_SEED - config.CONFIRM_SEED_OFFSET - 1
    records.atomic_write_json(run_dir / records.CONFIG_FILE, saved)
    before = run_files(run_dir)
    code, _, err = run_cli(capsys, "confirm", "done", "--results", str(tmp_path), "--seeds", "2")
    assert code == 2
    assert_one_line_error(err, "--seeds asks for seeds up to", str(MAX_SEED + 1))
    assert run_files(run_dir) == before


def test_the_api_checks_the_same_ranges(tmp_path):
    with pytest.raises(ConfigError, match=r"--seed must be at most 4294967294, not 4294967296"):
        bench.run_search("x", space="tiny", seed=2**32, results=tmp_path)
    with pytest.raises(ConfirmError, match=r"--seeds must be at most 100, not 99999999999"):
        bench.confirm("x", seeds=99_999_999_999, results=tmp_path)
    with pytest.raises(ExportError, match=r"--epochs must be at most 1000, not 5000"):
        config.Recipe(retrain=True, epochs=5000).validate()
    with pytest.raises(ConfigError, match="must be a whole number, not '3'"):
        SearchConfig(run="r", max_epochs="3").validate()
    assert list(tmp_path.iterdir()) == []


def test_an_ensemble_of_releases_keeps_its_seeds_in_range(tmp_path):
    run_dir = fake_run(tmp_path, run="done", n=2)
    recipe = config.Recipe(retrain=True, seed=MAX_SEED - 1)
    with pytest.raises(ExportError, match=rf"--ensemble asks for seeds up to {MAX_SEED + 1}"):
        bench.api.check_release_seeds(run_dir, recipe, 3)
    bench.api.check_release_seeds(run_dir, recipe, 2)


# -- budgets -----------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["1s", "32s"])
def test_a_budget_too_short_for_a_trial_is_refused_up_front(capsys, tmp_path, given):
    argv = ["search", "--run", "r", "--results", str(tmp_path), *TINY, "--budget", given]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    least = config.duration_text(budget.MIN_BUDGET_S)
    assert_one_line_error(err, f"--budget {given} is too short", f"at least {least}")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="too short"):
        bench.run_search("r", space="tiny", budget=given, results=tmp_path)


def test_a_budget_past_a_month_is_refused(capsys, tmp_path):
    argv = ["search", "--run", "r", "--results", str(tmp_path), *TINY]
    code, _, err = run_cli(capsys, *argv, "--budget", "99999999999999h")
    assert code == 2
    assert_one_line_error(err, "--budget 99999999999999h is longer than", "720h")


def test_what_a_search_starts_may_get_less_than_the_least_budget(tmp_path):
    """A supervised process or a worker gets what is left of the run's budget, which may be a
    second; only the budget a person gives must hold a trial."""
    argv = ["search", "--run", "r", "--results", str(tmp_path), "--budget", "1s"]
    args = cli.build_parser().parse_args([*argv, "--role", "process"])
    cli.check_search(args)
    assert budget.check_budget(budget.MIN_BUDGET_S) == budget.MIN_BUDGET_S
    assert budget.check_budget(None) is None


# -- folders the user cannot write ------------------------------------------------------


@pytest.mark.parametrize(
    "argv, folder",
    [
        (["search", "--run", "done"], "done"),
        (["search", "--run", "new"], "."),
        (["confirm", "done"], "done"),
        (["export", "done"], "done"),
        (["report", "done"], "done"),
        (["worker", "--run", "done", "--chief", "127.0.0.1:1"], "done"),
    ],
)
def test_a_folder_the_command_cannot_write_is_named_before_any_work(
    capsys, tmp_path, monkeypatch, argv, folder
):
    fake_run(tmp_path, run="done", n=2)
    before = run_files(tmp_path)
    denied = (tmp_path / folder).resolve()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: Path(p).resolve() != denied and real_access(p, mode)
    )
    code, _, err = run_cli(capsys, *argv, "--results", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, "cannot write", "permission denied")
    assert str(denied) in err or str(tmp_path / folder) in err
    assert run_files(tmp_path) == before


def test_a_write_the_system_refuses_mid_search_is_one_line_naming_the_folder(
    capsys, tmp_path, monkeypatch, work_allowed
):
    run_dir, real_open = tmp_path / "r", os.open
    run_dir.mkdir()

    def refused(path, flags, *args, **kwargs):
        if Path(path).parent == run_dir and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(cli, "check_writable", lambda folder, deep=True: folder)  # past it
    monkeypatch.setattr(os, "open", refused)
    code, _, err = run_cli(capsys, "search", "--run", "r", "--results", str(tmp_path), *TINY)
    assert code == 2
    assert err == f"error: cannot write {run_dir}: permission denied\n"
    assert list(run_dir.iterdir()) == []


@pytest.mark.parametrize("number", [errno.EACCES, errno.EPERM, errno.EROFS])
@pytest.mark.parametrize("where", ["file", "folder", "nothing"])
def test_a_permission_error_anywhere_is_bad_input_naming_the_folder(
    capsys, tmp_path, monkeypatch, work_allowed, number, where
):
    target = {"file": tmp_path / "run" / ".lock", "folder": tmp_path, "nothing": None}[where]

    def handler(args):
        raise PermissionError(number, os.strerror(number), None if target is None else str(target))

    monkeypatch.setitem(cli.COMMANDS, "spaces", (handler, "x", None))
    code, _, err = run_cli(capsys, "spaces")
    assert code == 2
    said = {"file": f"cannot write {tmp_path / 'run'}", "folder": f"cannot write {tmp_path}"}
    why = os.strerror(number)
    assert_one_line_error(err, said.get(where, ""), why[:1].lower() + why[1:])


def test_other_os_errors_stay_failures(capsys, monkeypatch, work_allowed):
    def broken(args):
        raise OSError(errno.EIO, "Input/output error", "/x")

    monkeypatch.setitem(cli.COMMANDS, "spaces", (broken, "x", None))
    code, _, err = run_cli(capsys, "spaces")
    assert code == 1 and err.startswith("error (OSError)")


def test_bad_input_of_the_api_is_bad_input_before_any_work(tmp_path):
    with pytest.raises(BadInput):
        bench.run_search("x", space="tiny", max_trials=10**9, results=tmp_path)
    assert list(tmp_path.iterdir()) == []
