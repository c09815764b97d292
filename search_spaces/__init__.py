"""The registry of search spaces: an explicit {name: module} table, nothing scanned; and the
spaces people keep in their own files or modules, imported by name."""

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

import keras_tuner as kt

from search_spaces import cnn, cnn_plus, seed, tiny

SPACES = {
    "seed": seed,
    "cnn": cnn,
    "cnn_plus": cnn_plus,
    "tiny": tiny,
}


FILE_SUFFIX = ".py"
FILE_MODULE_PREFIX = "_bench_space_"  # a space file's private name in sys.modules
PATH_DIGITS = 16  # of the file path's SHA256, in that name
# A space file's path -> ((mtime, size) when it was imported, its module): once per process,
# again once the file changed.
_FILES: dict = {}


def get(name: str):
    """The module of a space: a registered name, a path to a .py file, or a dotted module
    name (imported as Python imports it); KeyError names the registered ones."""
    if name in SPACES:
        return SPACES[name]
    if name.endswith(FILE_SUFFIX):
        return from_file(Path(name))
    if "." in name:
        return importlib.import_module(name)
    raise KeyError(f"unknown search space {name!r}; known: {', '.join(SPACES)}")


def from_file(path: Path):
    """The module a space file holds, imported under a private name of its path."""
    path = path.resolve()
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    if _FILES.get(path, (None,))[0] != stamp:
        _FILES[path] = (stamp, _import_file(path))
    return _FILES[path][1]


def _import_file(path: Path):
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:PATH_DIGITS]
    spec = importlib.util.spec_from_file_location(FILE_MODULE_PREFIX + digest, path)
    module = importlib.util.module_from_spec(spec)
    # Registered as an import would be: dataclasses and Keras' serialization look it up.
    sys.modules[spec.name] = module
    try:
        # Compiled from the source, not through the loader: no __pycache__ is written into
        # the user's folder, and no bytecode of an earlier version within the same second
        # is taken for this one.
        code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        exec(code, module.__dict__)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


class SpaceModel(kt.HyperModel):
    """A space module as a KerasTuner HyperModel: its build(hp), and its fit(hp, model, ...)
    where the space tunes training itself (schedules), else plain model.fit; and, for a
    release's last epochs, its without_augmentation(model) where it augments."""

    def __init__(self, name: str, space):
        super().__init__(name=name)
        self.space = space

    def build(self, hp):
        return self.space.build(hp)

    def fit(self, hp, model, *args, **kwargs):
        if hasattr(self.space, "fit"):
            return self.space.fit(hp, model, *args, **kwargs)
        return model.fit(*args, **kwargs)

    def without_augmentation(self, model):
        """The model less its training-time augmentation (weights shared), where the space
        has a way to take it out; else the model itself."""
        if hasattr(self.space, "without_augmentation"):
            return self.space.without_augmentation(model)
        return model


def describe(name: str, hp: dict) -> str | None:
    """The space's short label of a configuration (its describe(hp)), None where it has none.

    The search keeps it in each trial record as `architecture`; the report shows it.
    """
    space = get(name)
    return space.describe(hp) if hasattr(space, "describe") else None


def hypermodel(name: str) -> SpaceModel:
    """The space `name` (see get) as a HyperModel for KerasTuner's tuners."""
    return SpaceModel(name, get(name))
