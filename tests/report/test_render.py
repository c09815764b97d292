"""Tests of bench.report.render: report blocks as Markdown and HTML, and table cells as text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.report import render
from bench.report.render import Figure, Heading, Image, Paragraph, Table

HOSTILE = "a|b <script>x</script>\nnext"
FIGURE = Figure("plot.png", "A <plot>", b"\x89PNG")
BLOCKS = [
    Heading("Title", 1),
    Heading("Section", 2),
    Paragraph(HOSTILE),
    Table(pd.DataFrame({"col|umn": [HOSTILE, "plain"]})),
    Heading("Sub", 3),
    Image(FIGURE),
]


def test_markdown_renders_every_block_and_escapes_text():
    markdown = render.to_markdown(BLOCKS)
    escaped = "a\\|b &lt;script&gt;x&lt;/script&gt; next"
    assert markdown.split("\n\n") == [
        "# Title",
        "## Section",
        escaped,
        f"| col\\|umn |\n|---|\n| {escaped} |\n| plain |",
        "### Sub",
        "![A <plot>](plot.png)\n",
    ]


def test_html_is_one_page_with_every_value_escaped():
    page = render.to_html(BLOCKS, title="<report>")
    assert page.startswith("<!DOCTYPE html>") and "<title>&lt;report&gt;</title>" in page
    assert "<script>" not in page
    assert "<h1>Title</h1>" in page and "<h3>Sub</h3>" in page
    assert "<p>a|b &lt;script&gt;x&lt;/script&gt;\nnext</p>" in page
    assert "<th>col|umn</th>" in page and "<td>plain</td>" in page
    assert '<img alt="A &lt;plot&gt;" src="data:image/png;base64,iVBORw=="' in page


def test_something_else_is_not_a_block():
    with pytest.raises(TypeError, match="not a report block"):
        render.to_markdown([("p", "a tuple")])
    with pytest.raises(TypeError, match="not a report block"):
        render.to_html([("p", "a tuple")], "t")


def test_cells_format_by_column_and_leave_missing_values_empty():
    frame = pd.DataFrame(
        {
            "test_accuracy": [0.99312, np.nan],
            "params": [1234567, 12],
            "baseline": [True, False],
            "dropout": [0.15000000000000002, None],
            "name": ["x", None],
        }
    )
    assert render.cells(frame).to_dict("list") == {
        "test_accuracy": ["0.9931", ""],
        "params": ["1,234,567", "12"],
        "baseline": ["yes", ""],
        "dropout": ["0.15", ""],
        "name": ["x", ""],
    }
    assert render.cell("learning_rate", np.float32(0.5)) == "0.5"
