"""docs/notebook.ipynb runs top to bottom on a real Jupyter kernel and shows what it says."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "notebook.ipynb"
CELL_TIMEOUT_S = 300


def outputs(cell) -> list[dict]:
    return [dict(output) for output in cell.get("outputs", [])]


def test_the_notebook_searches_shows_its_trials_a_figure_and_the_recommendation(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # In a scratch folder: its run lands in tmp_path/results, not in the repository.
    NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not [o for c in code for o in outputs(c) if o["output_type"] == "error"]
    shown = {c.source.split("\n")[0]: outputs(c) for c in code}
    frame = shown['frame = bench.trials("notebook", results=RESULTS)']
    assert "<table" in frame[-1]["data"]["text/html"]
    body = frame[-1]["data"]["text/html"].split("<tbody>")[1]
    assert body.count("<tr>") == 3  # the three trials, each a row
    (figure,) = shown["from bench.report import plots, tables"]
    assert "image/png" in figure["data"]
    said = "".join(
        o.get("text", "") for o in shown['best = bench.recommend("notebook", results=RESULTS)']
    )
    assert said.startswith("notebook/") and "validation 0." in said
    assert (tmp_path / "results" / "notebook" / "report" / "index.html").is_file()
