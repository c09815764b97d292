"""Scratch names of writes in progress, swept once their writer is gone; folders replaced whole.

A scratch name (`.<name>.<host>-<pid>-<process>-<n>.<kind>`) names its writer, so that the next
writer of a folder removes what a killed one left without touching what a live one (a worker of
the same run) is still writing.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench.core import faults

TEMP, PARTIAL, ASIDE = "tmp", "partial", "old"
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# Tells this process from an earlier one that had the same pid (a container restarted).
PROCESS = secrets.token_hex(3)
NAME_KEPT = 180  # of the target's name, so that a scratch name stays within 255 bytes
SCRATCH = re.compile(
    r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-(?P<process>[0-9a-f]{6})-[0-9a-f]{6}"
    r"\.(?P<kind>tmp|partial|old)(?:\.\w+)*$"
)
# Temporary files named before writers named themselves (tempfile.mkstemp's eight characters).
UNNAMED_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.(?:tmp|keras)$")
# A scratch item of another host (or of no named writer) untouched this long is a dead one's:
# no write of a result takes an hour without touching its file.
UNKNOWN_WRITER_SECONDS = 3600
# Atomic exchange of two paths: Linux renameat2's RENAME_EXCHANGE, macOS renamex_np's RENAME_SWAP.
AT_FDCWD = -100
RENAME_EXCHANGE = 2
RENAME_SWAP = 2
FILE_MODE, DIR_MODE = 0o666, 0o777  # less the umask
# What a file system without exchange answers; the two-rename way then serves.
NO_EXCHANGE = (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV)
# A folder written many times over (a trials folder of hundreds of records) is scanned for a
# dead writer's scratch at most this often by one process: such a file waits for this
# process's first write after that, or for the first write of the next process.
SWEEP_EVERY_SECONDS = 60.0
clock = time.monotonic  # of the sweeps after writes; tests move it on
_last_swept: dict[str, float] = {}


def scratch_name(target: Path, kind: str, suffix: str = "") -> Path:
    """A unique name beside target for a write of `kind` in progress; `suffix` ends it (Keras
    wants its own)."""
    target = Path(target)
    writer = f"{HOST}-{os.getpid()}-{PROCESS}-{secrets.token_hex(3)}"
    return target.parent / f".{target.name[:NAME_KEPT]}.{writer}.{kind}{suffix}"


def _writer_gone(match: re.Match, entry: os.DirEntry) -> bool:
    if match["host"] != HOST:
        return _untouched(entry)
    pid = int(match["pid"])
    if pid == os.getpid():
        return match["process"] != PROCESS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _untouched(entry: os.DirEntry) -> bool:
    try:
        return time.time() - entry.stat(follow_symlinks=False).st_mtime > UNKNOWN_WRITER_SECONDS
    except OSError:
        return False


def _remove(path: str | os.PathLike) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def sweep(folder: Path, kinds: tuple[str, ...] = (TEMP,), target: str | None = None) -> None:
    """Remove from folder the scratch items of `kinds` (of `target` only, when given) whose
    writer is gone."""
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(".")]
    except FileNotFoundError:
        return
    for entry in entries:
        match = SCRATCH.match(entry.name)
        if match is not None:
            mine = target is None or match["name"] == target[:NAME_KEPT]
            stale = match["kind"] in kinds and mine and _writer_gone(match, entry)
        else:
            stale = TEMP in kinds and bool(UNNAMED_TEMP.match(entry.name)) and _untouched(entry)
        if stale:
            # Tidying up after another process: one this process may not remove waits for
            # a writer that may; the write that swept has succeeded either way.
            with contextlib.suppress(PermissionError):
                _remove(entry.path)


def sweep_after_write(folder: Path) -> None:
    """sweep(folder), unless this process swept it less than SWEEP_EVERY_SECONDS ago: every
    atomic write ends with this, and a scan per write would cost a scan of the whole folder."""
    key = os.path.abspath(folder)
    now = clock()
    last = _last_swept.get(key)
    if last is not None and now - last < SWEEP_EVERY_SECONDS:
        return
    sweep(folder)
    _last_swept[key] = now


def _asides(target: Path) -> list[Path]:
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(target.parent):
            match = SCRATCH.match(entry.name)
            if match and match["kind"] == ASIDE and match["name"] == target.name[:NAME_KEPT]:
                if _writer_gone(match, entry):
                    found.append(Path(entry.path))
    return found


def recover(target: Path) -> bool:
    """Put target back from the folder set aside for it when its writer died between setting
    it aside and renaming the new one in; True when it did."""
    target = Path(target)
    if os.path.lexists(target):
        return False
    asides = _asides(target)
    if not asides:
        return False
    newest = max(asides, key=lambda path: path.lstat().st_ctime)
    try:
        os.rename(newest, target)
    except FileNotFoundError:  # another reader put it back first
        return False
    return True


def tidy(target: Path) -> None:
    """recover() target, then remove what writers now gone left beside it: a new folder cut
    short, an old one set aside."""
    recover(target)
    sweep(Path(target).parent, (PARTIAL, ASIDE), Path(target).name)


def recover_all(folder: Path) -> None:
    """recover() every folder under `folder` that a dead writer left set aside."""
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            match = SCRATCH.match(entry.name)
            if (
                match
                and match["kind"] == ASIDE
                and not os.path.lexists(os.path.join(folder, match["name"]))
            ):
                recover(Path(folder) / match["name"])


def _exchanger():
    """exchange(a, b) -> 0 or -1 (errno set) from the C library, or None where there is none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        call = libc.renameat2
        call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
        call.argtypes += [ctypes.c_uint]
        return lambda a, b: call(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
    if sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        call = libc.renamex_np
        call.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        return lambda a, b: call(a, b, RENAME_SWAP)
    return None


EXCHANGE = _exchanger()  # None: every replace takes the two-rename way (tests set it so)


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step; False where the platform or file system cannot."""
    if EXCHANGE is None:
        return False
    if EXCHANGE(os.fsencode(a), os.fsencode(b)) == 0:
        return True
    code = ctypes.get_errno()
    if code in NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def replace_folder(new: Path, out: Path, point: str) -> None:
    """Put the complete folder `new` at out, so that out is always the old folder or the new
    one: swapped in one step where the platform can, else set aside, renamed in, and the aside
    removed; a kill between those renames leaves the aside, which recover() puts back.
    `point` is the faults point at the moment the old folder is out of the way."""
    tidy(out)
    if not os.path.lexists(out):
        os.rename(new, out)
        return
    if exchange(new, out):
        faults.point(point)
        _remove(new)  # the old folder, now under the new one's scratch name
        return
    aside = scratch_name(out, ASIDE)
    os.rename(out, aside)
    try:
        faults.point(point)
        os.rename(new, out)
    except BaseException:
        os.rename(aside, out)
        raise
    _remove(aside)


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode of a result file: readable by the team (and a web server), as the umask allows."""
    return FILE_MODE & ~umask()


def publish_modes(folder: Path) -> None:
    """Give folder and everything under it the modes results have, whatever wrote them (Keras,
    TensorFlow and tempfile make some files 0600)."""
    mask = umask()
    os.chmod(folder, DIR_MODE & ~mask)
    for root, dirs, files in os.walk(folder):
        for names, mode in ((dirs, DIR_MODE), (files, FILE_MODE)):
            for path in (os.path.join(root, name) for name in names):
                if not os.path.islink(path):  # a link's mode is its target's, outside
                    os.chmod(path, mode & ~mask)


@contextlib.contextmanager
def replaced(out: Path, point: str, from_old: bool = False) -> Iterator[Path]:
    """A new folder beside out to fill in the block; when the block ends, it replaces out whole
    (replace_folder), everything in it given the modes of results. On an error or an interrupt
    it is removed and out stays as it was. from_old: the new folder starts as a copy of out
    (its files hard-linked: a file written anew there replaces the link, not the old file)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tidy(out)  # first: a killed writer's folder may hold the room this one needs
    partial = scratch_name(out, PARTIAL)
    try:
        if from_old:
            shutil.copytree(out, partial, copy_function=_link_or_copy, symlinks=True)
        else:
            partial.mkdir()
        yield partial
        publish_modes(partial)
        replace_folder(partial, out, point)
    except BaseException:
        _remove(partial)
        raise


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
