"""The benchmarks' figures as the Markdown tables of docs/benchmarks.md, rendered from their
JSON so that the doc and the numbers cannot drift."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench.core import data
from bench.perf import policies, policy_stats

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
DATA_DIR = DOC.parent / "benchmarks"  # the published JSON behind each table
# Benchmark name -> (results file under results/perf, the command that writes it).
BENCHMARKS = {
    "suite": ("perf.json", "make bench"),
    "workers": ("workers.json", "make bench-workers"),
    "search": ("search.json", "make bench-search"),
    "soak": ("soak.json", "make soak"),
    "releases": ("release.json", "python -m bench.perf releases"),
}
SUITE_COLUMNS = (
    "date", "command", "machine", "plain fit images/s", "suite images/s", "ratio",
    "largest cnn_plus images/s", "per-trial overhead", "peak memory",
)  # fmt: skip
WORKERS_COLUMNS = (
    "date", "command", "machine", "layouts", "trials/h", "ratio",
    "ratio over the trials' span", "chief s/trial",
)  # fmt: skip
SEARCH_COLUMNS = ("date", "command", "machine", *policy_stats.COLUMNS)
SEARCH_RUN_COLUMNS = (
    "policy", "seed", "search seed", "configurations", "trials", "epochs", "best val",
    "its test", *(f"minutes to test {key}" for key in policy_stats.TARGET_KEYS),
)  # fmt: skip
SOAK_COLUMNS = (
    "date", "command", "machine", "soak", "kills (aimed)", "trials finished", "recorded twice",
    "finished trials trained again", "unreadable JSON", "epoch backups left", "epochs trained",
    "epochs trained again", "passed",
)  # fmt: skip
# The soak's kills aimed at one write of a command other than the search.
SOAK_WRITES = {
    "export": "bench export, killed between its renames",
    "report": "bench report, killed while writing",
}
BEGIN, END = "<!-- table {name}: python -m bench.perf publish -->", "<!-- end table {name} -->"


def machine_text(machine: dict | None) -> str:
    """'AMD EPYC, 2 cores (avx2, avx512f, ...)'; results from before machine facts say so."""
    if not machine:
        return "not recorded"
    flags = ", ".join(machine.get("flags") or []) or "no AVX2"
    return f"{machine.get('cpu') or 'unknown CPU'}, {machine.get('cores')} cores ({flags})"


def _provenance(result: dict, name: str) -> list[str]:
    """The cells every row starts with: the date, the command and the machine."""
    command = result.get("command", BENCHMARKS[name][1])
    return [
        str(result.get("measured_at", ""))[:10],
        f"`{command}`",
        machine_text(result.get("machine")),
    ]


def _line(cells) -> str:
    """One Markdown table line."""
    return "| " + " | ".join(cells) + " |"


def suite_row(result: dict) -> str:
    speed, big = result["throughput"], result["largest"]
    cost, mem = result["overhead"], result["memory"]
    overhead = cost["median_overhead"]
    return _line(
        [
            *_provenance(result, "suite"),
            f"{speed['plain_images_per_s']:,.0f}",
            f"{speed['suite_images_per_s']:,.0f}",
            f"{speed['ratio']:.2f}x",
            f"{big['images_per_s']:,.0f}",
            ""
            if overhead is None
            else f"{overhead:.1%} of a {cost['median_fit_seconds']:.0f} s fit",
            f"{mem['peak_rss_mb']:,.0f} MB",
        ]
    )


def workers_row(result: dict) -> str:
    single, split = result["layouts"]
    wait = split["chief_seconds_per_trial"]
    return _line(
        [
            *_provenance(result, "workers"),
            f"{single['layout']} vs {split['layout']}",
            f"{single['trials_per_hour']:,.0f} vs {split['trials_per_hour']:,.0f}",
            f"{result['trials_per_hour_ratio']:.2f}x",
            f"{result['working_ratio']:.2f}x",
            "" if wait is None else f"{wait:.3f}",
        ]
    )


def search_rows(result: dict) -> list[str]:
    """One row per policy of `make bench-search`: its figures over the seeds, from the runs'
    rows (bench.perf.policy_stats)."""
    head = _provenance(result, "search")
    stats = policy_stats.field(result["runs"], result["budget_seconds"])
    return [
        _line([*head, *policy_stats.cells(name, line)]) for name, line in stats["policies"].items()
    ]


def search_footer(result: dict) -> str:
    """Friedman's test, the rule and its verdict under the search table, then every run."""
    stats = policy_stats.field(result["runs"], result["budget_seconds"])
    lines = [_line(SEARCH_RUN_COLUMNS), "|" + "---|" * len(SEARCH_RUN_COLUMNS)]
    for run in result["runs"]:
        reached = [policies.minutes_to(run["curve"], t) for t in policies.TARGETS]
        cells = [
            run["policy"],
            str(run["seed"]),
            str(run.get("search_seed", "")),  # runs from before seeds were derived lack it
            str(run["configurations"]),
            str(run["trials"]),
            str(run["epochs"]),
            _accuracy(run["best_val_accuracy"]),
            _accuracy(run["test_accuracy_of_pick"]),
            *("not reached" if m is None else f"{m:.1f}" for m in reached),
        ]
        lines.append(_line(cells))
    return "\n\n".join([*policy_stats.footer(stats), "\n".join(lines)])


def soak_rows(result: dict) -> list[str]:
    """One row per soak of `make soak`: one process, then a chief with workers."""
    head = _provenance(result, "soak")
    names = {"single": "one process", "cluster": "chief and 2 workers"}
    rows = []
    for key, name in names.items():
        r = result[key]
        again = r.get("finished_again")  # counted since the soak aimed kills at records
        cells = [
            *head,
            name,
            f"{r['kills']} ({r.get('record_kills', 0)})",
            f"{r['trials_finished']} of {r['trials_planned']}",
            str(r["recorded_twice"]),
            "" if again is None else str(len(again)),
            str(len(r["unreadable_json"])),
            str(r["epoch_backups_left"]),
            str(r["epochs_trained"]),
            str(r["epochs_trained_again"]),
            "yes" if r["passed"] else "no",
        ]
        rows.append(_line(cells))
    for key, name in SOAK_WRITES.items():
        if key in result["single"]:
            r = result["single"][key]
            blank = [""] * (len(SOAK_COLUMNS) - len(head) - 3)
            cells = [*head, name, "1 (1)" if r["killed"] else "0", *blank]
            rows.append(_line([*cells, "yes" if r["passed"] else "no"]))
    return rows


RELEASE_COLUMNS = (
    "date", "command", "machine", "variant", "recipe", "trained on", "seed", "val accuracy",
    "test accuracy", "test loss", "errors", "minutes",
)  # fmt: skip
AGAINST_COLUMNS = (
    "variant", "recipe", "trained on", "seeds", "mean val accuracy", "val McNemar p",
    "mean test accuracy", "95% interval", "against (seeds)", "only it right",
    "only the other right", "McNemar p",
)  # fmt: skip


def release_rows(result: dict) -> list[str]:
    """One row per (variant, seed) release, its own machine and date (they accumulate)."""
    from bench.perf import releases

    rows = []
    for r in result["rows"]:
        recipe = r.get("recipe", releases.BASE_RECIPE)
        epochs = f"{r['epochs']} + {r['clean_epochs']} clean epochs, batch {r['batch_size']}"
        cells = [
            str(r["measured_at"])[:10],
            f"`{BENCHMARKS['releases'][1]}`",  # trains any row that is missing
            machine_text(r.get("machine")),
            r["variant"],
            f"{recipe}: {epochs}",
            f"{r['train_images']:,}",
            str(r["seed"]),
            _accuracy(r.get("val_accuracy")),
            f"{r['test_accuracy']:.4f}",
            f"{r['test_loss']:.4f}",
            str(len(r["wrong"])),
            f"{r['minutes']:.0f}",
        ]
        rows.append(_line(cells))
    return rows


def against_table(result: dict) -> str:
    """Each variant's mean over its seeds and McNemar's test against the defaults."""
    from bench.perf import releases

    lines = [_line(AGAINST_COLUMNS), "|" + "---|" * len(AGAINST_COLUMNS)]
    for line in releases.against_reference(result["rows"]):
        accuracy, test = line["accuracy"], line["mcnemar"]
        interval = "" if accuracy["n"] < 2 else f"{accuracy['low']:.4f} - {accuracy['high']:.4f}"
        val, val_test = line.get("val_accuracy"), line["val_mcnemar"]
        against = line["against"]
        matched = ", ".join(map(str, line.get("matched", [])))
        trained_on = data.TRAIN_COUNT - line["holdout"]
        cells = [
            line["variant"],
            line["recipe"],
            f"{trained_on:,}",
            ", ".join(map(str, line["seeds"])),
            "" if val is None else f"{val['mean']:.4f}",
            "" if val_test is None else f"{val_test['p_value']:.2g}",
            f"{accuracy['mean']:.4f}",
            interval,
            "" if against is None or not matched else f"{against[0]}, {against[1]} ({matched})",
            "" if test is None else str(test["a_only"]),
            "" if test is None else str(test["b_only"]),
            "" if test is None else f"{test['p_value']:.2g}",
        ]
        lines.append(_line(cells))
    return "\n".join(lines)


ENSEMBLE_COLUMNS = (
    "ensemble", "members", "test accuracy", "test loss", "best member (chosen by)",
    "its test accuracy", "only the ensemble right", "only the member right", "McNemar p",
)  # fmt: skip


def ensemble_table(result: dict) -> str:
    """The ensembles of released rows, each against its best member on the test digits."""
    lines = [_line(ENSEMBLE_COLUMNS), "|" + "---|" * len(ENSEMBLE_COLUMNS)]
    for e in result.get("ensembles", []):
        best, test = e["best_member"], e["mcnemar"]
        cells = [
            e["name"],
            ", ".join(e["members"]),
            f"{e['test_accuracy']:.4f}",
            f"{e['test_loss']:.4f}",
            f"{best['row']} ({best['by'].replace('_', ' ')})",
            f"{best['test_accuracy']:.4f}",
            str(test["a_only"]),
            str(test["b_only"]),
            f"{test['p_value']:.2g}",
        ]
        lines.append(_line(cells))
    return "\n".join(lines)


def _accuracy(value) -> str:
    return "" if value is None else f"{value:.4f}"


# Benchmark name -> its columns and its rows.
TABLES = {
    "suite": (SUITE_COLUMNS, lambda result: [suite_row(result)]),
    "workers": (WORKERS_COLUMNS, lambda result: [workers_row(result)]),
    "search": (SEARCH_COLUMNS, search_rows),
    "soak": (SOAK_COLUMNS, soak_rows),
    "releases": (RELEASE_COLUMNS, release_rows),
}


def table(name: str, result: dict) -> str:
    """The doc's table of one benchmark (header and the rows of this result); the search's with
    Friedman's test, the rule's verdict and every run below it, the releases' with its
    comparison against the defaults."""
    columns, rows = TABLES[name]
    rendered = "\n".join([_line(columns), "|" + "---|" * len(columns), *rows(result)])
    if name == "search":
        return f"{rendered}\n\n{search_footer(result)}"
    if name != "releases":
        return rendered
    return f"{rendered}\n\n{against_table(result)}\n\n{ensemble_table(result)}"


def with_table(doc: str, name: str, rendered: str) -> str:
    """doc with the text between the benchmark's markers replaced by rendered."""
    begin, end = BEGIN.format(name=name), END.format(name=name)
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.DOTALL)
    if not pattern.search(doc):
        raise ValueError(f"{DOC.name} has no markers for the {name} table")
    return pattern.sub(lambda _: f"{begin}\n{rendered}\n{end}", doc)


def published(name: str, data_dir: Path = DATA_DIR) -> dict | None:
    path = data_dir / BENCHMARKS[name][0]
    return json.loads(path.read_text()) if path.is_file() else None


def render_doc(doc: str, data_dir: Path = DATA_DIR) -> str:
    """The doc with every benchmark table rendered from the published JSON."""
    for name in BENCHMARKS:
        result = published(name, data_dir)
        if result is not None:
            doc = with_table(doc, name, table(name, result))
    return doc
