"""Where a result came from: package versions and the project's git commit."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Distribution names to report; tensorflow ships as tensorflow-cpu or tensorflow.
PACKAGES = {
    "tensorflow": ("tensorflow-cpu", "tensorflow", "tensorflow-macos"),
    "keras": ("keras",),
    "keras_tuner": ("keras-tuner",),
    "numpy": ("numpy",),
}
GIT_TIMEOUT_S = 10


def _version(distributions: tuple[str, ...]) -> str | None:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def versions() -> dict[str, str | None]:
    """Python and the ML packages' versions, read from package metadata (no imports)."""
    found = {name: _version(dists) for name, dists in PACKAGES.items()}
    return {"python": platform.python_version(), **found}


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit() -> str | None:
    """HEAD's hash, with "-dirty" when tracked files differ from it; None outside git."""
    commit = _git("rev-parse", "HEAD")
    if commit and _git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    return commit
