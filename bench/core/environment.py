"""Where a result came from: package versions and the project's git commit."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Distribution names to report; tensorflow ships as tensorflow-cpu or tensorflow.
PACKAGES = {
    "tensorflow": ("tensorflow-cpu", "tensorflow", "tensorflow-macos"),
    "keras": ("keras",),
    "keras_tuner": ("keras-tuner",),
    "numpy": ("numpy",),
}
# git and nvidia-smi answer in well under a second; a hung one must not stall a search.
COMMAND_TIMEOUT_S = 10
CPUINFO = Path("/proc/cpuinfo")
NVIDIA_SMI = ("nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader")
# The CPU flags that decide how fast TensorFlow trains here: vector width and bfloat16.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16")


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
            timeout=COMMAND_TIMEOUT_S,
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


def cpu_model() -> str | None:
    """The processor's model name (Linux /proc/cpuinfo), else what platform knows, else None."""
    try:
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def cpu_flags() -> list[str]:
    """The SPEED_FLAGS this CPU has (Linux /proc/cpuinfo), in SPEED_FLAGS order."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return []
    line = next((x for x in text.splitlines() if x.split(":")[0].strip() == "flags"), "")
    present = set(line.partition(":")[2].split())
    return [flag for flag in SPEED_FLAGS if flag in present]


def cpu_count() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine() -> dict:
    """What a benchmark figure depends on besides the code: CPU model, its flags, cores."""
    return {"cpu": cpu_model(), "flags": cpu_flags(), "cores": cpu_count()}


def gpus() -> list[str]:
    """NVIDIA GPUs as nvidia-smi lists them ("name, memory"); none where it is missing."""
    try:
        done = subprocess.run(
            NVIDIA_SMI, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = done.stdout.splitlines() if done.returncode == 0 else []
    return [line.strip() for line in lines if line.strip()]


def environment() -> dict:
    """What a run's results depend on besides its config and data: software and hardware."""
    return {
        **versions(),
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": gpus(),
    }


@contextlib.contextmanager
def native_stderr_silenced():
    """What native libraries write to file descriptor 2 meanwhile goes to /dev/null.

    Python's own sys.stderr is not enough: TensorFlow's absl and oneDNN notices and LiteRT's
    delegate line are written by C++ straight to the descriptor, bypassing it.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
