"""bench's Python API: the CLI's settings and defaults, lazy imports, one-line errors as types."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import bench
from bench import api, runner
from bench.core.config import Recipe
from bench.errors import BadInput, ReportError
from tests.factories import fake_run

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_import_bench_loads_nothing_heavy_and_the_report_side_no_tensorflow(tmp_path):
    fake_run(tmp_path, run="r", n=4, failed=1)
    code = (
        "import sys, bench\n"
        "heavy = lambda: sorted({m.split('.')[0] for m in sys.modules} & "
        "{'tensorflow', 'keras', 'keras_tuner', 'pandas', 'matplotlib'})\n"
        "print(heavy())\n"
        f"frame = bench.trials('r', results={str(tmp_path)!r})\n"
        f"bench.write_report('r', results={str(tmp_path)!r})\n"
        f"best = bench.recommend('r', results={str(tmp_path)!r})\n"
        "print(len(frame), best['run'], [m for m in heavy() if m.startswith(('tens', 'ker'))])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["[]", "5 r []"]  # 4 trials and the seed baseline
    assert (tmp_path / "r" / "report" / "index.html").is_file()


def test_the_facade_names_every_function_of_the_api():
    assert set(bench.__all__) <= set(dir(bench))
    assert all(getattr(bench, name) is getattr(api, name) for name in bench.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        bench.nope  # noqa: B018


def captured_config(monkeypatch) -> list:
    seen = []
    monkeypatch.setattr(runner, "search_here", lambda config, role, fresh: seen.append(config))
    return seen


def test_a_search_takes_the_spaces_fit_defaults_as_the_command_line_does(tmp_path, monkeypatch):
    seen = captured_config(monkeypatch)
    with pytest.raises(KeyboardInterrupt):  # the stand-in returns no exit code
        bench.run_search("a", space="cnn_plus", results=tmp_path, budget="1h30m")
    with pytest.raises(KeyboardInterrupt):
        bench.run_search("b", space="cnn_plus", results=tmp_path, patience=4)
    first, second = seen
    assert first.patience == 15 and first.budget == 5400  # cnn_plus's FIT_DEFAULTS
    assert second.patience == 4  # what the caller gave wins, as a flag does
    assert first.run_dir == tmp_path / "a"


def test_a_search_returns_its_run_folder_when_it_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "search_here", lambda config, role, fresh: 0)
    assert bench.run_search("c", space="tiny", results=tmp_path) == tmp_path / "c"


@pytest.mark.parametrize(
    "call, said",
    [
        (lambda r: bench.run_search("x", space="nope", results=r), "unknown search space 'nope'"),
        (lambda r: bench.run_search("x", workers=2, results=r), "workers run several processes"),
        (lambda r: bench.run_search("x", max_epochs=0, results=r), "--max-epochs must be at least"),
        (lambda r: bench.trials(results=r), "name at least one run"),
        (lambda r: bench.write_report("a/b", results=r), "run name 'a/b'"),
        (lambda r: bench.export("x", ensemble_from="top", results=r), "ensemble_from needs"),
    ],
)
def test_bad_calls_raise_the_clis_bad_input_before_any_work(tmp_path, call, said):
    with pytest.raises(BadInput, match=said):
        call(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_run_is_a_report_error(tmp_path):
    with pytest.raises(ReportError, match="does not exist"):
        bench.trials("gone", results=tmp_path)


def test_an_export_names_the_command_that_does_the_same_for_its_card():
    recipe = Recipe(retrain=True, epochs=25, clean_epochs=1)
    command = api.export_command("night", recipe, "auto", 3, "release")
    assert shlex.split(command) == [
        "bench", "export", "night", "--retrain", "--epochs", "25", "--clean-epochs", "1",
        "--ensemble", "3", "--ensemble-from", "release",
    ]  # fmt: skip
    assert (
        api.export_command("n", Recipe(), "confirmed", None, None) == "bench export n --confirmed"
    )
    single = api.export_command("n", Recipe(retrain=True), "single", None, None, "train")
    assert single == "bench export n --retrain --single-trial --reference train"


def test_the_api_doc_describes_every_function_with_each_of_its_parameters():
    import inspect

    rows = (REPO_ROOT / "docs" / "api.md").read_text().splitlines()
    for name in bench.__all__:
        (row,) = [line for line in rows if line.startswith(f"| `{name}(")]
        for parameter in inspect.signature(getattr(api, name)).parameters:
            assert parameter in row, (name, parameter)


SPACE_FILE = """
import keras

FIT_DEFAULTS = {"batch_size": 32}


def build(hp):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
"""


def test_a_search_of_a_space_file_records_its_path_made_absolute(tmp_path, monkeypatch):
    (tmp_path / "mine.py").write_text(SPACE_FILE)
    monkeypatch.chdir(tmp_path)
    seen = captured_config(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        bench.run_search("f", space="mine.py", results=tmp_path / "results")
    (config,) = seen
    assert config.space == str(tmp_path / "mine.py") and config.batch_size == 32
