"""Spaces from people's own files: searched, reported, confirmed and exported like registered
ones; a bad or changed file is one line naming it (exit 2), with nothing written."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
import pytest

import search_spaces
from bench.core import records, space_source
from bench.core.config import SearchConfig
from bench.errors import SpaceError
from bench.release import ensemble, export
from bench.search import confirm, tuning
from bench.train import spaces
from tests.factories import fake_run
from tests.test_cli import assert_one_line_error, run_cli

REPO_ROOT = Path(__file__).resolve().parent.parent
USAGE = REPO_ROOT / "docs" / "usage.md"
SUBPROCESS_TIMEOUT_S = 60
EXAMPLE_HEADING = "### Your own space: a file or a module"
EXAMPLE_LABEL = "1x[8] lr1e-03"  # the example's describe(hp) of its defaults
IMAGES = 4
TINY_CONFIG = dict(train_limit=256, val_size=128, test_limit=128, max_epochs=1)
TINY = ["--tuner", "random", "--max-trials", "1", "--max-epochs", "1"]
TINY += ["--train-limit", "256", "--val-size", "128", "--test-limit", "128"]
HEADER = "import keras\nfrom keras import layers\n\n"
MODEL = (
    "def model(classes):\n"
    "    return keras.Sequential(\n"
    "        [keras.Input((28, 28, 1)), layers.Flatten(), layers.Dense(classes, 'softmax')]\n"
    "    )\n\n"
)
COMPILE = "    m.compile('adam', 'sparse_categorical_crossentropy', metrics=['accuracy'])\n"
BAD_FILES = {
    "syntax error": ("def build(hp:\n    pass\n", "does not import: SyntaxError"),
    "import error": ("import userpkg_not_installed\n", "does not import: ModuleNotFoundError"),
    "no build": ("BUILD = None\n", "defines no build(hp) function"),
    "build raises": (
        "def build(hp):\n    raise ValueError('no model here')\n",
        "cannot build its default model: ValueError: no model here",
    ),
    "not a model": ("def build(hp):\n    return 42\n", "build(hp) returned int, not a model"),
    "not compiled": (
        HEADER + MODEL + "def build(hp):\n    return model(10)\n",
        "builds a model that is not compiled",
    ),
    "wrong output shape": (
        HEADER + MODEL + "def build(hp):\n    m = model(5)\n" + COMPILE + "    return m\n",
        "output shape is (None, 5), not (None, 10)",
    ),
}


def usage_example() -> str:
    """The example space file of docs/usage.md: the first Python block of its section."""
    section = USAGE.read_text().split(EXAMPLE_HEADING, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def space_file(folder) -> tuple[Path, str]:
    """The usage doc's example space, written where a user keeps it (outside the repository),
    and its SHA256."""
    path = folder / "my_spaces" / "my_space.py"
    path.parent.mkdir()
    path.write_text(usage_example())
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def search_argv(results, space, run="mine") -> list[str]:
    return ["search", "--space", str(space), "--run", run, *at(results), *TINY]


def at(results) -> list[str]:
    return ["--results", str(results)]


def test_the_example_space_file_of_the_usage_doc_builds_and_labels(tmp_path):
    path, _ = space_file(tmp_path)
    spaces.check_builds(str(path))  # compiled, output (None, 10)
    assert spaces.fit_defaults(str(path)) == {"batch_size": 64, "max_epochs": 5}
    hp = kt.HyperParameters()
    model = search_spaces.get(str(path)).build(hp)
    probs = model.predict(np.random.rand(IMAGES, 28, 28, 1).astype("float32"), verbose=0)
    assert probs.shape == (IMAGES, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert search_spaces.describe(str(path), hp.values) == EXAMPLE_LABEL
    assert search_spaces.describe(str(path), {}) == EXAMPLE_LABEL  # a trial that failed early


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_space_file_is_one_line_naming_it_and_nothing_is_written(tmp_path, capsys, case):
    text, said = BAD_FILES[case]
    path = tmp_path / "my_spaces" / "bad_space.py"
    path.parent.mkdir()
    path.write_text(text)
    code, _, err = run_cli(capsys, *search_argv(tmp_path / "results", path))
    assert code == 2
    assert_one_line_error(err, f"space file {path}", said)
    assert not (tmp_path / "results" / "mine").exists()


@pytest.mark.parametrize(
    "name, said", [("missing.py", "does not exist"), ("notes/space.txt", "is not a .py file")]
)
def test_a_space_file_that_is_not_there_is_refused_before_anything(tmp_path, capsys, name, said):
    path = tmp_path / name
    code, _, err = run_cli(capsys, *search_argv(tmp_path / "results", path))
    assert code == 2
    assert_one_line_error(err, f"space file {path} {said}")
    assert not (tmp_path / "results").exists()


@pytest.fixture
def changed_run(tmp_path):
    """A run of a space file (records of cnn-like trials), whose file then changed."""
    path, _ = space_file(tmp_path)
    run_dir = fake_run(tmp_path / "results", run="mine")
    config = records.load_config(run_dir)
    config["space"], config[space_source.SOURCE_KEY] = space_source.resolve(str(path), ())
    records.atomic_write_json(run_dir / records.CONFIG_FILE, config)
    path.write_text(usage_example().replace("[8, 16, 32]", "[8, 16, 32, 64]"))
    return run_dir, path


@pytest.mark.parametrize(
    "argv",
    [
        ["confirm", "mine", "--top", "1", "--seeds", "1"],
        ["export", "mine"],
        ["export", "mine", "--ensemble", "2"],
        ["worker", "--run", "mine", "--chief", "127.0.0.1:9"],
    ],
)
def test_a_changed_space_file_is_refused_by_every_command_on_the_run(changed_run, capsys, argv):
    run_dir, path = changed_run
    before = sorted(p.name for p in run_dir.rglob("*"))
    code, _, err = run_cli(capsys, *argv, "--results", str(run_dir.parent))
    assert code == 2
    assert_one_line_error(err, f"space file {path} has changed since run 'mine' began", "--fresh")
    assert sorted(p.name for p in run_dir.rglob("*")) == before


def test_the_run_functions_refuse_a_changed_space_file_too(changed_run):
    run_dir, path = changed_run
    calls = [
        lambda: confirm.confirm_run(run_dir, 1, 1),
        lambda: export.export_run(run_dir),
        lambda: ensemble.export_ensemble(run_dir, 2),
    ]
    for call in calls:
        with pytest.raises(SpaceError, match=f"space file {path} has changed"):
            call()


def test_a_space_file_is_searched_reported_confirmed_and_exported(tmp_path, capsys):
    path, sha256 = space_file(tmp_path)
    results = tmp_path / "results"
    code, _, err = run_cli(capsys, *search_argv(results, path))
    assert code == 0, err
    run_dir = results / "mine"
    config = records.load_config(run_dir)
    assert config["space"] == str(path) and config["batch_size"] == 64  # its FIT_DEFAULTS
    assert config[space_source.SOURCE_KEY] == {"kind": "file", "path": str(path), "sha256": sha256}
    (record,) = records.load_records(run_dir)
    assert record["status"] == "completed", record["error"]
    assert record["space"] == str(path) and record["architecture"] == EXAMPLE_LABEL

    assert run_cli(capsys, "report", "mine", *at(results))[0] == 0
    assert EXAMPLE_LABEL in (run_dir / "report" / "report.md").read_text()
    code, _, err = run_cli(capsys, "confirm", "mine", "--top", "1", "--seeds", "1", *at(results))
    assert code == 0, err
    (confirmed,) = records.load_confirmed(run_dir)
    assert confirmed["space"] == str(path) and confirmed["trial_id"] == record["trial_id"]
    code, _, err = run_cli(capsys, "export", "mine", *at(results))
    assert code == 0, err
    shipped = json.loads((run_dir / export.BEST_DIR / "config.json").read_text())
    assert shipped["space"] == str(path) and shipped[space_source.SOURCE_KEY]["sha256"] == sha256
    model = keras.saving.load_model(run_dir / export.BEST_DIR / records.MODEL_FILE)
    assert model.output_shape == (None, 10)

    path.write_text(path.read_text() + "# tried something\n")
    code, _, err = run_cli(capsys, *search_argv(results, path))
    assert code == 2
    assert_one_line_error(err, f"space file {path} has changed since run 'mine' began", "--fresh")
    assert records.load_config(run_dir) == config


def test_a_resume_inside_the_search_refuses_a_changed_space_file(tmp_path):
    path, _ = space_file(tmp_path)
    config = SearchConfig(run="r", space=str(path), results=str(tmp_path), **TINY_CONFIG)
    splits = tuning.load_splits(config)
    assert tuning.prepare_run_dir(config, splits) is False
    path.write_text(path.read_text().replace("64", "32"))
    with pytest.raises(SpaceError, match=f"space file {path} has changed.*--fresh"):
        tuning.prepare_run_dir(config, splits)  # as a worker of the run checks it too


def test_a_changed_space_file_is_refused_before_tensorflow_loads(changed_run):
    run_dir, path = changed_run
    script = (
        "import sys; from bench import cli; code = cli.main(sys.argv[1:]); "
        "print(code, 'tensorflow' in sys.modules)"
    )
    for command in (search_argv(run_dir.parent, path), ["confirm", "mine", *at(run_dir.parent)]):
        done = subprocess.run(
            [sys.executable, "-c", script, *command],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
        )
        assert done.stdout.split() == ["2", "False"], done.stderr
        assert_one_line_error(done.stderr, f"space file {path} has changed", "--fresh")


# Every command that imports the spaces, and the API, in one process: TensorFlow loads once.
IMPORT_EVERY_WAY = """
import sys
import bench
from bench import cli
from bench.errors import BadInput
results = ["--results", sys.argv[1]]
commands = [
    ["spaces"],
    ["search", "--space", "tiny", "--run", "r", *results],
    ["export", "r", *results],
    ["confirm", "r", *results],
    ["worker", "--run", "r", "--chief", "127.0.0.1:9", *results],
]
codes = [cli.main(argv) for argv in commands]
try:
    bench.run_search("r", space="tiny", results=sys.argv[1])
except BadInput as exc:
    print("api:", exc, file=sys.stderr)
print(codes)
"""


def test_a_registered_space_that_raises_as_it_imports_is_one_line_naming_it(tmp_path):
    shutil.copytree(REPO_ROOT / "search_spaces", tmp_path / "search_spaces")
    tiny = tmp_path / "search_spaces" / "tiny.py"
    tiny.write_text('raise RuntimeError("boom")\n' + tiny.read_text())
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_WAY, str(results)],
        cwd=tmp_path,  # its search_spaces first on the path, as a checkout's is
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert done.stdout.split() == ["[2,", "2,", "2,", "2,", "2]"], done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 6, done.stderr
    for line in lines:
        assert f"{tiny}, line 1: RuntimeError: boom" in line and "Traceback" not in line
    assert not results.exists()
