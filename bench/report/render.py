"""Report blocks (headings, paragraphs, tables, images) and their Markdown and HTML renderings."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.report.columns import format_value

CELL_FORMATS = {
    "val_accuracy": "{:.4f}",
    "val_loss": "{:.4f}",
    "test_accuracy": "{:.4f}",
    "test_loss": "{:.4f}",
    "params": "{:,.0f}",
    "train_seconds": "{:.1f}",
    "busy_hours": "{:.2f}",
    "busy_share": "{:.0%}",
    "oracle_wait_s": "{:.3f}",
    "target": "{:.1%}",
    "minutes": "{:.1f}",
    "accuracy": "{:.4f}",
    "share": "{:.0%}",
    "before_rank": "{:.0f}",
    "after_rank": "{:.0f}",
    "before_accuracy": "{:.4f}",
    "after_accuracy": "{:.4f}",
    "change_points": "{:+.2f}",
    "before_loss": "{:.4f}",
    "after_loss": "{:.4f}",
    **{
        f"{metric}{part}": "{:.4f}"
        for metric in ("test_accuracy", "test_loss")
        for part in ("_sd", "_low", "_high")
    },
    "p_value": "{:.3g}",
    "hours": "{:.2f}",
    "configurations_per_hour": "{:.1f}",
    "trials_per_hour": "{:.1f}",
    "best_val_accuracy": "{:.4f}",
}
HTML_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
.table { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; }
figure { margin: 1em 0; break-inside: avoid; }
@media print { body { max-width: none; margin: 0; } .table { overflow: visible; } }
"""
# Markdown table cells end at "|" and a line break; "<" and ">" would open raw HTML.
_MD_ESCAPES = str.maketrans({"|": "\\|", "<": "&lt;", ">": "&gt;", "\n": " ", "\r": " "})


@dataclass(frozen=True)
class Heading:
    text: str
    level: int  # 1 for the title, 2 for a section, 3 within one


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Link:
    """A paragraph that links to a file beside the report: text, then the link."""

    text: str
    label: str
    href: str  # relative to the report's folder


@dataclass(frozen=True, eq=False)  # frames do not compare to one truth value
class Table:
    cells: pd.DataFrame  # display strings, as cells() makes them


@dataclass(frozen=True)
class Figure:
    filename: str
    title: str
    png: bytes


@dataclass(frozen=True)
class Image:
    figure: Figure


Block = Heading | Paragraph | Link | Table | Image


def cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as display strings, one format per column."""
    return pd.DataFrame({c: [cell(c, v) for v in frame[c]] for c in frame.columns}, dtype=object)


def cell(column: str, value) -> str:
    """One value as display text: CELL_FORMATS by column, yes for true, empty for missing."""
    if value is None or (not isinstance(value, (str, dict, list)) and pd.isna(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if column in CELL_FORMATS:
        return CELL_FORMATS[column].format(value)
    return format_value(value.item() if isinstance(value, np.generic) else value)


def to_markdown(blocks: Sequence[Block]) -> str:
    """Render report blocks as Markdown; images link to the PNG files beside it."""
    return "\n\n".join(_markdown(block) for block in blocks) + "\n"


def _markdown(block: Block) -> str:
    match block:
        case Heading(text, level):
            return "#" * level + " " + text.translate(_MD_ESCAPES)
        case Paragraph(text):
            return text.translate(_MD_ESCAPES)
        case Link(text, label, href):
            return f"{text.translate(_MD_ESCAPES)} [{label.translate(_MD_ESCAPES)}](<{href}>)"
        case Table(frame):
            header = [str(c).translate(_MD_ESCAPES) for c in frame.columns]
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += [
                "| " + " | ".join(str(v).translate(_MD_ESCAPES) for v in row) + " |"
                for row in frame.itertuples(index=False)
            ]
            return "\n".join(lines)
        case Image(figure):
            return f"![{figure.title}]({figure.filename})"
    raise TypeError(f"not a report block: {block!r}")


def to_html(blocks: Sequence[Block], title: str) -> str:
    """Render report blocks as one self-contained HTML page; every value is escaped."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(_html(block) for block in blocks)
        + "\n</body>\n</html>\n"
    )


def _html(block: Block) -> str:
    esc = html.escape
    match block:
        case Heading(text, level):
            return f"<h{level}>{esc(text)}</h{level}>"
        case Paragraph(text):
            return f"<p>{esc(text)}</p>"
        case Link(text, label, href):
            return f'<p>{esc(text)} <a href="{esc(href)}">{esc(label)}</a></p>'
        case Table(frame):
            head = "".join(f"<th>{esc(str(c))}</th>" for c in frame.columns)
            body = "".join(
                "<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row) + "</tr>"
                for row in frame.itertuples(index=False)
            )
            return (
                f'<div class="table"><table><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>"
            )
        case Image(figure):
            data = base64.b64encode(figure.png).decode("ascii")
            return (
                f'<figure><img alt="{esc(figure.title)}" '
                f'src="data:image/png;base64,{data}"></figure>'
            )
    raise TypeError(f"not a report block: {block!r}")
