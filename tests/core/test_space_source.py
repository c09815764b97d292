"""Where a space comes from: names, files and modules told apart, hashed, and checked unchanged,
all without importing the space."""

import hashlib
import sys

import pytest

from bench.core import space_source
from bench.errors import BadInput, SpaceError

REGISTERED = ("seed", "cnn")
SPACE_TEXT = "def build(hp):\n    raise RuntimeError('never built here')\n"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "name, kind",
    [
        ("cnn", "registered"),
        ("my_space.py", "file"),
        ("spaces/mine", "file"),  # a path, to be refused as not .py
        ("mypackage.myspace", "module"),
        ("nope", None),
        ("1bad.name", None),
    ],
)
def test_a_name_is_registered_a_file_or_a_module(name, kind):
    assert space_source.kind_of(name, REGISTERED) == kind


def test_a_file_is_recorded_by_its_absolute_path_and_sha256(tmp_path, monkeypatch):
    (tmp_path / "mine.py").write_text(SPACE_TEXT)
    monkeypatch.chdir(tmp_path)
    name, source = space_source.resolve("mine.py", REGISTERED)
    assert name == str(tmp_path / "mine.py")
    assert source == {"kind": "file", "path": name, "sha256": sha256(tmp_path / "mine.py")}
    assert space_source.resolve("cnn", REGISTERED) == ("cnn", {"kind": "registered"})


@pytest.mark.parametrize(
    "name, said",
    [
        ("missing.py", "does not exist"),
        ("notes/space.txt", "is not a .py file"),
        ("nowhere.at_all", "is not found on Python's path"),
        ("nope", "unknown search space 'nope'; known: seed, cnn; or give a path"),
    ],
)
def test_what_is_not_a_space_is_one_line_naming_it(tmp_path, monkeypatch, name, said):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpaceError, match=said) as caught:
        space_source.resolve(name, REGISTERED)
    assert "\n" not in str(caught.value) and isinstance(caught.value, BadInput)
    if name.endswith(".py"):
        assert str(tmp_path / name) in str(caught.value)


def test_a_module_is_found_and_hashed_without_importing_it_or_its_package(tmp_path, monkeypatch):
    package = tmp_path / "userpkg_unimported"
    package.mkdir()
    # Importing the package would fail: finding the module must not import it.
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / "space.py").write_text(SPACE_TEXT)
    monkeypatch.syspath_prepend(str(tmp_path))
    name, source = space_source.resolve("userpkg_unimported.space", REGISTERED)
    assert name == "userpkg_unimported.space"
    assert source == {
        "kind": "module",
        "path": str(package / "space.py"),
        "sha256": sha256(package / "space.py"),
    }
    assert "userpkg_unimported" not in sys.modules


def test_a_run_without_a_recorded_source_used_a_registered_space():
    old = {"run": "r", "space": "cnn"}  # config.json of a run from before sources
    assert space_source.recorded(old) == {"kind": "registered"}
    assert space_source.check_unchanged(old) == {"kind": "registered"}


def _run_of(path) -> dict:
    name, source = space_source.resolve(str(path), REGISTERED)
    return {"run": "r", "space": name, space_source.SOURCE_KEY: source}


def test_a_changed_or_missing_space_file_is_refused_naming_it_and_fresh(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(SPACE_TEXT)
    config = _run_of(path)
    assert space_source.check_unchanged(config) == config[space_source.SOURCE_KEY]
    path.write_text(SPACE_TEXT + "# tuned a little\n")
    with pytest.raises(SpaceError, match="has changed since run 'r' began") as caught:
        space_source.check_unchanged(config)
    assert str(path) in str(caught.value) and "--fresh" in str(caught.value)
    path.unlink()
    with pytest.raises(SpaceError, match=f"space file {path} of run 'r' is missing.*--fresh"):
        space_source.check_unchanged(config)


def test_a_changed_space_module_is_refused_naming_its_file(tmp_path, monkeypatch):
    package = tmp_path / "userpkg_changed"
    package.mkdir()
    (package / "sub.py").write_text(SPACE_TEXT)
    monkeypatch.syspath_prepend(str(tmp_path))
    name, source = space_source.resolve("userpkg_changed.sub", REGISTERED)
    config = {"run": "r", "space": name, space_source.SOURCE_KEY: source}
    (package / "sub.py").write_text(SPACE_TEXT.replace("never", "not"))
    with pytest.raises(SpaceError, match=r"space module userpkg_changed.sub \(.*sub.py\).*--fresh"):
        space_source.check_unchanged(config)
