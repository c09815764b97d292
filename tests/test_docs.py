"""The docs keep up with the code: every CLI flag documented, the README a front door."""

import argparse
import re
from pathlib import Path

import pytest

from bench import cli

REPO_ROOT = Path(__file__).resolve().parent.parent
USAGE = REPO_ROOT / "docs" / "usage.md"
README_MAX_LINES = 150
# Words that tell how the project was built rather than how to use it.
HISTORY = re.compile(r"\b(sessions?|tickets?|issues? \d+)\b", re.IGNORECASE)


def parser_flags(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of the parser and its subcommands, hidden ones left out."""
    flags = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= parser_flags(sub)
        elif action.help != argparse.SUPPRESS:
            flags |= {o for o in action.option_strings if o.startswith("--")}
    return flags


def test_usage_names_every_flag_the_parser_has():
    flags = parser_flags(cli.build_parser())
    assert {"--max-epochs", "--verbose", "--clean-epochs", "--chief"} <= flags
    text = USAGE.read_text()
    missing = sorted(f for f in flags if not re.search(rf"`{re.escape(f)}\b", text))
    assert not missing, f"docs/usage.md does not name {missing}"


def test_the_readme_is_a_front_door():
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES
    for target in ("make search", "make test"):
        assert any(target in line for line in lines)


@pytest.mark.parametrize(
    "path", ["README.md", "Makefile", *sorted(p.name for p in (REPO_ROOT / "docs").glob("*.md"))]
)
def test_docs_speak_of_the_project_not_of_how_it_was_built(path):
    where = REPO_ROOT / path if (REPO_ROOT / path).exists() else REPO_ROOT / "docs" / path
    found = HISTORY.findall(where.read_text())
    assert not found, f"{path}: {found}"
