"""Tests of bench.report.writer: whole reports on disk (CSV, Markdown, HTML, figures) and errors."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.core import data, metrics, records
from bench.report import columns, loading, render, summary, tables, writer
from bench.report.render import Paragraph
from tests import factories
from tests.factories import fake_record, fake_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = Path(__file__).resolve().parents[2]
MALICIOUS = "<script>x</script>"
TEXT_FILES = (writer.INDEX_HTML, writer.REPORT_MD, writer.TRIALS_CSV)
# What `bench report` loads, and all that sits below it: none of it may need TensorFlow, Keras or
# KerasTuner.
REPORT_MODULES = tuple(
    f"bench.{path.parent.name}.{path.stem}"
    for package in ("core", "report")
    for path in sorted((REPO_ROOT / "bench" / package).glob("*.py"))
    if path.stem != "__init__"
)


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    """A run with 6 search trials (1 failed, with a hostile error) and a weak seed baseline."""
    results = tmp_path_factory.mktemp("results")
    run_dir = fake_run(results, run="r1", n=6, failed=1)
    failed = next(r for r in records.load_records(run_dir) if r["status"] == "failed")
    records.write_record(run_dir, {**failed, "error": f"ValueError: bad {MALICIOUS}"})
    # A weak baseline, so that a searched trial is recommended and compared with it.
    seed = next(r for r in records.load_records(run_dir) if r["space"] == "seed")
    records.write_record(run_dir, {**seed, "val_accuracy": 0.95, "test_accuracy": 0.96})
    out = results / "report"
    return run_dir, out, writer.write_report([run_dir], out)


# ---------------------------------------------------------------- factories


def test_fake_record_follows_the_schema():
    for status in records.STATUSES:
        record = fake_record(status=status)
        records.validate_record(record)
        assert tuple(record) == records.RECORD_KEYS
    assert fake_record(space="seed")["hyperparameters"] == {}
    assert fake_record(space="seed")["architecture"] == factories.SEED_LABEL
    assert fake_record(trial_id="03") == fake_record(trial_id="03")
    assert fake_record(architecture="mine")["architecture"] == "mine"
    hp = {"conv_blocks": 2, "filters_0": 32, "filters_1": 64, "filters_2": 128}
    hp.update(kernel_size=3, batch_norm=True, conv_dropout=0.25, dense_units=128)
    hp.update(dense_dropout=0.5, optimizer="adam", learning_rate=0.001)
    label = fake_record(hyperparameters=hp)["architecture"]
    assert label == "2x[32,64] k3 bn drop0.25 dense128 drop0.5 adam lr1e-3"


def test_fake_runs_measure_what_their_predictions_say(tmp_path):
    run_dir = fake_run(tmp_path, n=3, failed=1)
    for record in records.completed(records.load_records(run_dir)):
        stored = records.load_predictions(run_dir, record)
        accuracy, loss = metrics.test_metrics(stored["probs"], stored["y_true"])
        assert record["test_accuracy"] == pytest.approx(accuracy)
        assert record["test_loss"] == pytest.approx(loss, rel=1e-3)  # probs are stored as float16


# ---------------------------------------------------------------- whole reports


def test_report_writes_csv_markdown_html_and_figures(one_run):
    run_dir, out, index = one_run
    assert index == out / writer.INDEX_HTML
    for name in TEXT_FILES:
        assert (out / name).is_file()
    pngs = sorted(out.glob("*.png"))
    # Fake predictions are not of the real test digits, so there is no grid of them to draw.
    drawn = {name for name, _, _ in writer.FIGURES} - {"misclassified.png"}
    assert {p.name for p in pngs} == drawn
    assert "Misclassified digits skipped: the data in" in (out / writer.REPORT_MD).read_text()
    page = index.read_text()
    assert page.count('src="data:image/png;base64,') == len(pngs)
    assert "max-width: 100%" in page
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_report_recommends_by_validation_and_compares_with_the_seed(one_run):
    run_dir, out, _ = one_run
    trial_records = records.load_records(run_dir)
    best = records.best_by_validation(trial_records)
    by_test = max(records.completed(trial_records), key=lambda r: r["test_accuracy"])
    assert best["space"] == "cnn"
    markdown = (out / writer.REPORT_MD).read_text()
    assert f"trial {best['trial_id']} of run r1" in markdown
    if by_test is not best:
        assert f"trial {by_test['trial_id']} of run r1" not in markdown
    assert "VALIDATION accuracy" in markdown and "never used to choose" in markdown
    gain = (best["test_accuracy"] - 0.96) * 100
    assert f"{gain:+.2f} percentage points" in markdown
    assert "## Failures (1)" in markdown
    assert "## Time to accuracy" in markdown and "99.5%" in markdown
    intervals = f"95% intervals for this model on {factories.TEST_SAMPLES:,} test images"
    assert intervals in markdown and "(Wilson)" in markdown and "(bootstrap)" in markdown


def test_report_escapes_hostile_text(one_run):
    _, out, index = one_run
    page = index.read_text()
    assert MALICIOUS not in page
    assert html_escaped(MALICIOUS) in page
    assert MALICIOUS not in (out / writer.REPORT_MD).read_text()


def html_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_trials_csv_round_trips_every_trial_and_hyperparameter(one_run):
    run_dir, out, _ = one_run
    trial_records = records.load_records(run_dir)
    csv = pd.read_csv(out / writer.TRIALS_CSV, dtype={"trial_id": str})
    assert len(csv) == len(trial_records)
    assert (csv["status"] == "failed").sum() == 1
    names = {name for r in trial_records for name in r["hyperparameters"]}
    assert {c for c in csv.columns if c.startswith("hp_")} == {f"hp_{n}" for n in names}
    for record in trial_records:
        row = csv.set_index("trial_id").loc[record["trial_id"]]
        for name, value in record["hyperparameters"].items():
            assert row[f"hp_{name}"] == value
    missing = set(columns.CSV_COLUMNS) - set(csv.columns)
    assert not missing
    for record in records.completed(trial_records):
        row = csv.set_index("trial_id").loc[record["trial_id"]]
        assert row["latency_ms"] == record["inference"]["latency_ms"]
        assert row["inference_bytes"] == record["inference"]["bytes"]
        assert row["flops"] == record["inference"]["flops"]


def _costs(run_dir, costs: dict) -> None:
    """Give trials of run_dir these (val_accuracy, latency_ms, beside_training)."""
    for record in records.load_records(run_dir):
        if record["trial_id"] in costs:
            val, latency, beside = costs[record["trial_id"]]
            inference = {**record["inference"], "latency_ms": latency, "beside_training": beside}
            records.write_record(run_dir, {**record, "val_accuracy": val, "inference": inference})


def _summary(run_dir) -> str:
    ctx = loading.load_context([run_dir])
    return " ".join(block.text for block in summary.section(ctx) if isinstance(block, Paragraph))


def test_the_fastest_configuration_as_good_as_the_winner_is_named(tmp_path):
    run_dir = fake_run(tmp_path, run="r", n=4, failed=0, with_seed_baseline=False)
    # 6,000 validation images: the Wilson interval of 0.99 reaches down to about 0.9872.
    costs = {"00": (0.99, 4.0, False), "01": (0.988, 1.0, False), "02": (0.98, 0.5, False)}
    _costs(run_dir, {**costs, "03": (0.985, 3.0, False)})
    text = _summary(run_dir)
    assert "As good, 4.0x faster: trial 01 of run r" in text
    assert "within the winner's 95% interval (0.9872 to" in text
    assert "other workers" not in text
    board = tables.leaderboard(loading.load_context([run_dir]).df)
    assert {"latency_ms", "images_per_second", "inference_bytes", "flops"} <= set(board.columns)
    _costs(run_dir, {"01": (0.988, 1.0, True)})
    assert "measured while other workers of the run trained" in _summary(run_dir)
    _costs(run_dir, {"01": (0.988, 3.0, False)})  # 1.33x: within timing noise
    assert "faster on this CPU by 1.5x or more" in _summary(run_dir)


def test_records_from_before_inference_costs_are_reported_without_them(tmp_path):
    run_dir = fake_run(tmp_path, run="old", n=3, failed=0)
    for record in records.load_records(run_dir):
        records.write_record(run_dir, {**record, "schema": 1, "inference": None})
    ctx = loading.load_context([run_dir])
    skipped = "Accuracy vs latency skipped: no finished trial has a measured latency."
    assert writer._fig_latency(ctx) == skipped
    board = tables.leaderboard(ctx.df)
    assert "params" in board.columns and "latency_ms" not in board.columns
    assert "faster" not in _summary(run_dir)


def test_report_of_two_runs_is_combined(tmp_path):
    dirs = [fake_run(tmp_path, run=name, n=4, failed=0) for name in ("alpha", "beta")]
    index = writer.write_report(dirs, tmp_path / "out")
    csv = pd.read_csv(tmp_path / "out" / writer.TRIALS_CSV)
    assert set(csv["run"]) == {"alpha", "beta"}
    assert len(csv) == 2 * 5
    page = index.read_text()
    assert "mnist-bench report: alpha, beta" in page
    assert "Best trial of each run" in page
    # All but the grid of misclassified digits, which needs predictions of the real test set.
    assert len(list((tmp_path / "out").glob("*.png"))) == len(writer.FIGURES) - 1


def test_a_damaged_record_is_listed_and_the_rest_reported(tmp_path, quick_figures):
    run_dir = fake_run(tmp_path, n=4, failed=0)
    record = records.trials_dir(run_dir) / "02.json"
    record.write_text(record.read_text()[:100])
    writer.write_report([run_dir], tmp_path / "out")
    text = (tmp_path / "out" / writer.REPORT_MD).read_text()
    assert "## Damaged files (1)" in text and f"{record} is damaged" in text
    csv = pd.read_csv(tmp_path / "out" / writer.TRIALS_CSV, dtype={"trial_id": str})
    assert sorted(csv["trial_id"]) == ["00", "01", "03", "seed"]


def as_fashion_run(run_dir: Path) -> Path:
    """A fake run turned into one of Fashion-MNIST: its config and records say so."""
    config = records.load_config(run_dir)
    records.atomic_write_json(run_dir / records.CONFIG_FILE, {**config, "dataset": "fashion_mnist"})
    for record in records.load_records(run_dir):
        dataset = {**record["dataset"], "name": "fashion_mnist", "sha256": "f" * 64}
        records.write_record(run_dir, {**record, "dataset": dataset})
    return run_dir


def test_a_run_whose_budget_trains_nothing_full_length_says_what_it_can_reach(
    tmp_path, quick_figures
):
    run_dir = fake_run(tmp_path, n=2, failed=0)
    config = records.load_config(run_dir)
    reach = "this budget's longest training is 3 epochs, short of the 10 of a full-length trial"
    records.atomic_write_json(
        run_dir / records.CONFIG_FILE, {**config, records.BUDGET_REACH_KEY: reach}
    )
    writer.write_report([run_dir], tmp_path / "out")
    text = (tmp_path / "out" / writer.REPORT_MD).read_text()
    assert f"{run_dir.name}, from its start: {reach}." in text


def test_runs_on_another_dataset_are_named_apart_not_ranked(tmp_path):
    digits = fake_run(tmp_path, run="digits", n=4, failed=0)
    clothes = as_fashion_run(fake_run(tmp_path, run="clothes", n=4, failed=0))
    bests = {
        path.name: records.best_by_validation(records.load_records(path))
        for path in (digits, clothes)
    }
    # The run given first has the lower best validation accuracy: ranked together, the other
    # dataset's trial would win.
    first, other = sorted((digits, clothes), key=lambda path: bests[path.name]["val_accuracy"])
    writer.write_report([first, other], tmp_path / "out")
    text = (tmp_path / "out" / writer.REPORT_MD).read_text()
    mine = bests[first.name]
    assert f"trial {mine['trial_id']} of run {first.name}" in text.split("## ")[1]
    datasets = {digits.name: "mnist", clothes.name: "fashion_mnist"}
    assert f"Runs on {datasets[other.name]} ({other.name}) are left out" in text
    theirs = bests[other.name]
    assert (
        f"trial {theirs['trial_id']} of run {other.name} (validation {theirs['val_accuracy']:.4f}"
        in text
    )
    assert "their accuracies do not compare" in text


def test_runs_are_compared_oldest_first_with_their_environments(tmp_path, quick_figures):
    newer = fake_run(tmp_path, run="tuesday", n=3, failed=0)
    older = fake_run(tmp_path, run="monday", n=3, failed=0)
    env = {field: "x" for field in writer.ENVIRONMENT_FIELDS}
    for run_dir, day, tensorflow in (
        (older, "2026-01-05", "2.20.0"),
        (newer, "2026-01-06", "2.21.0"),
    ):
        config = records.load_config(run_dir)
        records.atomic_write_json(
            run_dir / records.CONFIG_FILE, {**config, "created_at": f"{day}T20:00:00+00:00"}
        )
        records.note_environment(run_dir, {**env, "tensorflow": tensorflow}, day)
    # The newest run's seed baseline lost 0.5 points: a flagged regression.
    seed = next(r for r in records.load_records(newer) if r["space"] == "seed")
    monday_seed = next(r for r in records.load_records(older) if r["space"] == "seed")
    records.write_record(newer, {**seed, "test_accuracy": monday_seed["test_accuracy"] - 0.005})
    writer.write_report([newer, older], tmp_path / "out")
    text = (tmp_path / "out" / writer.REPORT_MD).read_text()
    assert "Against the previous run monday, the latest run tuesday's pick" in text
    changes = text.split("### tuesday against monday")[1].split("## Environment")[0]
    assert "regression(s) flagged" in changes
    seed_row = next(line for line in changes.splitlines() if line.startswith("| seed |"))
    assert "| -0.50 |" in seed_row and "accuracy down" in seed_row
    environment = text.split("## Environment")[1].split("\n## ")[0]
    assert "| tensorflow | 2.21.0 | 2.20.0 | yes |" in environment
    assert "| keras | x | x |  |" in environment


def test_an_old_run_without_environment_shows_what_its_records_name(tmp_path, quick_figures):
    run_dir = fake_run(tmp_path, n=2, failed=0)
    writer.write_report([run_dir], tmp_path / "out")
    text = (tmp_path / "out" / writer.REPORT_MD).read_text()
    assert "| git_commit | abc1234 |" in text and "| cpu | (not recorded) |" in text


def make_empty_run(results: Path, name: str) -> Path:
    run_dir = results / name
    records.atomic_write_json(run_dir / records.CONFIG_FILE, {"run": name, "space": "cnn"})
    return run_dir


@pytest.mark.parametrize("kind", ["all_failed", "no_trials"])
def test_run_without_finished_trials_still_reports(tmp_path, kind):
    if kind == "all_failed":
        run_dir = fake_run(tmp_path, n=3, failed=3, with_seed_baseline=False)
    else:
        run_dir = make_empty_run(tmp_path, "empty")
    out = tmp_path / "out"
    writer.write_report([run_dir], out)
    for name in TEXT_FILES[:2]:
        assert writer.NO_TRIAL in (out / name).read_text()
    csv = pd.read_csv(out / writer.TRIALS_CSV)
    assert len(csv) == (3 if kind == "all_failed" else 0)
    assert not list(out.glob("*.png"))


def test_missing_predictions_skip_the_confusion_matrix_and_old_figures_go(tmp_path):
    run_dir = fake_run(tmp_path, n=3, failed=0, with_seed_baseline=False)
    for npz in records.trials_dir(run_dir).glob("*.npz"):
        npz.unlink()
    out = tmp_path / "out"
    records.atomic_write_bytes(out / "confusion_matrix.png", PNG_MAGIC)  # from an earlier report
    writer.write_report([run_dir], out)
    assert not (out / "confusion_matrix.png").exists()
    assert len(list(out.glob("*.png"))) == len(writer.FIGURES) - len(writer.ERROR_FIGURES)
    text = (out / writer.REPORT_MD).read_text()
    assert "Confusion matrix skipped" in text
    assert "Misclassified digits skipped: predictions of trial" in text
    assert "gets wrong" not in text
    writer.write_report([make_empty_run(tmp_path, "empty")], out)
    assert not list(out.glob("*.png"))


# ---------------------------------------------------------------- the winner's mistakes

MISTAKES = {3: 0.9, 10: 0.6, 11: 0.7}  # test image index: confidence of the wrong answer
TEST_LIMIT = 200


def run_with_real_test_labels(results: Path) -> tuple[Path, np.ndarray]:
    """One finished trial whose predictions are the true labels of the first TEST_LIMIT test
    digits, except MISTAKES, where it answers the next digit up."""
    raw = data.load_raw()
    y_true = raw.y_test[:TEST_LIMIT]
    probs = np.full((TEST_LIMIT, metrics.NUM_CLASSES), 0.01)
    probs[np.arange(TEST_LIMIT), y_true] = 0.91
    for index, confidence in MISTAKES.items():
        probs[index] = (1 - confidence) / (metrics.NUM_CLASSES - 1)
        probs[index, (y_true[index] + 1) % metrics.NUM_CLASSES] = confidence
    run_dir = results / "real"
    config = {"run": "real", "space": "cnn", "test_limit": TEST_LIMIT, "val_size": 10000}
    records.atomic_write_json(run_dir / records.CONFIG_FILE, config)
    record = fake_record(run="real", trial_id="00")
    record["dataset"] = {**record["dataset"], "sha256": raw.sha256}
    record["predictions"] = records.write_predictions(run_dir, "00", y_true, probs)
    records.write_record(run_dir, record)
    return run_dir, y_true


def test_the_winners_mistakes_per_digit_pair_and_image(tmp_path):
    run_dir, y_true = run_with_real_test_labels(tmp_path)
    out = tmp_path / "out"
    writer.write_report([run_dir], out)
    text = (out / writer.REPORT_MD).read_text()
    section = text.split("## What the recommended trial gets wrong")[1].split("\n## ")[0]
    digits, pairs = section.split("### Most confused pairs")
    per_digit = [line for line in digits.splitlines() if line.startswith("| ")][1:]  # no header
    assert len(per_digit) == metrics.NUM_CLASSES
    assert sum(int(row.split("|")[3]) for row in per_digit) == len(MISTAKES)
    mistakes = {(y_true[i], (y_true[i] + 1) % metrics.NUM_CLASSES) for i in MISTAKES}
    pair_rows = [line.split("|")[1:3] for line in pairs.splitlines() if line.startswith("| ")]
    assert {(int(t), int(p)) for t, p in pair_rows[1:]} == mistakes
    assert (out / "misclassified.png").read_bytes().startswith(PNG_MAGIC)
    # Both pictures of the mistakes sit in this section, not under Figures.
    assert "![Misclassified test digits](misclassified.png)" in section
    assert "confusion_matrix.png" in section
    assert "misclassified.png" not in text.split("## Figures")[1]


def test_unusable_run_directories_raise_report_error(tmp_path):
    with pytest.raises(writer.ReportError, match="does not exist"):
        writer.write_report([tmp_path / "nope"], tmp_path / "out")
    (tmp_path / "bare").mkdir()
    with pytest.raises(writer.ReportError, match="has no config.json"):
        writer.write_report([tmp_path / "bare"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_importing_the_report_does_not_import_tensorflow():
    modules = ", ".join(REPORT_MODULES)
    code = (
        f"import sys, {modules}; "
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', "
        "'keras_tuner')]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_confirmed_winner_is_tested_against_the_space_defaults_in_plain_words():
    from bench.report import confirmed

    def pairs(verdict: str, better: str = "#1 r/5", worse: str = "#3 r/0 (the defaults)"):
        return pd.DataFrame([{"better": better, "worse": worse, "verdict": verdict}])

    beat = confirmed.defaults_verdict(pairs("significant at 5%"))
    assert beat == "The winner #1 r/5 beats the space's defaults significantly."
    noise = confirmed.defaults_verdict(pairs("not significant: could be seed noise"))
    assert noise.startswith("Nothing beat the space's defaults significantly")
    first = confirmed.defaults_verdict(pairs("x", better="#1 r/0 (the defaults)", worse="#2"))
    assert first.startswith("The space's defaults are the confirmed winner")
    assert confirmed.defaults_verdict(pairs("x", worse="#2 r/4")) is None


def test_the_defaults_are_the_trials_of_a_runs_first_configuration():
    from bench.report import confirmed
    from bench.report import loading as runs_module

    first, other = {"x": 1}, {"x": 2}
    trials = [
        fake_record(trial_id="0", hyperparameters=first),
        fake_record(trial_id="1", hyperparameters=other),
        fake_record(trial_id="2", hyperparameters=first),  # the defaults at a higher rung
    ]
    run = runs_module.Run("r", Path("."), {}, trials, [], [])
    assert confirmed.defaults_of([run]) == {("r", "0"), ("r", "2")}


# ---------------------------------------------------------------- replaced whole or not at all

# Of writer.FIGURES, drawn as a few bytes, for tests of the files and the text; the figures
# themselves are drawn in the reports of one run, of two, and of a run without predictions.
QUICK_FIGURES = 3
# `bench report` with quick figures, as a process that can be killed.
QUICK_REPORT = f"""
import sys
from bench import cli
from bench.report import render, writer
figures = [render.Figure(n, t, b"png") for n, t, _ in writer.FIGURES[:{QUICK_FIGURES}]]
writer._draw_figures = lambda ctx: (figures, [])
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture
def quick_figures(monkeypatch):
    figures = [render.Figure(n, t, PNG_MAGIC) for n, t, _ in writer.FIGURES[:QUICK_FIGURES]]
    monkeypatch.setattr(writer, "_draw_figures", lambda ctx: (figures, []))


def report_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def scratch_beside(out: Path) -> list[str]:
    return [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def reported_run(results: Path) -> tuple[Path, Path, dict]:
    """A run reported once, then given one more seed baseline, so that a report of it now
    differs from the one on disk; returns the run, its report folder and the report's files."""
    run_dir = fake_run(results, n=3, failed=1)
    out = run_dir / "report"
    writer.write_report([run_dir], out)
    before = report_files(out)
    seed = next(r for r in records.load_records(run_dir) if r["space"] == "seed")
    records.write_record(run_dir, {**seed, "trial_id": "seed2", "val_accuracy": 0.9})
    return run_dir, out, before


def test_a_report_killed_while_writing_leaves_the_earlier_one_whole(tmp_path, quick_figures):
    run_dir, out, before = reported_run(tmp_path)
    killed = subprocess.run(
        [sys.executable, "-c", QUICK_REPORT, "report", run_dir.name, "--results", str(tmp_path)],
        cwd=REPO_ROOT,
        env={**os.environ, "BENCH_KILL_AT": "report.writing"},
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert report_files(out) == before
    assert len(scratch_beside(out)) == 1  # the new report, cut short
    writer.write_report([run_dir], out)  # the next report: whole, and what was left goes
    assert b"seed2" in (out / writer.TRIALS_CSV).read_bytes()
    assert scratch_beside(out) == []


def test_a_full_disk_mid_report_leaves_the_earlier_one_whole(tmp_path, monkeypatch, quick_figures):
    run_dir, out, before = reported_run(tmp_path)
    sync, written = records.os.fsync, []

    def full_after_the_figures(fd):
        written.append(fd)
        if len(written) > QUICK_FIGURES + 1:  # trials.csv and the figures are in
            raise OSError(errno.ENOSPC, "No space left on device")
        sync(fd)

    monkeypatch.setattr(records.os, "fsync", full_after_the_figures)
    with pytest.raises(records.DiskFull, match="the disk is full"):
        writer.write_report([run_dir], out)
    assert report_files(out) == before
    assert scratch_beside(out) == []


def test_a_folder_that_holds_more_than_a_report_is_refused_and_kept(tmp_path, quick_figures):
    run_dir = fake_run(tmp_path, n=2, failed=0)
    with pytest.raises(writer.ReportError, match=r"holds files that are not a report's \(config"):
        writer.write_report([run_dir], run_dir)  # --out the run folder itself
    assert (run_dir / records.CONFIG_FILE).is_file()
    assert not (run_dir / writer.INDEX_HTML).exists()


def test_damaged_predictions_are_listed_with_our_reason(tmp_path, quick_figures):
    run_dir = fake_run(tmp_path, n=4, failed=0)
    chosen = loading.recommend([loading.load_run(run_dir)])[1]
    trials = records.trials_dir(run_dir)
    (trials / chosen["predictions"]).write_bytes(np.random.default_rng(0).bytes(4096))
    other = next(p for p in trials.glob("*.npz") if p.name != chosen["predictions"])
    other.write_bytes(other.read_bytes()[:100])
    ctx = loading.load_context([run_dir])
    assert "unreadable" in ctx.predictions
    text = render.to_markdown(writer.report_blocks(ctx, [], []))
    damaged = text.split("## Damaged files (2)")[1].split("\n## ")[0]
    for path in (trials / chosen["predictions"], other):
        assert f"{path} is damaged (not a valid .npz)" in damaged
    assert "pickle" not in text
