"""The CLI: one-line errors and exit codes (0 ok, 1 failure, 2 bad input, 130 interrupted)."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli, errors, runner
from tests.factories import fake_run

ROOT = Path(__file__).resolve().parent.parent


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_and_missing_command(capsys):
    assert cli.main(["--help"]) == 0
    assert "search" in capsys.readouterr().out
    assert cli.main([]) == 2
    assert cli.main(["search", "--help"]) == 0
    assert "--max-trials" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, said",
    [("a/b", "run name 'a/b'"), ("-x", "may not start with '-'"), ("r" * 300, "300 characters")],
)
def test_bad_run_name_is_a_usage_error(capsys, tmp_path, name, said):
    code, _, err = run_cli(capsys, "search", f"--run={name}", "--results", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, said)
    assert list(tmp_path.iterdir()) == []


def test_unknown_space_lists_the_known_ones(capsys, tmp_path):
    code, _, err = run_cli(capsys, "search", "--run", "r", "--space", "nope")
    assert code == 2
    assert_one_line_error(err, "unknown search space 'nope'", "seed", "cnn")


@pytest.mark.parametrize("flag", ["--max-trials", "--batch-size", "--train-limit", "--max-params"])
def test_non_positive_numbers_are_usage_errors(capsys, flag):
    code, _, err = run_cli(capsys, "search", "--run", "r", flag, "0")
    assert code == 2
    assert_one_line_error(err, flag)


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--run", "r", "--max-trials", "ten"],
        ["search", "--run", "r", "--tuner", "sometimes"],
        ["search", "--run", "<b>x</b>"],
        ["search", "--run", ".."],
        ["export", "ghost/../x"],
    ],
)
def test_malformed_numbers_names_and_runs_are_usage_errors(capsys, tmp_path, argv):
    code, _, err = run_cli(capsys, *argv, "--results", str(tmp_path))
    assert code == 2 and err.strip()
    assert list(tmp_path.iterdir()) == []


def test_missing_data_dir_is_named(capsys, tmp_path):
    missing = tmp_path / "nowhere"
    results = tmp_path / "results"
    code, _, err = run_cli(
        capsys, "search", "--run", "r", "--data-dir", str(missing), "--results", str(results)
    )
    assert code == 2
    assert_one_line_error(err, str(missing))
    assert not results.exists()


def test_corrupt_data_is_named_and_nothing_is_written(capsys, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for src in (ROOT / "data" / "mnist").glob("*-ubyte.gz"):
        (data_dir / src.name).write_bytes(src.read_bytes())
    bad = data_dir / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 8))
    results = tmp_path / "results"
    code, _, err = run_cli(
        capsys, "search", "--run", "r", "--data-dir", str(data_dir), "--results", str(results)
    )
    assert code == 2
    assert_one_line_error(err, str(bad))
    assert not results.exists()


def test_fashion_files_under_mnist_names_are_refused_then_searched_as_custom_data(capsys, tmp_path):
    from bench.core import data, records

    results = tmp_path / "results"
    fashion = str(data.FASHION_DIRS[0])
    argv = ["search", "--run", "r", "--data-dir", fashion, "--results", str(results)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, "is not MNIST", data.FINGERPRINTS["fashion_mnist"], "--custom-data")
    assert not results.exists()
    tiny = ["--space", "seed", "--tuner", "random", "--max-trials", "1", "--max-epochs", "1"]
    tiny += ["--train-limit", "256", "--val-size", "128", "--test-limit", "128"]
    code, _, err = run_cli(capsys, *argv, *tiny, "--custom-data")
    assert code == 0, err
    (record,) = records.load_records(results / "r")
    assert record["dataset"]["custom"] is True
    assert records.load_config(results / "r")["custom_data"] is True
    report = (results / "r" / "report" / "report.md").read_text()
    assert "| dataset | custom_data |" in report and "| mnist | True |" in report  # runs table


def test_changed_config_on_an_existing_run_is_refused(capsys, tmp_path):
    run_dir = fake_run(tmp_path, run="old")
    before = (run_dir / "config.json").read_text()
    config = json.loads(before)
    config.update(space="seed", tuner="random", dataset_sha256="x")
    (run_dir / "config.json").write_text(json.dumps(config))
    before = (run_dir / "config.json").read_text()
    code, _, err = run_cli(
        capsys,
        "search",
        "--run",
        "old",
        "--space",
        "cnn",
        "--results",
        str(tmp_path),
        "--train-limit",
        "10",
        "--test-limit",
        "10",
    )
    assert code == 2
    assert_one_line_error(err, "run 'old' exists with a different")
    assert (run_dir / "config.json").read_text() == before


def test_report_of_a_missing_run(capsys, tmp_path):
    code, _, err = run_cli(capsys, "report", "ghost", "--results", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, "ghost")


def test_report_out_that_is_a_file_is_a_usage_error_and_the_file_stays(capsys, tmp_path):
    fake_run(tmp_path, run="done", n=2)
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    report = ("report", "done", "--results", str(tmp_path), "--out")
    code, _, err = run_cli(capsys, *report, str(taken))
    assert code == 2
    assert_one_line_error(err, "notes.txt is a file, not a folder")
    assert taken.read_text() == "mine"
    beneath = taken / "report"  # a folder cannot be made inside a file
    code, _, err = run_cli(capsys, *report, str(beneath))
    assert code == 2
    assert_one_line_error(err, "cannot make the folder")


def test_export_without_finished_trials(capsys, tmp_path):
    fake_run(tmp_path, run="allfail", n=2, failed=2, with_seed_baseline=False)
    code, _, err = run_cli(capsys, "export", "allfail", "--results", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, "no finished trial")
    assert not (tmp_path / "allfail" / "best").exists()


def test_confirm_of_a_missing_run(capsys, tmp_path):
    code, _, err = run_cli(capsys, "confirm", "ghost", "--results", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, "not a run")


@pytest.mark.parametrize("flag", ["--epochs", "--seed", "--clean-epochs"])
def test_export_retrain_flags_without_retrain(capsys, tmp_path, flag):
    fake_run(tmp_path, run="done", n=2)
    code, _, err = run_cli(capsys, "export", "done", flag, "30", "--results", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, f"{flag} needs --retrain")
    assert not (tmp_path / "done" / "best").exists()


@pytest.mark.parametrize(
    "flags, refusal",
    [
        (["--ensemble-from", "top"], "--ensemble-from needs --ensemble K"),
        (["--ensemble", "1"], "--ensemble: must be at least 2, not 1 (2 to 20)"),
        (["--ensemble", "2", "--ensemble-from", "best"], "--ensemble-from must be one of"),
        (["--ensemble", "2", "--ensemble-from", "release"], "needs --retrain"),
        (["--ensemble", "3"], "no confirmed trial; run `bench confirm` first"),
    ],
)
def test_bad_ensemble_flags(capsys, tmp_path, flags, refusal):
    fake_run(tmp_path, run="done", n=2)
    code, _, err = run_cli(capsys, "export", "done", *flags, "--results", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, refusal)
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["config.json", "trials"]


def _raise(exc):
    def handler(args):
        raise exc

    return handler


def test_interrupt_and_unexpected_failure_codes(capsys, monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "spaces", (_raise(KeyboardInterrupt()), "x", None))
    code, _, err = run_cli(capsys, "spaces")
    assert code == 130 and err.strip() == "interrupted"
    monkeypatch.setitem(cli.COMMANDS, "spaces", (_raise(OSError("disk\nfull")), "x", None))
    code, _, err = run_cli(capsys, "spaces")
    assert code == 1
    assert_one_line_error(err, "OSError", "disk", "--debug")
    code, _, err = run_cli(capsys, "spaces", "--debug")
    assert code == 1 and "Traceback" in err


@pytest.mark.parametrize(
    "kind", [errors.ReportError, errors.ExportError, errors.ConfirmError, errors.RunLocked]
)
def test_bad_input_of_any_layer_exits_2_by_its_type(capsys, monkeypatch, kind):
    monkeypatch.setitem(cli.COMMANDS, "spaces", (_raise(kind("no such run\nmore")), "x", None))
    code, _, err = run_cli(capsys, "spaces")
    assert code == 2 and err == "error: no such run\n"
    monkeypatch.setitem(cli.COMMANDS, "spaces", (_raise(errors.SearchError("stopped")), "x", None))
    code, _, err = run_cli(capsys, "spaces")
    assert code == 1 and err.startswith("error (SearchError): stopped")


def test_python_dash_m_bench_lists_spaces():
    done = subprocess.run(
        [sys.executable, "-m", "bench", "spaces"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert names == ["seed", "cnn", "cnn_plus", "tiny"]
    assert done.stderr == ""  # TensorFlow's native start-up lines stay out of the terminal


@pytest.mark.parametrize(
    "argv, said",
    [
        (["search", "--run", "r", "--max-epochs", "0"], "--max-epochs: must be at least 1, not 0"),
        (["search", "--run", "r", "--budget", "soon"], "duration 'soon'"),
        (["search", "--run", "r", "--workers", "100"], "--workers 100 is more"),
        (["search", "--run=-x"], "may not start with '-'"),
        (["confirm", "a/b"], "run name 'a/b'"),
        (["search", "--run", "r", "--space", "nope"], "unknown search space 'nope'"),
        (["search", "--run", "r", "--space", "/no/such/space.py"], "/no/such/space.py does not"),
        (["search", "--run", "r", "--space", "no_such_pkg.space"], "is not found on Python's"),
    ],
)
def test_the_command_line_is_checked_before_tensorflow_loads(tmp_path, argv, said):
    script = (
        "import sys; from bench import cli; code = cli.main(sys.argv[1:]); "
        "print(code, 'tensorflow' in sys.modules)"
    )
    argv = [*argv[:1], "--results", str(tmp_path), *argv[1:]]
    done = subprocess.run(
        [sys.executable, "-c", script, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert_one_line_error(done.stderr, said)


def test_the_space_names_read_without_importing_the_spaces_are_the_registry(monkeypatch):
    import search_spaces

    monkeypatch.delitem(sys.modules, "search_spaces")  # as in a fresh `bench` process
    assert cli.space_names() == tuple(search_spaces.SPACES)


def test_an_error_after_tensorflow_loaded_is_still_one_line(tmp_path):
    missing = tmp_path / "nowhere"
    argv = ["search", "--run", "r", "--data-dir", str(missing), "--results", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert_one_line_error(done.stderr, str(missing))


def test_the_resume_command_repeats_every_setting_that_is_not_a_default():
    from bench.core.config import SearchConfig

    config = SearchConfig(
        run="n",
        space="seed",
        max_trials=7,
        results="out",
        trials_per_process=3,
        workers=2,
        dataset="fashion_mnist",
        tensorboard=True,
        warm_start=False,
        confirm_seeds=2,
    )
    command = runner.resume_command(config)
    assert command == (
        "bench search --run n --space seed --max-trials 7 --dataset fashion_mnist"
        " --no-warm-start --results out --trials-per-process 3 --workers 2"
        " --confirm-seeds 2 --tensorboard"
    )
    args = cli.build_parser().parse_args(command.split()[1:])
    assert (args.space, args.max_trials, args.results, args.workers) == ("seed", 7, "out", 2)
    assert (args.dataset, args.tensorboard, args.warm_start) == ("fashion_mnist", True, False)
    assert args.confirm_seeds == 2  # the night still confirms itself after the resume


def test_mixed_precision_without_a_gpu_is_a_usage_error(capsys, tmp_path, monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    code, _, err = run_cli(
        capsys, "search", "--run", "mp", "--results", str(tmp_path), "--mixed-precision"
    )
    assert code == 2
    assert_one_line_error(err, "--mixed-precision needs a GPU")
    assert not (tmp_path / "mp").exists()


NO_TENSORFLOW = """
import sys
from bench import cli
codes = [cli.main(["--help"]), cli.main(["report", "--help"])]
codes.append(cli.main(["report", "r", "--results", sys.argv[1]]))
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "keras_tuner"})
print(codes, heavy)
"""


def test_the_report_and_the_help_run_without_tensorflow(tmp_path):
    fake_run(tmp_path, run="r", n=3, failed=0)
    done = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.splitlines()[-1] == "[0, 0, 0] []", done.stderr[-2000:]
    assert (tmp_path / "r" / "report" / "index.html").is_file()
