"""bench.report.plots: every figure drawn into memory as PNG bytes, never through pyplot."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.figure import Figure

from bench.core import metrics, records
from bench.report import plots, tables
from tests.factories import fake_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def two_run_frame(tmp_path_factory):
    results = tmp_path_factory.mktemp("draw")
    runs = [fake_run(results, run=name, n=5, failed=1) for name in ("r1", "r2")]
    return tables.trials_frame([(d.name, records.load_records(d)) for d in runs])


DRAWINGS = {
    "top_accuracy": lambda df: plots.plot_top_architectures(tables.top_architectures(df)),
    "top_loss": lambda df: plots.plot_top_architectures(
        tables.top_architectures(df, by="test_loss"), "test_loss"
    ),
    "pareto": lambda df: plots.plot_pareto(tables.pareto_front(df)),
    "effects": lambda df: plots.plot_hyperparameter_effects(tables.hyperparameter_effects(df)),
    "best_so_far": lambda df: plots.plot_best_so_far(tables.best_so_far(df)),
    "curves": lambda df: plots.plot_learning_curves(tables.learning_curves(df)),
    "confusion": lambda df: plots.plot_confusion(metrics.confusion([1, 2, 2], [1, 2, 3])),
}


# One run (no hue) is drawn by the whole-report tests in test_report.py; here several runs share
# the axes.
@pytest.mark.parametrize("name", DRAWINGS)
def test_each_figure_renders_to_png_outside_pyplot(two_run_frame, name):
    df = two_run_frame
    before = plt.get_fignums()
    fig = DRAWINGS[name](df)
    assert isinstance(fig, Figure)
    png = plots.figure_png(fig)  # saves into an io.BytesIO
    assert png.startswith(PNG_MAGIC)
    assert plt.get_fignums() == before  # nothing for pyplot to show or leak


BACKEND = """
import sys
import matplotlib
matplotlib.use("svg")  # as a notebook's inline backend would be
for name in sys.argv[2:]:
    __import__(name)
from bench.report import writer
from tests.factories import fake_run
from pathlib import Path
results = Path(sys.argv[1])
writer.write_report([fake_run(results, run="r", n=3, failed=0)], results / "out")
print(matplotlib.get_backend())
"""


def test_importing_bench_and_writing_a_report_leave_matplotlibs_backend_alone(tmp_path):
    modules = [f"bench.report.{p.stem}" for p in (REPO_ROOT / "bench" / "report").glob("*.py")]
    done = subprocess.run(
        [sys.executable, "-c", BACKEND, str(tmp_path), "bench", *modules],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["svg"]
    assert (tmp_path / "out" / "index.html").is_file()


def test_long_architecture_names_wrap_and_keep_the_layout():
    # A cnn_plus name, ~180 characters: unwrapped, the constrained layout collapsed.
    name = (
        "2blocks bn drop0.1 dense128 drop0.3 adam lr2e-3 convs_per_block=2 filters=32 "
        "head=flatten label_smoothing=0 rotation_degrees=10 schedule=cosine shift=0.1 zoom=0.1"
    )
    top = pd.DataFrame(
        {"run": ["r"], "label": [f"r/0: {name}"], "test_accuracy": [0.995], "baseline": [False]}
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = plots.plot_top_architectures(top)
        ticks = [tick.get_text() for tick in fig.axes[0].get_yticklabels()]
        plots.figure_png(fig)
    assert [str(w.message) for w in caught if "constrained_layout" in str(w.message)] == []
    assert len(ticks) == 1 and ticks[0].count("\n") >= 2
    assert ticks[0].replace("\n", " ") == f"r/0: {name}"


def test_the_search_benchmark_draws_each_policys_band_and_rank():
    minutes = [0.25, 0.5, 0.75]
    bands = pd.DataFrame(
        {
            "policy": ["random"] * 3 + ["optuna"] * 3,
            "minutes": minutes * 2,
            "mean": [0.98, 0.985, 0.99, 0.97, 0.99, 0.992],
            "low": [float("nan"), 0.98, 0.985, 0.96, 0.985, 0.99],
            "high": [float("nan"), 0.99, 0.995, 0.98, 0.995, 0.994],
            "seeds": [1, 2, 2, 2, 2, 2],
        }
    )
    ranks = bands[["policy", "minutes"]].assign(rank=[1.0, 1.5, 2.0, 2.0, 1.5, 1.0])
    fig = plots.plot_search_benchmark(bands, ranks)
    left, right = fig.axes[:2]
    assert len(left.collections) == 2  # one band per policy
    assert len(right.get_lines()) == 2  # one rank line per policy
    assert right.get_ylim()[0] > right.get_ylim()[1]  # rank 1 on top
    assert plots.figure_png(fig).startswith(PNG_MAGIC)
