"""Tests of bench.report: table preparation, drawing into memory, and whole reports on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from bench import records, report
from tests.factories import fake_record, fake_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = Path(__file__).resolve().parents[1]
MALICIOUS = "<script>x</script>"
TEXT_FILES = (report.INDEX_HTML, report.REPORT_MD, report.TRIALS_CSV)


def frame_of(*trial_records: dict) -> pd.DataFrame:
    return report.trials_frame([("r1", list(trial_records))])


def completed(trial_id: str, test_accuracy: float, test_loss: float, **fields) -> dict:
    return fake_record(
        trial_id=trial_id, test_accuracy=test_accuracy, test_loss=test_loss, **fields
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
    return run_dir, out, report.write_report([run_dir], out)


# ---------------------------------------------------------------- factories


def test_fake_record_follows_the_schema():
    for status in records.STATUSES:
        record = fake_record(status=status)
        records.validate_record(record)
        assert tuple(record) == records.RECORD_KEYS
    assert fake_record(space="seed")["hyperparameters"] == {}
    assert fake_record(trial_id="03") == fake_record(trial_id="03")


# ---------------------------------------------------------------- preparation


def test_architecture_names_only_built_blocks_and_marks_seed():
    hp = {
        "conv_blocks": 2,
        "filters_0": 32,
        "filters_1": 64,
        "filters_2": 128,
        "kernel_size": 3,
        "batch_norm": True,
        "conv_dropout": 0.25,
        "dense_units": 128,
        "dense_dropout": 0.5,
        "optimizer": "adam",
        "learning_rate": 0.001,
    }
    name = report.architecture(hp, "cnn")
    assert name == "2x[32,64] k3 bn drop0.25 dense128 drop0.5 adam lr1e-3"
    assert report.architecture({**hp, "learning_rate": 0.01}, "cnn").endswith("lr1e-2")
    assert report.architecture({**hp, "batch_norm": False}, "cnn") != name
    assert report.architecture({**hp, "extra": 7}, "cnn") == name + " extra=7"
    assert report.architecture({}, "seed") == report.SEED_LABEL


def test_trials_frame_numbers_trials_by_start_and_measures_elapsed_hours():
    late = fake_record(
        trial_id="b",
        started_at="2024-01-01T02:00:00+00:00",
        finished_at="2024-01-01T03:30:00+00:00",
    )
    early = fake_record(
        trial_id="a",
        started_at="2024-01-01T01:00:00+00:00",
        finished_at="2024-01-01T01:30:00+00:00",
    )
    df = frame_of(late, early)
    assert list(df["trial_id"]) == ["a", "b"]
    assert list(df["trial_number"]) == [1, 2]
    assert df["elapsed_hours"].tolist() == pytest.approx([0.5, 2.5])


def test_leaderboard_ranks_by_test_accuracy_then_lower_test_loss():
    df = frame_of(
        completed("a", 0.99, 0.05, val_accuracy=0.995),
        completed("b", 0.99, 0.03, val_accuracy=0.990),
        completed("c", 0.98, 0.01, val_accuracy=0.999),
        fake_record(trial_id="d", status="failed"),
    )
    board = report.leaderboard(df)
    assert list(board["trial_id"]) == ["b", "a", "c"]
    assert list(board["rank"]) == [1, 2, 3]
    assert dict(zip(board["trial_id"], board["val_rank"], strict=True)) == {"c": 1, "a": 2, "b": 3}
    assert list(board.columns) == list(report.LEADERBOARD_COLUMNS)


def test_leaderboard_keeps_the_seed_baseline_as_a_flagged_row():
    df = frame_of(
        completed("a", 0.99, 0.05),
        completed("seed", 0.95, 0.20, space="seed"),
        completed("b", 0.97, 0.05),
    )
    board = report.leaderboard(df).set_index("trial_id")
    assert board.loc["seed", "baseline"]
    assert not board.loc[["a", "b"], "baseline"].any()
    assert board.loc["seed", "rank"] == 3
    assert board.loc["seed", "architecture"] == report.SEED_LABEL


def test_top_architectures_keeps_baseline_and_sorts_loss_ascending():
    trials = [completed(f"{i:02d}", 0.9 + i / 100, 0.5 - i / 100) for i in range(6)]
    df = frame_of(*trials, completed("seed", 0.5, 0.9, space="seed"))
    top = report.top_architectures(df, n=3)
    assert list(top["trial_id"]) == ["05", "04", "03", "seed"]
    assert top["label"].is_unique
    by_loss = report.top_architectures(df, n=2, by="test_loss")
    assert list(by_loss["trial_id"]) == ["05", "04", "seed"]


def test_pareto_front_on_a_hand_made_frame():
    points = {  # trial id: (params, test accuracy, on the front)
        "small": (50, 0.80, True),
        "a": (100, 0.90, True),
        "b": (200, 0.95, True),
        "b_worse": (200, 0.93, False),  # same size as b, less accurate
        "tie_bigger": (300, 0.95, False),  # as accurate as b but bigger
        "big": (400, 0.97, True),
        "big_twin": (400, 0.97, True),  # identical twins do not dominate each other
        "bloated": (500, 0.96, False),
    }
    df = frame_of(
        *(completed(k, acc, 0.1, params=p) for k, (p, acc, _) in points.items()),
        fake_record(trial_id="failed", status="failed"),
    )
    front = report.pareto_front(df).set_index("trial_id")
    assert len(front) == len(points)
    assert front["pareto"].to_dict() == {k: on for k, (_, _, on) in points.items()}


def test_hyperparameter_effects_is_tidy_and_skips_unbuilt_filters():
    shared = {"kernel_size": 3, "optimizer": "adam", "learning_rate": 1e-3, "batch_norm": True}
    df = frame_of(
        completed(
            "a",
            0.99,
            0.1,
            hyperparameters={"conv_blocks": 1, "filters_0": 32, "filters_1": 64, **shared},
        ),
        completed(
            "b",
            0.98,
            0.1,
            hyperparameters={"conv_blocks": 2, "filters_0": 16, "filters_1": 32, **shared},
        ),
        completed("seed", 0.97, 0.1, space="seed"),
    )
    effects = report.hyperparameter_effects(df)
    assert list(effects.columns) == list(report.EFFECT_COLUMNS)
    kinds = effects.drop_duplicates("hyperparameter").set_index("hyperparameter")["kind"]
    assert kinds["learning_rate"] == "numeric"
    assert kinds["filters_0"] == "numeric"
    assert kinds["optimizer"] == "categorical"
    assert kinds["batch_norm"] == "categorical"
    # Trial a has one block: its filters_1 was sampled but never built.
    assert effects.loc[effects["hyperparameter"] == "filters_1", "value"].tolist() == [32]
    assert len(effects[effects["hyperparameter"] == "conv_blocks"]) == 2


def test_best_so_far_never_decreases(tmp_path):
    run_dir = fake_run(tmp_path, n=10, failed=3, with_seed_baseline=False)
    df = report.trials_frame([("r1", records.load_records(run_dir))])
    progress = report.best_so_far(df)
    assert len(progress) == 10
    for column, source in (
        ("best_val_accuracy", "val_accuracy"),
        ("best_test_accuracy", "test_accuracy"),
    ):
        values = progress[column].dropna().to_numpy()
        assert (np.diff(values) >= 0).all()
        assert values[-1] == df[source].max()
    assert progress["trial_number"].is_monotonic_increasing


def test_learning_curves_take_the_top_trials_from_a_frame_or_records():
    trial_records = [completed(f"{i:02d}", 0.9 + i / 100, 0.1) for i in range(7)]
    curves = report.learning_curves(trial_records, n=2)
    assert set(curves["trial_id"]) == {"06", "05"}
    assert len(curves) == 2 * 2 * 3  # trials x splits x epochs
    assert set(curves["split"]) == {"train", "val"}
    record = trial_records[6]
    val = curves[(curves["trial_id"] == "06") & (curves["split"] == "val")]
    assert val["accuracy"].tolist() == record["history"]["val_accuracy"]
    assert val["epoch"].tolist() == [1, 2, 3]
    assert report.learning_curves(frame_of(*trial_records), n=2).equals(curves)


def test_confusion_counts_add_up():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 10, 500)
    y_pred = np.where(rng.random(500) < 0.8, y_true, rng.integers(0, 10, 500))
    matrix = report.confusion(y_true, y_pred)
    assert matrix.shape == (10, 10)
    assert matrix.to_numpy().sum() == 500
    assert np.trace(matrix.to_numpy()) == (y_true == y_pred).sum()
    assert matrix.loc[3, 5] == ((y_true == 3) & (y_pred == 5)).sum()


def test_failures_counts_trials_by_error():
    df = frame_of(
        completed("ok", 0.99, 0.1),
        fake_record(trial_id="a", status="failed", error="OOM"),
        fake_record(trial_id="b", status="failed", error="NaN loss"),
        fake_record(trial_id="c", status="failed", error="OOM"),
    )
    failed = report.failures(df)
    assert list(failed["trial_id"]) == ["a", "c", "b"]
    assert dict(zip(failed["error"], failed["count"], strict=True)) == {"OOM": 2, "NaN loss": 1}


# ---------------------------------------------------------------- drawing


@pytest.fixture(scope="module")
def two_run_frame(tmp_path_factory):
    results = tmp_path_factory.mktemp("draw")
    runs = [fake_run(results, run=name, n=5, failed=1) for name in ("r1", "r2")]
    return report.trials_frame([(d.name, records.load_records(d)) for d in runs])


DRAWINGS = {
    "top_accuracy": lambda df: report.plot_top_architectures(report.top_architectures(df)),
    "top_loss": lambda df: report.plot_top_architectures(
        report.top_architectures(df, by="test_loss"), "test_loss"
    ),
    "pareto": lambda df: report.plot_pareto(report.pareto_front(df)),
    "effects": lambda df: report.plot_hyperparameter_effects(report.hyperparameter_effects(df)),
    "best_so_far": lambda df: report.plot_best_so_far(report.best_so_far(df)),
    "curves": lambda df: report.plot_learning_curves(report.learning_curves(df)),
    "confusion": lambda df: report.plot_confusion(report.confusion([1, 2, 2], [1, 2, 3])),
}


# One run (no hue) is drawn by the whole-report tests below; here several runs share the axes.
@pytest.mark.parametrize("name", DRAWINGS)
def test_each_figure_renders_to_png_and_is_closed(two_run_frame, name):
    df = two_run_frame
    before = len(plt.get_fignums())
    fig = DRAWINGS[name](df)
    assert len(plt.get_fignums()) == before + 1
    png = report.figure_png(fig)  # saves into an io.BytesIO
    assert png.startswith(PNG_MAGIC)
    assert len(plt.get_fignums()) == before


# ---------------------------------------------------------------- whole reports


def test_report_writes_csv_markdown_html_and_figures(one_run):
    run_dir, out, index = one_run
    assert index == out / report.INDEX_HTML
    for name in TEXT_FILES:
        assert (out / name).is_file()
    pngs = sorted(out.glob("*.png"))
    assert {p.name for p in pngs} == {name for name, _, _ in report.FIGURES}
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
    markdown = (out / report.REPORT_MD).read_text()
    assert f"trial {best['trial_id']} of run r1" in markdown
    if by_test is not best:
        assert f"trial {by_test['trial_id']} of run r1" not in markdown
    assert "VALIDATION accuracy" in markdown and "never used to choose" in markdown
    gain = (best["test_accuracy"] - 0.96) * 100
    assert f"{gain:+.2f} percentage points" in markdown
    assert "## Failures (1)" in markdown


def test_report_escapes_hostile_text(one_run):
    _, out, index = one_run
    page = index.read_text()
    assert MALICIOUS not in page
    assert html_escaped(MALICIOUS) in page
    assert MALICIOUS not in (out / report.REPORT_MD).read_text()


def html_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_trials_csv_round_trips_every_trial_and_hyperparameter(one_run):
    run_dir, out, _ = one_run
    trial_records = records.load_records(run_dir)
    csv = pd.read_csv(out / report.TRIALS_CSV, dtype={"trial_id": str})
    assert len(csv) == len(trial_records)
    assert (csv["status"] == "failed").sum() == 1
    names = {name for r in trial_records for name in r["hyperparameters"]}
    assert {c for c in csv.columns if c.startswith("hp_")} == {f"hp_{n}" for n in names}
    for record in trial_records:
        row = csv.set_index("trial_id").loc[record["trial_id"]]
        for name, value in record["hyperparameters"].items():
            assert row[f"hp_{name}"] == value
    missing = set(report.CSV_COLUMNS) - set(csv.columns)
    assert not missing


def test_report_of_two_runs_is_combined(tmp_path):
    dirs = [fake_run(tmp_path, run=name, n=4, failed=0) for name in ("alpha", "beta")]
    index = report.write_report(dirs, tmp_path / "out")
    csv = pd.read_csv(tmp_path / "out" / report.TRIALS_CSV)
    assert set(csv["run"]) == {"alpha", "beta"}
    assert len(csv) == 2 * 5
    page = index.read_text()
    assert "mnist-bench report: alpha, beta" in page
    assert "Best trial of each run" in page
    assert len(list((tmp_path / "out").glob("*.png"))) == len(report.FIGURES)


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
    report.write_report([run_dir], out)
    for name in TEXT_FILES[:2]:
        assert report.NO_TRIAL in (out / name).read_text()
    csv = pd.read_csv(out / report.TRIALS_CSV)
    assert len(csv) == (3 if kind == "all_failed" else 0)
    assert not list(out.glob("*.png"))


def test_missing_predictions_skip_the_confusion_matrix_and_old_figures_go(tmp_path):
    run_dir = fake_run(tmp_path, n=3, failed=0, with_seed_baseline=False)
    for npz in records.trials_dir(run_dir).glob("*.npz"):
        npz.unlink()
    out = tmp_path / "out"
    records.atomic_write_bytes(out / "confusion_matrix.png", PNG_MAGIC)  # from an earlier report
    report.write_report([run_dir], out)
    assert not (out / "confusion_matrix.png").exists()
    assert len(list(out.glob("*.png"))) == len(report.FIGURES) - 1
    assert "Confusion matrix skipped" in (out / report.REPORT_MD).read_text()
    report.write_report([make_empty_run(tmp_path, "empty")], out)
    assert not list(out.glob("*.png"))


def test_unusable_run_directories_raise_report_error(tmp_path):
    with pytest.raises(report.ReportError, match="does not exist"):
        report.write_report([tmp_path / "nope"], tmp_path / "out")
    (tmp_path / "bare").mkdir()
    with pytest.raises(report.ReportError, match="has no config.json"):
        report.write_report([tmp_path / "bare"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_importing_the_report_does_not_import_tensorflow():
    code = (
        "import sys, bench.report; "
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', "
        "'keras_tuner')]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
