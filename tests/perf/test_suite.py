"""bench.perf.suite and bench.perf.doc_tables: the suite's arithmetic (its timings are measured
by `make bench`, not tested) and the published tables."""

import json
import math

import pytest

from bench.core import environment
from bench.perf import doc_tables, suite
from tests.factories import fake_record


def test_median_rate_ignores_one_slow_epoch():
    assert suite.median_rate(1000, [1.0, 1.0, 9.0]) == pytest.approx(1000.0)
    assert suite.median_rate(1000, [2.0, 4.0]) == pytest.approx(1000 / 3.0)
    assert math.isnan(suite.images_per_second(10, 0.0))


def test_later_epochs_leave_out_each_fits_first():
    assert suite.later_epochs([[5.0, 1.0, 2.0], [6.0, 3.0], [7.0]]) == [1.0, 2.0, 3.0]
    assert suite.later_epochs([]) == []


def test_overhead_is_the_share_of_a_trial_outside_fit():
    assert suite.overhead(100.0, 96.0) == pytest.approx(0.04)
    assert suite.overhead(50.0, 50.0) == 0.0
    assert math.isnan(suite.overhead(0.0, 0.0))


def test_trial_overheads_use_the_record_times_and_skip_what_cannot_count():
    done = fake_record(
        trial_id="0",
        started_at="2026-11-27T01:00:00.000+00:00",
        finished_at="2026-11-27T01:00:40.500+00:00",
        fit_seconds=38.475,
        train_seconds=38.975,
        eval_seconds=1.25,
    )
    old = fake_record(trial_id="1", fit_seconds=None)  # written before fit_seconds existed
    failed = fake_record(trial_id="2", status="failed", fit_seconds=3.0)
    rows = suite.trial_overheads([done, old, failed])
    assert [r["trial_id"] for r in rows] == ["0"]
    assert rows[0]["trial_seconds"] == pytest.approx(40.5)
    assert rows[0]["overhead"] == pytest.approx(2.025 / 40.5)
    parts = rows[0]["build_seconds"] + rows[0]["eval_seconds"] + rows[0]["other_seconds"]
    assert rows[0]["build_seconds"] == pytest.approx(0.5)
    assert parts == pytest.approx(40.5 - 38.475)  # the parts add up to the overhead


def test_a_remainder_below_a_millisecond_is_zero_not_minus_zero():
    record = fake_record(
        started_at="2026-11-27T01:00:00.000+00:00",
        finished_at="2026-11-27T01:00:40.000+00:00",
        fit_seconds=38.5,
        train_seconds=38.6001,  # the timestamps' millisecond rounding, not time that went back
        eval_seconds=1.4,
    )
    (row,) = suite.trial_overheads([record])
    assert math.copysign(1.0, row["other_seconds"]) == 1.0  # printed "0.00 s", not "-0.00 s"


def test_pixel_megabytes_and_ratio():
    assert suite.pixel_megabytes(70_000, 1) == pytest.approx(70_000 * 784 / 2**20)
    assert suite.pixel_megabytes(10, 4) == 4 * suite.pixel_megabytes(10, 1)
    assert suite.ratio(3.0, 2.0) == 1.5
    assert math.isnan(suite.ratio(1.0, 0.0))


def test_the_suite_table_states_the_ratio_overhead_and_memory():
    result = {
        "throughput": {
            "batch_size": 200,
            "images_per_epoch": 20_000,
            "plain_images_per_s": 2000.0,
            "suite_images_per_s": 2500.0,
            "ratio": 1.25,
        },
        "largest": {"space": "cnn_plus", "params": 1_739_594, "images_per_s": 90.0},
        "overhead": {
            "trials": [{}, {}, {}],
            "median_overhead": 0.031,
            "median_fit_seconds": 40.0,
            "median_build_seconds": 0.2,
            "median_eval_seconds": 1.1,
            "median_other_seconds": 0.05,
        },
        "memory": {
            "peak_rss_mb": 1250.0,
            "images": 70_000,
            "pixels_uint8_mb": 52.3,
            "pixels_float32_mb": 209.4,
            "search_growth_mb": 500.0,
        },
    }
    table = suite.suite_table(result)
    assert "1.25x" in table and "3.1%" in table and "1,739,594" in table
    assert "test evaluation 1.10 s" in table
    assert "peak RSS 1250 MB" in table and "52 MB as uint8" in table


# -- the published tables (bench.perf.doc_tables) --------------------------------------------------

MACHINE = {"cpu": "AMD EPYC", "flags": ["avx2", "avx512f", "avx512_bf16"], "cores": 2}


def test_the_machine_names_the_cpu_its_flags_and_cores():
    assert doc_tables.machine_text(MACHINE) == "AMD EPYC, 2 cores (avx2, avx512f, avx512_bf16)"
    assert doc_tables.machine_text({**MACHINE, "flags": []}) == "AMD EPYC, 2 cores (no AVX2)"
    assert doc_tables.machine_text(None) == "not recorded"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: X\nflags\t\t: fpu avx512f sse avx2 avx512_bf16\n")
    monkeypatch.setattr(environment, "CPUINFO", cpuinfo)
    assert environment.cpu_flags() == ["avx2", "avx512f", "avx512_bf16"]


def test_the_suite_row_has_the_command_date_machine_and_figures():
    result = {
        "command": "make bench",
        "measured_at": "2026-12-01T16:00:00+0000",
        "machine": MACHINE,
        "throughput": {"plain_images_per_s": 2004.4, "suite_images_per_s": 2596.0, "ratio": 1.2952},
        "largest": {"images_per_s": 88.2},
        "overhead": {"median_overhead": 0.042, "median_fit_seconds": 39.4},
        "memory": {"peak_rss_mb": 1648.3},
    }
    row = doc_tables.suite_row(result)
    assert row == (
        "| 2026-12-01 | `make bench` | AMD EPYC, 2 cores (avx2, avx512f, avx512_bf16) | 2,004 "
        "| 2,596 | 1.30x | 88 | 4.2% of a 39 s fit | 1,648 MB |"
    )
    header, separator, _ = doc_tables.table("suite", result).split("\n")
    assert header.count("|") == separator.count("|") == row.count("|")


def test_a_table_replaces_only_the_text_between_its_markers():
    begin, end = (m.format(name="suite") for m in (doc_tables.BEGIN, doc_tables.END))
    doc = f"intro\n{begin}\nold | row\n{end}\nafter\n"
    assert doc_tables.with_table(doc, "suite", "new") == f"intro\n{begin}\nnew\n{end}\nafter\n"
    with pytest.raises(ValueError, match="no markers for the workers table"):
        doc_tables.with_table(doc, "workers", "new")


def test_the_doc_shows_the_published_figures():
    # docs/benchmarks/*.json are what `python -m bench.perf publish` copied; the doc's tables
    # must be their rendering, so that the two cannot drift apart.
    assert doc_tables.published("suite") is not None
    text = doc_tables.DOC.read_text()
    assert doc_tables.render_doc(text) == text


def test_publish_draws_the_search_figure_from_the_data_it_publishes(tmp_path, monkeypatch):
    from bench.perf import commands

    published = json.loads((doc_tables.DATA_DIR / "search.json").read_text())
    out, docs = tmp_path / "perf", tmp_path / "docs"
    out.mkdir()
    docs.mkdir()
    (out / "search.json").write_text(json.dumps(published))
    doc = docs / "benchmarks.md"
    doc.write_text(doc_tables.DOC.read_text())
    monkeypatch.setattr(doc_tables, "DATA_DIR", docs)
    monkeypatch.setattr(doc_tables, "DOC", doc)
    assert commands.publish(None, out) == 0
    figure = (docs / commands.SEARCH_FIGURE).read_bytes()
    assert figure.startswith(b"\x89PNG") and len(figure) > 10_000
    assert json.loads((docs / "search.json").read_text()) == published
    # The doc shows the figure where its data is published.
    assert f"](benchmarks/{commands.SEARCH_FIGURE})" in doc.read_text()
