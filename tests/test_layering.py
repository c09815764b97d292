"""The package's layering: imports go one way, and importing changes nothing in KerasTuner."""

import ast
import subprocess
import sys
from pathlib import Path

from bench import errors

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = REPO_ROOT / "bench"
ENTRY_POINTS = {"bench.__main__"}  # `python -m bench` runs the CLI: the one module above it


def module_name(path: Path) -> str:
    return "bench" if path.stem == "__init__" else f"bench.{path.stem}"


MODULES = {module_name(path): path for path in sorted(PACKAGE.glob("*.py"))}


def bench_imports(path: Path) -> set[str]:
    """The bench modules a file imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in MODULES}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "bench":
                found |= {f"bench.{a.name}" for a in node.names if f"bench.{a.name}" in MODULES}
            elif node.module in MODULES:
                found.add(node.module)
    return found - {module_name(path)}


GRAPH = {name: bench_imports(path) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name], _ = "open", stack.append(name)
        for child in sorted(graph.get(name, ())):
            if state.get(child) == "open":
                return stack[stack.index(child) :] + [child]
            if child not in state and (cycle := visit(child)):
                return cycle
        state[name], _ = "done", stack.pop()
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from bench import search\n    import bench.cli\n")
    assert bench_imports(module) == {"bench.search", "bench.cli"}


def test_no_import_cycle_among_bench_modules():
    assert find_cycle(GRAPH) is None


def test_nothing_imports_the_cli():
    importers = sorted(n for n, deps in GRAPH.items() if "bench.cli" in deps)
    assert set(importers) <= ENTRY_POINTS


def test_errors_sit_at_the_bottom():
    assert GRAPH["bench.errors"] == set()
    assert all(issubclass(kind, errors.BadInput) for kind in BAD_INPUT)


BAD_INPUT = (
    errors.UsageError,
    errors.ConfigError,
    errors.DataError,
    errors.ReportError,
    errors.ExportError,
    errors.ConfirmError,
    errors.RunLocked,
    errors.DamagedFile,
)


def test_a_full_disk_passes_through_kerastuner_like_a_budget_stop():
    # KerasTuner records a trial as failed on any Exception; a full disk must leave it to run
    # again when the run resumes.
    assert not issubclass(errors.DiskFull, Exception)


SNAPSHOT = """
import sys
import keras_tuner
import keras_tuner.src.distribute.oracle_client
import keras_tuner.src.engine.tuner_utils

def snapshot():
    return {
        (name, key): id(value)
        for name, module in list(sys.modules.items())
        if name.split(".")[0] == "keras_tuner"
        for key, value in vars(module).items()
    }

before = snapshot()
for name in sys.argv[1:]:
    __import__(name)
after = snapshot()
changed = sorted(f"{m}.{k}" for (m, k), v in before.items() if after.get((m, k)) != v)
print(changed)
import keras_tuner.src.utils as u
print(u.save_json.__module__)
sys.exit(1 if changed else 0)
"""


def test_importing_every_bench_module_leaves_keras_tuner_untouched():
    result = subprocess.run(
        [sys.executable, "-c", SNAPSHOT, *MODULES.keys() - ENTRY_POINTS],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == ["[]", "keras_tuner.src.utils"]
