"""The registry of search spaces: an explicit {name: module} table, nothing scanned."""

from search_spaces import cnn, seed, tiny

SPACES = {
    "seed": seed,
    "cnn": cnn,
    "tiny": tiny,
}


def get(name: str):
    """The module of a registered space; KeyError names the known ones."""
    try:
        return SPACES[name]
    except KeyError:
        raise KeyError(f"unknown search space {name!r}; known: {', '.join(SPACES)}") from None
