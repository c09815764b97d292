"""Folders replaced whole, and what killed writers leave behind swept by the next one."""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.core import records, swap

REPO_ROOT = Path(__file__).resolve().parents[2]
POINT = "export.between_renames"


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def scratch(target: Path, kind: str, pid: int, process: str = "abcdef", host=None) -> Path:
    """A scratch name as a writer of that host, pid and process would make it."""
    name = f".{target.name}.{host or swap.HOST}-{pid}-{process}-000000.{kind}"
    return target.parent / name


def folder_with(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(text)
    return path


def contents(folder: Path) -> dict:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


@pytest.fixture(params=["exchange", "two renames"])
def way(request, monkeypatch):
    if request.param == "two renames":
        monkeypatch.setattr(swap, "EXCHANGE", None)
    return request.param


def test_a_folder_is_replaced_whole_and_nothing_is_left_beside_it(tmp_path, way):
    out = folder_with(tmp_path / "best", "old")
    (out / "gone.txt").write_text("only the old one had it")
    with swap.replaced(out, POINT) as partial:
        (partial / "config.json").write_text("new")
    assert contents(out) == {"config.json": "new"}
    assert os.listdir(tmp_path) == ["best"]


def test_a_failure_while_filling_keeps_the_old_folder_as_it_was(tmp_path, way):
    out = folder_with(tmp_path / "best", "old")
    with pytest.raises(KeyboardInterrupt), swap.replaced(out, POINT) as partial:
        (partial / "config.json").write_text("half")
        raise KeyboardInterrupt
    assert contents(out) == {"config.json": "old"}
    assert os.listdir(tmp_path) == ["best"]


def test_the_new_folder_and_its_files_get_the_modes_of_results(tmp_path):
    umask = os.umask(0o022)
    try:
        with swap.replaced(tmp_path / "best", POINT) as partial:
            fd = os.open(partial / "model.keras", os.O_CREAT | os.O_WRONLY, 0o600)  # as mkstemp
            os.close(fd)
            (partial / "saved_model").mkdir(mode=0o700)
    finally:
        os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "best").iterdir()}
    assert modes == {"model.keras": 0o644, "saved_model": 0o755}


KILLED_SWAP = """
import sys
from pathlib import Path
from bench.core import swap
if sys.argv[2] == "two renames":
    swap.EXCHANGE = None
with swap.replaced(Path(sys.argv[1]), "export.between_renames") as partial:
    (partial / "config.json").write_text("new")
"""


def kill_at_the_swap(out: Path, way: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENCH_KILL_AT": POINT}
    return subprocess.run(
        [sys.executable, "-c", KILLED_SWAP, str(out), way], cwd=REPO_ROOT, env=env, timeout=60
    )


def test_a_kill_between_the_renames_leaves_a_folder_the_next_reader_puts_back(tmp_path, way):
    out = folder_with(tmp_path / "best", "old")
    assert kill_at_the_swap(out, way).returncode == -signal.SIGKILL
    if way == "exchange":
        assert contents(out) == {"config.json": "new"}  # never missing
    else:
        assert not out.exists()
        assert swap.recover(out) is True  # what export, report and predict do first
        assert contents(out) == {"config.json": "old"}
    assert len(os.listdir(tmp_path)) == 2  # the killed writer's scratch folder
    with swap.replaced(out, POINT) as partial:
        (partial / "config.json").write_text("newer")
    assert os.listdir(tmp_path) == ["best"] and contents(out) == {"config.json": "newer"}


def test_only_scratch_of_writers_that_are_gone_is_swept(tmp_path):
    target = tmp_path / "00.json"
    dead, sleeper = (
        dead_pid(),
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]),
    )
    try:
        kept = [
            scratch(target, "tmp", sleeper.pid),  # a worker writing right now
            scratch(target, "tmp", os.getpid(), swap.PROCESS),  # this process
            scratch(target, "tmp", 1, host="0badf00d"),  # another host's, fresh
        ]
        gone = [
            scratch(target, "tmp", dead),
            scratch(target, "tmp", os.getpid(), "fedcba"),  # an earlier process of this pid
            tmp_path / ".01.json.k2j4_x9q.tmp",  # unnamed writer, an hour old
            scratch(target, "tmp", 1, host="0badf00d"),
        ]
        gone[-1] = gone[-1].with_name(gone[-1].name.replace("000000", "111111"))
        for path in [*kept, *gone]:
            path.write_text("half")
        hour_ago = time.time() - swap.UNKNOWN_WRITER_SECONDS - 60
        for path in gone[2:]:
            os.utime(path, (hour_ago, hour_ago))
        records.atomic_write_json(target, {"trial_id": "00"})
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [target.name, *(p.name for p in kept)]
    )


def test_a_folder_written_again_soon_is_not_scanned_again_but_swept_after_a_while(
    tmp_path, monkeypatch
):
    now = [1000.0]
    monkeypatch.setattr(swap, "clock", lambda: now[0])
    scans = []
    real_scandir = os.scandir

    def counted(path="."):
        if Path(path) == tmp_path:
            scans.append(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counted)
    records.atomic_write_json(tmp_path / "00.json", {"trial_id": "00"})
    dead = scratch(tmp_path / "01.json", "tmp", dead_pid())
    dead.write_text("half")
    records.atomic_write_json(tmp_path / "01.json", {"trial_id": "01"})
    assert len(scans) == 1 and dead.exists()  # the second write did not scan the folder
    now[0] += swap.SWEEP_EVERY_SECONDS
    records.atomic_write_json(tmp_path / "02.json", {"trial_id": "02"})
    assert len(scans) == 2 and not dead.exists()
