"""bench.perf.soak: the checks a killed and resumed search must pass, and their table."""

import json

from bench.core import records
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
        "| 2026-12-02 | `make soak` | not recorded | one process | 20 | 2 of 2 |"
    )
    assert rows[1].endswith("| yes |") and "chief and 2 workers | 5 |" in rows[1]
    assert len(records.load_records(run_dir)) == 2
