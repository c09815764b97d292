"""The release benchmark: rows that accumulate, and the comparison drawn from them alone."""

import pytest

from bench.core import records
from bench.perf import doc_tables, releases


def _row(variant: str, seed: int, wrong: list[int], images: int = 100) -> dict:
    return {
        "variant": variant,
        "seed": seed,
        "epochs": releases.EPOCHS,
        "clean_epochs": releases.CLEAN_EPOCHS,
        "batch_size": releases.BATCH_SIZE,
        "test_images": images,
        "test_accuracy": 1 - len(wrong) / images,
        "test_loss": 0.01 * len(wrong),
        "wrong": wrong,
        "wrong_predicted": [0] * len(wrong),
        "minutes": 90.0,
        "machine": {"cpu": "AMD EPYC", "flags": ["avx2"], "cores": 2},
        "measured_at": "2026-12-03T10:00:00+0000",
    }


def test_only_missing_releases_train_and_published_ones_count(tmp_path, monkeypatch):
    trained = []

    def fake_release(name, seed, backup=None):
        trained.append((name, seed))
        return _row(name, seed, [seed])

    monkeypatch.setattr(releases, "release_once", fake_release)
    published = {"rows": [_row("defaults", 0, [1, 2])]}
    records.atomic_write_json(
        tmp_path / releases.RELEASES_DIR / "night-asha-041-seed0.json",
        _row("night-asha-041", 0, [1]),
    )
    result = releases.release_benchmark(tmp_path, ["defaults", "night-asha-041"], [0, 1], published)
    assert trained == [("defaults", 1), ("night-asha-041", 1)]
    assert [(r["variant"], r["seed"]) for r in result["rows"]] == [
        ("defaults", 0),
        ("night-asha-041", 0),
        ("defaults", 1),
        ("night-asha-041", 1),
    ]


def test_the_comparison_pools_the_matched_seeds_test_digits():
    rows = [
        _row("defaults", 0, [1, 2, 3]),
        _row("defaults", 1, [4, 5]),
        _row("night-asha-041", 0, [1]),  # right where the defaults missed 2 and 3
        _row("night-asha-041", 1, [4, 5, 6]),  # and wrong on 6 where they were right
        _row("night-asha-041", 2, []),  # no defaults at seed 2: left out of the test
    ]
    lines = {line["variant"]: line for line in releases.against_reference(rows)}
    winner = lines["night-asha-041"]
    assert winner["matched"] == [0, 1]
    assert (winner["mcnemar"]["a_only"], winner["mcnemar"]["b_only"]) == (2, 1)
    assert winner["accuracy"]["mean"] == pytest.approx((0.99 + 0.97 + 1.0) / 3)
    assert lines["defaults"]["mcnemar"] is None
    rendered = doc_tables.table("releases", {"rows": rows, "command": "c"})
    assert "| night-asha-041 | 0, 1, 2 | 0.9867 |" in rendered
    assert rendered.count("\n| 2026-12-03 |") == len(rows)
