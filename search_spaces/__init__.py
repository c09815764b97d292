"""The registry of search spaces: an explicit {name: module} table, nothing scanned."""

import keras_tuner as kt

from search_spaces import cnn, cnn_plus, seed, tiny

SPACES = {
    "seed": seed,
    "cnn": cnn,
    "cnn_plus": cnn_plus,
    "tiny": tiny,
}


def get(name: str):
    """The module of a registered space; KeyError names the known ones."""
    try:
        return SPACES[name]
    except KeyError:
        raise KeyError(f"unknown search space {name!r}; known: {', '.join(SPACES)}") from None


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
    """The registered space `name` as a HyperModel for KerasTuner's tuners."""
    return SpaceModel(name, get(name))
