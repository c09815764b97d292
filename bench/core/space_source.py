"""Where a run's search space comes from, and whether its file is still the one the run used."""

from __future__ import annotations

import hashlib
import importlib.machinery
import os
import re
import sys
from collections.abc import Collection
from pathlib import Path

from bench.errors import SpaceError

SOURCE_KEY = "space_source"  # in config.json, beside `space`
REGISTERED, FILE, MODULE = "registered", "file", "module"
FILE_SUFFIX = ".py"
DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
HASH_CHUNK = 1 << 20
# What a refused run can do: the old run folder is renamed, never deleted, by --fresh.
REMEDY = (
    "put it back as it was, or start afresh with `bench search ... --fresh` (the old run is "
    "kept aside) or another --run"
)


def kind_of(name: str, registered: Collection[str]) -> str | None:
    """How `name` names a space: a registered name, a file (a name ending in .py or holding a
    path separator) or a dotted module; None for none of them."""
    if name in registered:
        return REGISTERED
    if name.endswith(FILE_SUFFIX) or os.sep in name or (os.altsep and os.altsep in name):
        return FILE
    return MODULE if DOTTED.fullmatch(name) else None


def resolve(name: str, registered: Collection[str]) -> tuple[str, dict]:
    """The name a run records for the space (a file's path made absolute) and its source:
    {kind} for a registered space, {kind, path, sha256} for a file or module. Reads the file,
    imports nothing; SpaceError for a name that is none of these or a file that is not there."""
    kind = kind_of(name, registered)
    if kind == REGISTERED:
        return name, {"kind": REGISTERED}
    if kind == FILE:
        path = checked_file(Path(name).expanduser().absolute())
        return str(path), source(FILE, path)
    if kind == MODULE:
        return name, source(MODULE, module_file(name))
    raise SpaceError(
        f"unknown search space {name!r}; known: {', '.join(registered)}; or give a path to a "
        f"{FILE_SUFFIX} file or a dotted module name (docs/usage.md, section 6)"
    )


def source(kind: str, path: Path) -> dict:
    return {"kind": kind, "path": str(path), "sha256": file_sha256(path)}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checked_file(path: Path) -> Path:
    """path, when it is a readable .py file; SpaceError naming it otherwise."""
    if path.suffix != FILE_SUFFIX:
        raise SpaceError(f"space file {path} is not a {FILE_SUFFIX} file")
    if not path.is_file():
        raise SpaceError(f"space file {path} does not exist")
    if not os.access(path, os.R_OK):
        raise SpaceError(f"space file {path} cannot be read")
    return path


def module_file(name: str) -> Path:
    """The .py file that `import name` would run, found on Python's path without importing the
    module or its packages (their __init__ may import TensorFlow)."""
    loaded = sys.modules.get(name)
    if getattr(loaded, "__file__", None):
        return Path(loaded.__file__)
    spec, parts = None, name.split(".")
    for depth in range(1, len(parts) + 1):
        where = spec.submodule_search_locations if spec else None
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth]), where)
        if spec is None or (depth < len(parts) and spec.submodule_search_locations is None):
            raise SpaceError(
                f"space module {name} is not found on Python's path (the current folder with "
                "`python -m bench`, else PYTHONPATH)"
            )
    if not (spec.origin or "").endswith(FILE_SUFFIX):
        raise SpaceError(f"space module {name} is not a {FILE_SUFFIX} file ({spec.origin})")
    return Path(spec.origin)


def recorded(config: dict) -> dict:
    """The space source a run's config.json records; runs from before sources were recorded
    used a registered space."""
    return config.get(SOURCE_KEY) or {"kind": REGISTERED}


def label(name: str, source: dict) -> str:
    """How a message names the space: by its file where it has one."""
    if source["kind"] == FILE:
        return f"space file {name}"
    if source["kind"] == MODULE:
        return f"space module {name} ({source['path']})"
    return f"space {name!r}"


def check_unchanged(config: dict) -> dict:
    """The source of a run's space as it is now; SpaceError naming the file when it is gone
    or its SHA256 is no longer the one config.json recorded (a registered space is the
    code's own, as it always was)."""
    then = recorded(config)
    if then["kind"] == REGISTERED:
        return then
    name, run = config["space"], config.get("run")
    path = module_file(name) if then["kind"] == MODULE else Path(name)
    where = label(name, {**then, "path": str(path)})
    if not path.is_file():
        raise SpaceError(f"{where} of run {run!r} is missing; {REMEDY}")
    now = source(then["kind"], path)
    if now["sha256"] != then["sha256"]:
        raise SpaceError(
            f"{where} has changed since run {run!r} began (its SHA256 is not the one in "
            f"config.json); {REMEDY}"
        )
    return now
