"""The Python API: search, report, confirm and export a run, and read its trials as a DataFrame.

Each function takes the settings of the `bench` command of the same name, with the same
defaults, and raises the CLI's exception types (bench.errors) where the command would exit:
a BadInput subclass for what the caller can fix. Nothing heavy loads before a function needs
it, and write_report(), trials() and recommend() never import TensorFlow. (The names
run_search and write_report keep clear of the subpackages bench.search and bench.report.)
"""

from __future__ import annotations

import shlex
from pathlib import Path

from bench.errors import EXIT_OK, UsageError

DEFAULT_RESULTS = "results"
DEFAULT_TOP, DEFAULT_SEEDS = 3, 3  # bench confirm's
RELEASE_SOURCE = "release"  # the ensemble members retrained from seeds of their own
REPORT_DIR = "report"
# Settings that need several processes, which the CLI supervises.
PROCESS_SETTINGS = ("workers", "trials_per_process")


def run_search(run: str, *, results: str | Path = DEFAULT_RESULTS, fresh: bool = False, **settings):
    """Run a search in this process, as `bench search --run RUN ...` does, then its report.

    Args:
        run: the run's name: its folder under `results`. An existing run resumes.
        results: the results folder.
        fresh: move an existing run of that name aside and start over (`--fresh`).
        **settings: SearchConfig's fields by name, as the flags take them (space, tuner,
            max_trials, max_epochs, seed, train_limit, confirm_seeds, ...; budget in seconds
            or as "7h45m"). The space's fit defaults fill in what is not given.

    Returns:
        The run folder (its report is in report/index.html).

    Raises:
        BadInput for bad settings; SearchError when trials keep failing; KeyboardInterrupt
        when stopped by a signal (finished trials are kept: call again to resume).
    """
    from bench.core.budget import check_budget
    from bench.core.config import parse_duration

    text = settings.get("budget")
    if isinstance(text, str):
        settings["budget"] = parse_duration(text)
    check_budget(settings.get("budget"), text if isinstance(text, str) else None)
    several = [name for name in PROCESS_SETTINGS if settings.get(name)]
    if several:
        raise UsageError(f"{', '.join(several)} run several processes: use `bench search`")
    spaces_imported()
    from bench import runner  # imports the spaces: after they are known to import

    given = {"run": run, "results": str(results), **settings}
    config = runner.search_config(given)
    code = runner.search_here(config, None, fresh=fresh)
    if code != EXIT_OK:
        raise KeyboardInterrupt(f"search {run} stopped (exit {code}); finished trials are kept")
    return config.run_dir


def write_report(*runs: str, results: str | Path = DEFAULT_RESULTS, out: str | Path | None = None):
    """Write the report of one or more runs, as `bench report RUN...` does.

    Returns:
        The report's index.html, in `out` (default: the first run's report/ folder).
    """
    from bench.report import writer

    folders = run_dirs(runs, results)
    return writer.write_report(folders, Path(out) if out else folders[0] / REPORT_DIR)


def confirm(
    run: str,
    *,
    top: int = DEFAULT_TOP,
    seeds: int = DEFAULT_SEEDS,
    results: str | Path = DEFAULT_RESULTS,
    data_dir: str | None = None,
) -> list[dict]:
    """Retrain the run's `top` trials with `seeds` fresh seeds each, as `bench confirm` does,
    then rewrite its report.

    Returns:
        Every confirmation record of the run, earlier ones included.
    """
    (run_dir,) = run_dirs([run], results)
    spaces_imported()
    from bench.search import confirm as confirming

    confirmed = confirming.confirm_run(run_dir, top, seeds, data_dir=data_dir)
    write_report(run, results=results)
    return confirmed


def export(
    run: str,
    *,
    retrain: bool = False,
    epochs: int | None = None,
    seed: int | None = None,
    clean_epochs: int = 0,
    ema: float | None = None,
    elastic: float | None = None,
    overrides: dict | None = None,
    pick: str = "auto",
    ensemble: int | None = None,
    ensemble_from: str | None = None,
    reference: str = "find",
    results: str | Path = DEFAULT_RESULTS,
    data_dir: str | None = None,
) -> Path:
    """Ship the run's winner (or an ensemble of `ensemble` members), as `bench export` does
    (`overrides`: {hyperparameter: value} a retrain trains with, as --set gives them).

    Returns:
        The export folder: results/<run>/best/, or results/<run>/ensemble/.
    """
    from bench.core.config import Recipe

    (run_dir,) = run_dirs([run], results)
    if ensemble is None and ensemble_from is not None:
        raise UsageError("ensemble_from needs ensemble=K")
    given = tuple((name, str(value)) for name, value in (overrides or {}).items())
    recipe = Recipe(retrain, epochs, seed, clean_epochs, ema, elastic, given)
    command = export_command(run, recipe, pick, ensemble, ensemble_from, reference)
    return ship(run_dir, recipe, pick, ensemble, ensemble_from, data_dir, command, reference)


def ship(
    run_dir: Path,
    recipe,
    pick: str,
    ensemble: int | None,
    ensemble_from: str | None,
    data_dir: str | None,
    command: str,
    reference: str = "find",
) -> Path:
    """One model (ensemble None) or an ensemble of `ensemble` members, exported from run_dir;
    `command` is what the card says reproduces it. A release (a retrained model, or an
    ensemble's release members seed by seed) is then compared with the space's defaults
    released the same way (bench.release.reference: `reference`
    "find" looks under the results folder, "train" trains what is missing, "none" skips).
    Shared by export() and `bench export`."""
    spaces_imported()
    from bench.release import reference as references

    if reference not in references.MODES:
        raise UsageError(f"reference must be one of {', '.join(references.MODES)}")
    if ensemble is not None and ensemble_from == RELEASE_SOURCE:
        check_release_seeds(run_dir, recipe, ensemble)
    if ensemble is None:
        from bench.release import export as exporting

        out = exporting.export_run(run_dir, recipe, data_dir, pick, command)
    else:
        from bench.release import ensemble as ensembles

        source = ensemble_from or ensembles.DEFAULT_SOURCE
        out = ensembles.export_ensemble(run_dir, ensemble, source, data_dir, recipe, pick, command)
    references.against_defaults(run_dir, out, reference, data_dir)
    return out


def check_release_seeds(run_dir: Path, recipe, members: int) -> None:
    """ExportError where an ensemble's release members, seeds seed, seed + 1, ... (the
    recipe's or the run's), would go past the highest seed."""
    from bench.core import records
    from bench.core.config import check_seeds
    from bench.errors import ExportError

    base = recipe.seed
    if base is None:
        base = records.run_config(run_dir, ExportError).get("seed", 0)
    check_seeds("--ensemble", base, range(base, base + members), ExportError)


def spaces_imported() -> None:
    """The search spaces imported, before the modules that import them as they load; a
    BadInput naming the file and line where they do not."""
    from bench.train import spaces

    spaces.registry()


def export_command(
    run: str, recipe, pick: str, ensemble, ensemble_from, reference: str = "find"
) -> str:
    """The `bench export` command line that does what these arguments do, for the card."""
    from bench.release import choose  # records only, no TensorFlow

    flags = {
        **{flag: pick == name for name, flag in choose.FLAGS.items()},
        "--ensemble": ensemble,
        "--ensemble-from": ensemble_from,
        "--reference": None if reference == "find" else reference,
    }
    parts = ["bench", "export", run, *recipe.flags()]
    for flag, value in flags.items():
        if value is True:
            parts.append(flag)
        elif value not in (None, False):
            parts += [flag, str(value)]
    return shlex.join(parts)


def trials(*runs: str, results: str | Path = DEFAULT_RESULTS):
    """The runs' trials as the report's pandas DataFrame: one row per trial, its settings
    as hp_<name> columns, its validation and test figures, timings and costs."""
    from bench.report import columns, loading

    loaded = loading.load_runs(run_dirs(runs, results))
    return columns.trials_frame([(run.name, run.records) for run in loaded])


def recommend(*runs: str, results: str | Path = DEFAULT_RESULTS) -> dict | None:
    """The trial the report recommends (on the first run's dataset: the best mean validation
    accuracy over the confirmation retrainings where there are some, else the best single
    trial by validation accuracy), as its record with `run` added; None while no trial has
    finished."""
    from bench.report import loading

    choice = loading.recommend(loading.load_runs(run_dirs(runs, results)))
    return None if choice is None else {"run": choice[0].name, **choice[1]}


def run_dirs(runs, results: str | Path) -> list[Path]:
    """The folders of the named runs under `results`; a bad run name is a ConfigError."""
    from bench.core.config import check_run_name

    if not runs:
        raise UsageError("name at least one run")
    return [Path(results) / check_run_name(name) for name in runs]
