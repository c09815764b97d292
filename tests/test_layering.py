"""The package's layering: imports go one way, and importing changes nothing in KerasTuner."""

import ast
import subprocess
import sys
from pathlib import Path

from bench import errors

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = REPO_ROOT / "bench"
# The subpackages, lowest first: each imports only the ones before it, never one at its level
# or above (docs/design.md, section 1). bench.errors sits below them all; the modules at the
# top of the package (the CLI, the runner, the API) sit above them all.
LAYERS = ("core", "train", "search", "release", "report", "perf")
BOTTOM = {"bench.errors"}
ENTRY_POINTS = {"bench.__main__", "bench.perf.__main__"}  # `python -m ...` runs a CLI
NO_TENSORFLOW = ("core", "report")  # `bench report` loads these (tests/report/test_writer.py)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> int:
    """0 for bench.errors, 1.. for the subpackages in LAYERS' order, above them the rest."""
    if name in BOTTOM:
        return 0
    parts = name.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return 1 + LAYERS.index(parts[1])
    return TOP


TOP = 1 + len(LAYERS)  # the CLI, the runner, the API: they may import each other


def bench_imports(path: Path) -> set[str]:
    """The bench modules (or packages) a file imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in MODULES}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module not in MODULES:
                continue
            children = {f"{node.module}.{alias.name}" for alias in node.names}
            modules = children & MODULES.keys()
            found |= modules or {node.module}
            if children - modules:  # a name defined in the package or module itself
                found.add(node.module)
    own = module_name(path) if path.is_relative_to(REPO_ROOT) else None
    return found - {own}


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
    module.write_text(
        "def f():\n    from bench.search import tuning\n    import bench.cli\n"
        "    from bench.core import budget, data\n    from bench.core.records import utc_now\n"
    )
    assert bench_imports(module) == {
        "bench.search.tuning",
        "bench.cli",
        "bench.core.budget",
        "bench.core.data",
        "bench.core.records",
    }


def test_every_module_sits_in_a_layer():
    for name in MODULES:
        assert name in BOTTOM or name.count(".") <= 1 or name.split(".")[1] in LAYERS, name


def test_no_import_cycle_among_bench_modules():
    assert find_cycle(GRAPH) is None


def test_each_subpackage_imports_only_the_ones_below_it():
    upward = sorted(
        f"{name} imports {dep}"
        for name, deps in GRAPH.items()
        for dep in deps
        if layer_of(dep) > layer_of(name)
        or (layer_of(dep) == layer_of(name) != TOP and dep.split(".")[:2] != name.split(".")[:2])
    )
    assert upward == []


def test_the_layer_check_sees_an_upward_import():
    assert layer_of("bench.core.data") < layer_of("bench.train.fitting") < layer_of("bench.cli")
    assert layer_of("bench.report.plots") > layer_of("bench.release.export")
    assert layer_of("bench.errors") == 0


def test_subpackage_inits_import_nothing():
    # `bench report` must not pay for the training half by importing a package.
    for package in LAYERS:
        tree = ast.parse((PACKAGE / package / "__init__.py").read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


def test_nothing_imports_the_cli():
    importers = sorted(n for n, deps in GRAPH.items() if "bench.cli" in deps)
    assert set(importers) <= ENTRY_POINTS


def test_errors_sit_at_the_bottom():
    assert GRAPH["bench.errors"] == set()
    assert all(issubclass(kind, errors.BadInput) for kind in BAD_INPUT)


def test_the_tensorflow_free_layers_import_no_tensorflow_at_their_top():
    heavy = ("tensorflow", "keras", "keras_tuner")
    found = []
    for name, path in MODULES.items():
        if name.count(".") < 2 or name.split(".")[1] not in NO_TENSORFLOW:
            continue
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{name}: {n}" for n in names if n.split(".")[0] in heavy]
    assert found == []


BAD_INPUT = (
    errors.UsageError,
    errors.ConfigError,
    errors.SpaceError,
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
        [sys.executable, "-c", SNAPSHOT, *sorted(MODULES.keys() - ENTRY_POINTS)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == ["[]", "keras_tuner.src.utils"]
