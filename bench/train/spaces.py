"""A run's search space imported and checked: its module, its fit defaults, its default model."""

from __future__ import annotations

import importlib.machinery
import traceback
from dataclasses import fields
from pathlib import Path

import keras
import keras_tuner as kt

from bench.core import space_source
from bench.core.config import SearchConfig
from bench.errors import SpaceError, UsageError, one_line

NUM_CLASSES = 10
OUTPUT_SHAPE = (None, NUM_CLASSES)


def registry():
    """The search_spaces package; UsageError naming the file and line where it (a registered
    space) does not import."""
    try:
        import search_spaces
    except Exception as exc:  # a space module that does not import is the user's to fix
        raise UsageError(
            f"the search spaces do not import: {failed_at(exc)}{one_line(exc)}"
        ) from exc
    return search_spaces


def failed_at(exc: BaseException) -> str:
    """ "<file>, line <n>: " of the last line of the search_spaces package that `exc` came
    through (the file itself for a SyntaxError); "" where it came through none."""
    spec = importlib.machinery.PathFinder.find_spec("search_spaces")
    if spec is None or not spec.origin:
        return ""
    package = Path(spec.origin).parent
    lines = [(f.filename, f.lineno) for f in traceback.extract_tb(exc.__traceback__)]
    if isinstance(exc, SyntaxError) and exc.filename:
        lines.append((exc.filename, exc.lineno))
    inside = [(name, line) for name, line in lines if Path(name).parent == package]
    return f"{inside[-1][0]}, line {inside[-1][1]}: " if inside else ""


def label(name: str) -> str:
    """How a message names the space `name`: by its file where it has one."""
    kind = space_source.kind_of(name, registry().SPACES)
    if kind == space_source.MODULE:
        return space_source.label(name, {"kind": kind, "path": space_source.module_file(name)})
    return space_source.label(name, {"kind": kind})


def load(name: str):
    """The space module `name` names (search_spaces.get), with a build(hp); SpaceError naming
    its file when it is not there, does not import or has no build."""
    spaces = registry()
    space_source.resolve(name, spaces.SPACES)  # a known name, or a file that is there
    try:
        module = spaces.get(name)
    except Exception as exc:  # the user's code: whatever it raises, the file is named
        raise SpaceError(f"{label(name)} does not import: {one_line(exc)}") from exc
    if not callable(getattr(module, "build", None)):
        raise SpaceError(f"{label(name)} defines no build(hp) function")
    return module


def fit_defaults(name: str) -> dict:
    """The space's FIT_DEFAULTS ({} where it has none); SpaceError for one that names a
    setting bench search does not have."""
    defaults = getattr(load(name), "FIT_DEFAULTS", None) or {}
    known = {f.name for f in fields(SearchConfig)}
    if not isinstance(defaults, dict) or set(defaults) - known:
        raise SpaceError(
            f"{label(name)}: FIT_DEFAULTS must be a dict of bench search settings "
            f"(SearchConfig fields such as batch_size, max_epochs, patience), not {defaults!r}"
        )
    return defaults


def check_builds(name: str) -> None:
    """SpaceError naming the space's file when its default hyperparameters build no compiled
    model of one output per class."""
    build = load(name).build
    try:
        model = build(kt.HyperParameters())
    except Exception as exc:
        raise SpaceError(f"{label(name)} cannot build its default model: {one_line(exc)}") from exc
    if not isinstance(model, keras.Model):
        raise SpaceError(f"{label(name)}: build(hp) returned {type(model).__name__}, not a model")
    if getattr(model, "optimizer", None) is None:
        raise SpaceError(f"{label(name)} builds a model that is not compiled: compile it in build")
    shape = _output_shape(model)
    if shape != OUTPUT_SHAPE:
        raise SpaceError(
            f"{label(name)} builds a model whose output shape is {shape}, not {OUTPUT_SHAPE} "
            "(one probability per class)"
        )


def _output_shape(model: keras.Model) -> tuple | None:
    try:
        return tuple(model.output_shape)
    except (AttributeError, ValueError, TypeError):  # a subclassed model not yet called
        return None


def source_of(name: str) -> dict:
    """Where the space `name` comes from, as config.json records it (space_source.resolve)."""
    return space_source.resolve(name, registry().SPACES)[1]


def of_run(config: dict):
    """The space module of a run's config.json, its file checked unchanged since the run
    recorded it (space_source.check_unchanged)."""
    space_source.check_unchanged(config)
    return load(config["space"])
