"""Tests of bench.plots: every figure drawn into memory as PNG bytes and closed."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from bench import plots, records, tables
from tests.factories import fake_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
    "confusion": lambda df: plots.plot_confusion(tables.confusion([1, 2, 2], [1, 2, 3])),
}


# One run (no hue) is drawn by the whole-report tests in test_report.py; here several runs share
# the axes.
@pytest.mark.parametrize("name", DRAWINGS)
def test_each_figure_renders_to_png_and_is_closed(two_run_frame, name):
    df = two_run_frame
    before = len(plt.get_fignums())
    fig = DRAWINGS[name](df)
    assert len(plt.get_fignums()) == before + 1
    png = plots.figure_png(fig)  # saves into an io.BytesIO
    assert png.startswith(PNG_MAGIC)
    assert len(plt.get_fignums()) == before
