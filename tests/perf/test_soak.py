"""bench.perf.soak: the checks a killed and resumed search must pass, and their table."""

import json
import os
import signal
import subprocess
import sys

import pytest

from bench.core import faults, records
from bench.perf import doc_tables, soak
from bench.train import checkpoint
from tests.factories import fake_run


def epoch_log(path, epochs):
    """A process log with an epoch line per (trial, epoch), and lines that are not epochs."""
    lines = ["starting run r", "  trial 00 epoch 1/3 step 5/24 | elapsed 0:00:30 | eta ? | loss 1"]
    lines += [
        f"  trial {t} epoch {e}/3 | elapsed 0:00:10 | eta 0:00:20 | loss 0.5" for t, e in epochs
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_whole_run_passes_and_epochs_trained_again_are_counted(tmp_path):
    run_dir = fake_run(tmp_path, n=3, failed=0, with_seed_baseline=False)
    first = epoch_log(tmp_path / "a.log", [("00", 1), ("00", 2)])  # killed in epoch 3
    second = epoch_log(tmp_path / "b.log", [("00", 2), ("00", 3), ("01", 1)])  # 2 again
    found = soak.checks(run_dir, 3, [first, second], cuts=1, code=0)
    assert found["passed"] and found["epochs_trained"] == 5 and found["epochs_trained_again"] == 1
    assert not soak.checks(run_dir, 3, [first, second, second], cuts=1, code=0)["passed"]
    assert not soak.checks(run_dir, 4, [first], cuts=1, code=0)["passed"]  # one missing
    assert not soak.checks(run_dir, 3, [first], cuts=1, code=1)["passed"]


def test_a_leftover_backup_or_a_broken_json_fails_the_soak(tmp_path):
    run_dir = fake_run(tmp_path, n=2, failed=0, with_seed_baseline=False)
    (run_dir / checkpoint.RESUME_DIR / "01").mkdir(parents=True)
    found = soak.checks(run_dir, 2, [], cuts=0, code=0)
    assert found["epoch_backups_left"] == 1 and not found["passed"]
    (run_dir / checkpoint.RESUME_DIR / "01").rmdir()
    (run_dir / "tuner.json").write_text("{")
    found = soak.checks(run_dir, 2, [], cuts=0, code=0)
    assert found["unreadable_json"] == [str(run_dir / "tuner.json")] and not found["passed"]


def test_the_soak_rows_show_both_soaks(tmp_path):
    run_dir = fake_run(tmp_path, n=2, failed=0, with_seed_baseline=False)
    found = soak.checks(run_dir, 2, [], cuts=0, code=0)
    result = {"single": {"kills": 20, **found}, "cluster": {"kills": 5, **found}}
    result.update(command="make soak", measured_at="2026-12-02T01:00:00+0000", machine=None)
    rows = doc_tables.soak_rows(json.loads(json.dumps(result)))
    assert rows[0].startswith(
        "| 2026-12-02 | `make soak` | not recorded | one process | 20 (0) | 2 of 2 | 0 | 0 |"
    )
    assert rows[1].endswith("| yes |") and "chief and 2 workers | 5 (0) |" in rows[1]
    assert len(rows) == 2  # a soak from before the aimed kills has no export or report row
    result["single"].update(record_kills=4, export={"killed": True, "passed": False})
    rows = doc_tables.soak_rows(json.loads(json.dumps(result)))
    assert "| one process | 20 (4) |" in rows[0]
    assert rows[2].endswith(
        "| bench export, killed between its renames | 1 (1) |" + "  |" * 7 + " no |"
    )
    assert all(row.count("|") == len(doc_tables.SOAK_COLUMNS) + 1 for row in rows)
    assert len(records.load_records(run_dir)) == 2


def progress_log(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_trial_finished_twice_fails_the_soak_however_it_shows(tmp_path):
    run_dir = fake_run(tmp_path, n=3, failed=0, with_seed_baseline=False)
    once = "trial {n}/3 [{t}] | elapsed 0:00:10 | eta 0:00:20 | val 0.9 test 0.9 | best -"
    clean = progress_log(tmp_path / "a.log", [once.format(n=1, t="00"), once.format(n=2, t="01")])
    ledger = soak.Ledger()
    ledger.note(run_dir)
    assert soak.retrained([clean], [clean], ledger) == []
    assert soak.checks(run_dir, 3, [clean], 0, 0, [])["passed"]
    # Its progress line twice (a cluster's supervisor shows every record it sees change) ...
    twice = progress_log(tmp_path / "b.log", [once.format(n=3, t="01")])
    assert soak.retrained([clean, twice], [], ledger) == ["01"]
    # ... its second record refused ...
    refused = progress_log(
        tmp_path / "c.log", ["trial 02 is finished already (trials/02.json: val 0.9000, x)"]
    )
    assert soak.retrained([], [refused], ledger) == ["02"]
    # ... or its record replaced between two launches.
    record = records.load_records(run_dir)[0]
    records.atomic_write_json(
        records.record_path(run_dir, record["trial_id"]),
        {**record, "started_at": "2030-01-01T00:00:00+00:00"},
    )
    ledger.note(run_dir)
    again = soak.retrained([clean], [clean], ledger)
    assert again == [record["trial_id"]]
    found = soak.checks(run_dir, 3, [clean], 0, 0, again)
    assert found["finished_again"] == again and not found["passed"]


def test_a_report_is_whole_when_its_files_come_from_one_write(tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    for name in soak.REPORT_FILES:
        (folder / name).write_text("x")
    os.utime(folder / "index.html", (1000, 1000))
    for name in ("report.md", "trials.csv"):
        os.utime(folder / name, (2000, 2000))
    assert not soak.report_whole(folder, 1500)  # index.html from the earlier report
    os.utime(folder / "index.html", (2000, 2000))
    assert soak.report_whole(folder, 1500, new=True) and soak.report_whole(folder, 2500)
    assert not soak.report_whole(folder, 2500, new=True)  # the next report wrote nothing
    (folder / "report.md").unlink()
    assert not soak.report_whole(folder, 1500)


def test_best_is_reachable_when_it_or_the_export_set_aside_parses(tmp_path):
    assert not soak.best_reachable(tmp_path)
    aside = tmp_path / ".best.host-1-abc-def.old"
    aside.mkdir()
    (aside / "config.json").write_text("{")
    assert not soak.best_reachable(tmp_path)
    (aside / "config.json").write_text('{"trial_id": "00"}')
    assert soak.best_reachable(tmp_path)  # the next command that reads best/ puts it back
    assert soak.leftovers(tmp_path, "best") == [aside.name]
    assert soak.leftovers(tmp_path, "report") == []


def test_targeted_kills_name_a_point_a_count_and_a_signal():
    env = soak.kill_at(soak.RECORD_POINT, 2, "SIGINT")
    assert faults.parse(env[faults.KILL_ENV]) == ("record.written", 2, signal.SIGINT)
    with pytest.raises(KeyError):
        soak.kill_at(soak.RECORD_POINT, 1, "SIGNOPE")


def test_a_launch_that_hangs_is_killed_and_named(monkeypatch):
    monkeypatch.setattr(soak, "TIMEOUT_S", 0.2)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with pytest.raises(RuntimeError, match="hung: still running after 0.2 s"):
        soak._finish(proc)
    assert proc.poll() is not None  # not left running beside the next launch
