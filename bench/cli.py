"""How people call it: `bench spaces | search | report | export`, one argparse table."""

from __future__ import annotations

import argparse
import ast
import errno
import importlib.util
import json
import os
import select
import shlex
import signal
import sys
import threading
import traceback
from dataclasses import fields
from pathlib import Path

from bench.core import budget, environment, faults, lock, records, space_source
from bench.core.budget import Terminated
from bench.core.config import (
    CONFIRM_LIMITS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_EPOCHS,
    ENSEMBLE_MEMBERS,
    LIMITS,
    PROMOTIONS,
    RECIPE_FLOAT_LIMITS,
    RECIPE_LIMITS,
    TUNER_NAMES,
    Recipe,
    bounded_float,
    bounded_int,
    check_seeds,
    confirm_seed_range,
    parse_overrides,
)
from bench.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    BadInput,
    ConfirmError,
    DiskFull,
    NotWritable,
    UsageError,
)
from bench.train import kt_compat

DEFAULT_RESULTS = "results"
# The commands that train or build models; the others (report) never import TensorFlow.
# (predict loads it itself, once the images are read.)
# They all import the search spaces too (bench.search and bench.train do as they load).
TENSORFLOW_COMMANDS = ("spaces", "search", "worker", "confirm", "export")
# A file or folder the user may not touch: bad input (a folder to fix), not a failure.
DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


class Parser(argparse.ArgumentParser):
    """argparse, its usage errors one line as every other error is (then exit 2)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message}; see `{self.prog} --help`\n")


def limited(name: str, limits: dict = LIMITS):
    """The argparse type of a numeric flag: a whole number within its limits in `limits`."""
    return bounded_int(*limits[name])


def cmd_spaces(args) -> int:
    for name, module in _import_spaces().SPACES.items():
        print(f"{name:10s} {module.DESCRIPTION}")
    return EXIT_OK


def _import_spaces():
    from bench.train import spaces

    return spaces.registry()


def parse_budget(text: str | None) -> float | None:
    from bench.core.config import parse_duration

    return None if text is None else parse_duration(text)


def given_settings(args) -> dict:
    """The SearchConfig fields the command line set; the space as the run records it (a
    file's path made absolute), checked to be there."""
    from bench.core.config import SearchConfig

    known = {f.name for f in fields(SearchConfig)}
    given = {k: v for k, v in vars(args).items() if k in known and v is not None}
    if "budget" in given:
        given["budget"] = parse_budget(given["budget"])
    if "release_set" in given:
        given["release_set"] = tuple(given["release_set"])
    if "space" in given:
        given["space"], _ = space_source.resolve(given["space"], space_names())
    return given


def check_search(args) -> None:
    """What `bench search` can check without importing its space, before TensorFlow loads:
    names, numbers, durations, the space's file (unchanged since the run it resumes began),
    and the number of workers."""
    from bench.core.config import SearchConfig
    from bench.search import distributed

    config = SearchConfig(**given_settings(args)).validate()
    if args.role is None:  # a process the search starts gets what is left of the budget
        budget.check_budget(config.budget, args.budget)
    saved = saved_config(config.run_dir)
    if saved and not args.fresh and saved.get("space") == config.space:
        space_source.check_unchanged(saved)
    if args.role is None and config.workers and not args.force:
        distributed.check_worker_count(config.workers)
    if args.listen:
        distributed.parse_address(args.listen)
    check_writable(config.run_dir)
    if args.fresh:  # the old run is renamed beside it
        check_writable(config.run_dir.parent, deep=False)


def space_names() -> tuple[str, ...]:
    """The registered spaces' names without importing them (they import Keras): the keys of
    the literal SPACES table in search_spaces/__init__.py, or the live table once imported;
    where neither can be read, the import says why."""
    module = sys.modules.get("search_spaces")
    if module is not None:
        return tuple(module.SPACES)
    try:
        source = Path(importlib.util.find_spec("search_spaces").origin).read_text()
        for node in ast.parse(source).body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SPACES":
                return tuple(key.value for key in node.value.keys)
    except (ImportError, ValueError, OSError, SyntaxError, AttributeError):
        pass
    return tuple(_import_spaces().SPACES)


def check_runs(args) -> None:
    """The run names, and each run's space file unchanged since the run began."""
    from bench.core.config import check_run_name

    for name in getattr(args, "runs", None) or [args.run]:
        if saved := saved_config(Path(args.results) / check_run_name(name)):
            space_source.check_unchanged(saved)


def check_worker(args) -> None:
    """The run, the worker's budget, its chief's address and its run folder writable."""
    from bench.search import distributed

    check_runs(args)
    budget.check_budget(parse_budget(args.budget), args.budget)
    if args.chief:
        distributed.parse_address(args.chief)
    check_writable(Path(args.results) / args.run)


def check_confirm(args) -> None:
    """The run, its confirmation seeds (from the run's seed) and its folder writable."""
    check_runs(args)
    run_dir = Path(args.results) / args.runs[0]
    if (saved := saved_config(run_dir)) and isinstance(seed := saved.get("seed"), int):
        check_seeds("--seeds", seed, confirm_seed_range(seed, args.seeds), ConfirmError)
    check_writable(run_dir)


def check_export(args) -> None:
    """The run, the recipe's numbers and the folders the export writes writable."""
    check_runs(args)
    export_recipe(args).validate()
    check_writable(Path(args.results) / args.runs[0])
    if args.reference == "train":  # the defaults' release is kept under the results folder
        check_writable(Path(args.results), deep=False)


def check_report(args) -> None:
    """The run names, and the folder the report goes to writable, with the folder it is in
    (the report is made beside it, then swapped in)."""
    (first, *_) = _run_dirs(args)
    out = Path(args.out) if args.out else first / "report"
    check_writable(out)
    check_writable(out.parent, deep=False)


def check_writable(folder: Path, deep: bool = True) -> Path:
    """folder, when this process may write into it (or make it, in its nearest existing
    parent) and, `deep`, into its subfolders and lock; NotWritable naming it otherwise."""
    there = folder
    while not there.exists() and there != there.parent:
        there = there.parent
    if not there.is_dir():
        return folder  # a file in the way: the command says so, with what to do
    inside = []  # an existing folder's own subfolders and lock; not its parent's others
    if deep and there == folder:
        inside = [p for p in there.iterdir() if p.is_dir() or p.name == lock.LOCK_FILE]
    for path in (there, *inside):
        if not os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0)):
            raise NotWritable(f"cannot write {path}: permission denied")
    return folder


def saved_config(run_dir: Path) -> dict | None:
    """The run's config.json; None where there is none or it does not read (the command
    itself says so, with what to do)."""
    try:
        return records.load_config(run_dir)
    except (OSError, ValueError):
        return None


def cmd_search(args) -> int:
    from bench import runner

    config = runner.search_config(given_settings(args))
    if args.role == "chief":
        return runner.serve_chief(config)
    if args.role is None and config.workers:
        return runner.run_cluster(config, args.argv, args.listen, args.fresh)
    if args.role is None and config.trials_per_process:
        return runner.supervise(config, args.argv)
    return runner.search_here(config, args.role, fresh=args.fresh)


def cmd_worker(args) -> int:
    """`bench worker --chief HOST:PORT --run NAME`: join a distributed run from anywhere."""
    from bench import runner
    from bench.core.config import check_run_name

    run_dir = Path(args.results) / check_run_name(args.run)
    overrides = {
        "results": args.results,
        "data_dir": args.data_dir,
        "threads": args.threads,
        "budget": parse_budget(args.budget),
    }
    return runner.join_as_worker(args.chief, run_dir, args.id, overrides)


def _run_dirs(args) -> list[Path]:
    from bench import api

    return api.run_dirs(args.runs, args.results)


def cmd_report(args) -> int:
    from bench.report import writer

    run_dirs = _run_dirs(args)
    out = output_folder(Path(args.out)) if args.out else run_dirs[0] / "report"
    print(f"report: {writer.write_report(run_dirs, out)}")
    return EXIT_OK


def output_folder(path: Path) -> Path:
    """A folder the command may write into, made where missing; UsageError for a path that
    is a file or cannot be made."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} is a file, not a folder; give --out a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make the folder {path} ({exc.strerror})") from None
    return path


DEFAULT_CONFIRM_TOP, DEFAULT_CONFIRM_SEEDS = 3, 3


def cmd_confirm(args) -> int:
    from bench.report import writer
    from bench.search import confirm

    (run_dir,) = _run_dirs(args)
    confirm.confirm_run(run_dir, args.top, args.seeds, data_dir=args.data_dir)
    print(f"report: {writer.write_report([run_dir], run_dir / 'report')}")
    return EXIT_OK


def _add_confirm_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs=1, metavar="RUN", help="run whose top trials to retrain")
    p.add_argument(
        "--top",
        type=limited("top", CONFIRM_LIMITS),
        default=DEFAULT_CONFIRM_TOP,
        help=f"how many trials, best by validation accuracy (default {DEFAULT_CONFIRM_TOP})",
    )
    p.add_argument(
        "--seeds",
        type=limited("seeds", CONFIRM_LIMITS),
        default=DEFAULT_CONFIRM_SEEDS,
        help=f"fresh seeds per trial (default {DEFAULT_CONFIRM_SEEDS})",
    )


def cmd_predict(args) -> int:
    from bench.release import predict

    model_dir, paths = Path(args.model_dir), [Path(p) for p in args.images]
    dataset, images = predict.prepare(model_dir, paths)
    import_tensorflow_quietly(args.debug)
    results = predict.classify(model_dir, dataset, paths, images)
    print(json.dumps(results, indent=2) if args.json else "\n".join(predict.lines(results)))
    return EXIT_OK


def export_recipe(args) -> Recipe:
    """The recipe `bench export`'s flags ask for."""
    overrides = parse_overrides(args.overrides)
    return Recipe(
        args.retrain, args.epochs, args.seed, args.clean_epochs, args.ema, args.elastic, overrides
    )


def cmd_export(args) -> int:
    from bench import api

    (run_dir,) = _run_dirs(args)
    if args.ensemble is None and args.ensemble_from is not None:
        raise UsageError("--ensemble-from needs --ensemble K")
    recipe = export_recipe(args)
    command = shlex.join(["bench", *args.argv])
    out = api.ship(
        run_dir,
        recipe,
        args.pick,
        args.ensemble,
        args.ensemble_from,
        args.data_dir,
        command,
        args.reference,
    )
    print(f"exported: {out}")
    return EXIT_OK


def _add_search_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--space",
        help="search space: a name from `bench spaces`, a path to a .py file with build(hp), "
        "or a dotted module name; default cnn",
    )
    p.add_argument("--tuner", choices=TUNER_NAMES, help="default hyperband")
    p.add_argument("--run", required=True, help="run name: letters, digits, - _ . only")
    p.add_argument(
        "--max-trials",
        type=limited("max_trials"),
        help="trial limit (default 20; asha: 300, promotions included; hyperband: its schedule)",
    )
    p.add_argument(
        "--max-epochs",
        type=limited("max_epochs"),
        help=f"epochs per trial (default {DEFAULT_MAX_EPOCHS})",
    )
    p.add_argument("--batch-size", type=limited("batch_size"), help=f"default {DEFAULT_BATCH_SIZE}")
    p.add_argument(
        "--patience", type=limited("patience"), help="early-stopping patience in epochs (default 3)"
    )
    p.add_argument("--seed", type=limited("seed"), help="default 0")
    p.add_argument(
        "--val-size",
        type=limited("val_size"),
        help="validation images from the end of train (10000)",
    )
    p.add_argument(
        "--train-limit", type=limited("train_limit"), help="keep only the first N training images"
    )
    p.add_argument(
        "--test-limit", type=limited("test_limit"), help="keep only the first N test images"
    )
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), help="Keras fit verbosity")
    p.add_argument("--budget", help="time this search may run, e.g. 7h30m, 45m, 90s")
    p.add_argument(
        "--max-params", type=limited("max_params"), help="bigger models fail as 'Oversized model'"
    )
    p.add_argument(
        "--max-failures", type=limited("max_failures"), help="failed trials in a row that stop (5)"
    )
    p.add_argument("--fresh", action="store_true", help="move an existing run aside, start over")
    p.add_argument(
        "--trials-per-process",
        type=limited("trials_per_process"),
        help="run N trials per fresh process (bounds memory)",
    )
    p.add_argument(
        "--workers",
        type=limited("workers"),
        help="run N worker processes under a KerasTuner chief (this machine)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="--workers: start more workers than this machine's cores and memory allow",
    )
    p.add_argument(
        "--listen",
        help="chief address for --workers, HOST:PORT (default 127.0.0.1 and a free port); "
        "another host than 127.0.0.1 lets other machines join, unauthenticated",
    )
    _add_threads_flag(p)
    p.add_argument(
        "--mixed-precision",
        action="store_true",
        default=None,
        help="compute in float16 with float32 weights (needs a GPU)",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        default=None,
        help="write per-trial TensorBoard logs with HParams to RESULTS/RUN/tensorboard",
    )
    from bench.core.data import DATASETS

    p.add_argument(
        "--dataset",
        choices=tuple(DATASETS),
        help="mnist (default) or fashion_mnist (Debian's dataset-fashion-mnist or Keras' cache)",
    )
    p.add_argument(
        "--custom-data",
        action="store_true",
        default=None,
        help="train on IDX files that are not the dataset's own (other fingerprint); the "
        "records and report call it custom data",
    )
    p.add_argument(
        "--confirm-seeds",
        type=limited("confirm_seeds"),
        help="after the search, retrain its top trials and the defaults with S more seeds "
        "each, within the budget (default 0: none)",
    )
    p.add_argument(
        "--confirm-top",
        type=limited("confirm_top"),
        help="how many top trials --confirm-seeds retrains (3)",
    )
    p.add_argument(
        "--release",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after the confirmation, ship the winner into results/<run>/best/ as `bench "
        "export --retrain` does, within the budget (default: no)",
    )
    p.add_argument(
        "--release-epochs",
        type=limited("release_epochs"),
        help="with --release: epochs on all training images (default: the winner's best)",
    )
    p.add_argument(
        "--release-clean-epochs",
        type=limited("release_clean_epochs"),
        help="with --release: epochs to add without augmentation (default 0)",
    )
    p.add_argument(
        "--release-ema",
        type=bounded_float(*RECIPE_FLOAT_LIMITS["ema"]),
        metavar="MOMENTUM",
        help="with --release: ship the exponential moving average of the weights, as "
        "`bench export --ema` does",
    )
    p.add_argument(
        "--release-elastic",
        type=bounded_float(*RECIPE_FLOAT_LIMITS["elastic"]),
        metavar="ALPHA",
        help="with --release: elastic distortion of the training digits, as `bench export "
        "--elastic` does",
    )
    p.add_argument(
        "--release-set",
        action="append",
        metavar="NAME=VALUE",
        help="with --release: a hyperparameter's value for the release instead of the "
        "winner's, as `bench export --set` does (repeatable)",
    )
    p.add_argument(
        "--promotion",
        choices=PROMOTIONS,
        help="asha: a promoted configuration continues from its best weights for the epochs "
        "the next rung adds (default), or retrains afresh",
    )
    p.add_argument(
        "--no-warm-start",
        dest="warm_start",
        action="store_false",
        default=None,
        help="do not try the best configurations of earlier runs after the space's defaults",
    )
    # Set by a supervising `bench search` on the processes it starts.
    p.add_argument("--role", choices=("process", "chief", "worker"), help=argparse.SUPPRESS)


def _add_threads_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=limited("threads"),
        help="TensorFlow threads per process (--workers: cores / N)",
    )


def _add_worker_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--chief", help="the chief's HOST:PORT (see --listen); default from KERASTUNER_ORACLE_*"
    )
    p.add_argument("--run", required=True, help="the run the chief serves")
    p.add_argument(
        "--id", help="worker name, stable across restarts (default $KERASTUNER_TUNER_ID, HOST-PID)"
    )
    p.add_argument("--budget", help="time this worker may run, e.g. 7h30m")
    _add_threads_flag(p)


# name: (handler, help, extra flags)
COMMANDS = {
    "spaces": (cmd_spaces, "list the registered search spaces", None),
    "search": (
        cmd_search,
        "run (or resume) a KerasTuner search, then write its report",
        _add_search_flags,
    ),
    "worker": (
        cmd_worker,
        "join a distributed run (`bench search --workers N --listen HOST:PORT`) as a worker",
        _add_worker_flags,
    ),
    "report": (cmd_report, "write tables, figures and HTML/Markdown for one or more runs", None),
    "confirm": (
        cmd_confirm,
        "retrain a run's top trials with several seeds, to tell real gains from noise",
        _add_confirm_flags,
    ),
    "export": (cmd_export, "ship the best trial (by validation accuracy) as a Keras model", None),
    "predict": (cmd_predict, "classify image files with an exported model", None),
}


# What each command checks of its command line before TensorFlow loads.
EARLY_CHECKS = {
    "search": check_search,
    "worker": check_worker,
    "report": check_report,
    "confirm": check_confirm,
    "export": check_export,
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bench", description="Find, compare and ship MNIST CNNs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (handler, help_text, add_flags) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(
            handler=handler,
            tensorflow=name in TENSORFLOW_COMMANDS,
            check=EARLY_CHECKS.get(name),
        )
        # Accepted after the command too; SUPPRESS keeps the top-level value when absent here.
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="tracebacks")
        if name in ("search", "worker", "export", "report", "confirm"):
            p.add_argument("--results", default=DEFAULT_RESULTS, help="folder of runs (results)")
        if name in ("search", "worker", "export", "confirm"):
            p.add_argument("--data-dir", help="IDX folder (default: see docs/usage.md, Data)")
        if add_flags:
            add_flags(p)
    runs = sub.choices
    runs["report"].add_argument("runs", nargs="+", metavar="RUN", help="run names to report on")
    runs["report"].add_argument("--out", help="output folder (default results/<first RUN>/report)")
    runs["predict"].add_argument("model_dir", metavar="MODEL_DIR", help="a `bench export` folder")
    runs["predict"].add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    runs["predict"].add_argument("--json", action="store_true", help="print JSON")
    runs["export"].add_argument("runs", nargs=1, metavar="RUN", help="run to export")
    runs["export"].add_argument("--retrain", action="store_true", help="retrain on all 60k images")
    runs["export"].add_argument(
        "--epochs",
        type=limited("epochs", RECIPE_LIMITS),
        help="with --retrain: epochs to train (default: the trial's best)",
    )
    runs["export"].add_argument(
        "--seed",
        type=limited("seed", RECIPE_LIMITS),
        help="with --retrain: seed to train from (default: the run's seed)",
    )
    runs["export"].add_argument(
        "--clean-epochs",
        type=limited("clean_epochs", RECIPE_LIMITS),
        default=0,
        help="with --retrain: epochs to add without augmentation, at the final learning rate",
    )
    runs["export"].add_argument(
        "--ema",
        type=bounded_float(*RECIPE_FLOAT_LIMITS["ema"]),
        metavar="MOMENTUM",
        help="with --retrain: ship the exponential moving average of the weights at this "
        "momentum (0.999: over about 1,000 steps), its batch-norm statistics recomputed",
    )
    runs["export"].add_argument(
        "--elastic",
        type=bounded_float(*RECIPE_FLOAT_LIMITS["elastic"]),
        metavar="ALPHA",
        help="with --retrain: distort the training digits elastically, by ALPHA pixels "
        "(Simard et al. used 34, at sigma 4), except in the clean epochs",
    )
    runs["export"].add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="NAME=VALUE",
        help="with --retrain: train with this hyperparameter value instead of the trial's "
        "(say rotation_degrees=15 for stronger augmentation); repeatable",
    )
    runs["export"].add_argument(
        "--ensemble",
        type=bounded_int(*ENSEMBLE_MEMBERS),
        metavar="K",
        help="ship one model averaging K members (results/<run>/ensemble/)",
    )
    runs["export"].add_argument(
        "--ensemble-from",
        metavar="SOURCE",
        help="seeds (default): the winner's confirmed seeds; top: the best confirmed seed of "
        "each of the top K; release: K retrains with the release recipe (needs --retrain); "
        "top-release: the top K confirmed configurations, each retrained so (needs --retrain)",
    )
    runs["export"].add_argument(
        "--reference",
        choices=("find", "train", "none"),
        default="find",
        help="with --retrain: compare the release with the space's defaults released the same "
        "way from the same seed, found under --results (find, default); train trains it once "
        "where none is found (as long as the release) and keeps it for later nights",
    )
    picks = runs["export"].add_mutually_exclusive_group()
    picks.add_argument(
        "--confirmed",
        dest="pick",
        action="store_const",
        const="confirmed",
        default="auto",
        help="pick by mean validation accuracy over the confirmation seeds (the default when "
        "the run has them; refused when it has none)",
    )
    picks.add_argument(
        "--single-trial",
        dest="pick",
        action="store_const",
        const="single",
        help="pick the single trial with the best validation accuracy, ignoring confirmations",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code: 0 ok, 1 failure, 2 bad input, 130 SIGINT, 143
    SIGTERM, 141 when the reader of the output went away."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for worker processes
    kt_compat.show_trial_tracebacks(args.debug)
    previous = stop_on_sigterm()
    try:
        return run_command(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def stop_on_sigterm():
    """SIGTERM raises Terminated from now on, as SIGINT raises KeyboardInterrupt (a search
    installs its own handlers over this one); returns the handler to restore, None where
    signals cannot be handled here (a thread other than the main one)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _raise_terminated)
    return signal.SIG_DFL if previous is None else previous


def _raise_terminated(signum, frame):
    raise Terminated


def run_command(args) -> int:
    """The command's checks, its imports and its handler; every way it ends as an exit code
    and at most one line on stderr."""
    try:
        if args.check:  # before TensorFlow loads, which takes seconds
            args.check(args)
        if args.tensorflow:
            import_tensorflow_quietly(args.debug)
            _import_spaces()  # one line naming the space that does not import, not a traceback
        faults.point("command.run")
        code = args.handler(args)
        sys.stdout.flush()  # a reader gone away shows here, not as Python exits
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except BrokenPipeError as exc:
        if not stdout_gone():
            return failed(args, exc)
        quiet_stdout()
        return EXIT_BROKEN_PIPE
    except DiskFull as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:
        return failed(args, exc)


def failed(args, exc: Exception) -> int:
    """Say what went wrong in one line; the exit code: 2 for bad input, else 1."""
    if args.debug:
        traceback.print_exc()
    exc = permission_denied(exc) or exc
    bad_input = isinstance(exc, BadInput)
    prefix = "error" if bad_input else f"error ({type(exc).__name__})"
    hint = "" if bad_input or args.debug else " [--debug shows the traceback]"
    message = (str(exc).strip().splitlines() or [""])[0]
    print(f"{prefix}: {message}{hint}", file=sys.stderr)
    return EXIT_USAGE if bad_input else EXIT_FAILURE


def permission_denied(exc: Exception) -> NotWritable | None:
    """A file or folder the system does not let this process write (or read), as the bad
    input it is: the folder named; None for any other error."""
    if not isinstance(exc, OSError) or exc.errno not in DENIED:
        return None
    why = os.strerror(exc.errno)
    why = why[:1].lower() + why[1:]  # "permission denied", "read-only file system"
    if not exc.filename:
        return NotWritable(f"the system refused: {why}")
    path = Path(os.fsdecode(exc.filename))
    if path.is_file() and not os.access(path, os.R_OK):
        return NotWritable(f"cannot read {path}: {why}")
    folder = path if path.is_dir() else path.parent
    return NotWritable(f"cannot write {folder}: {why}")


def stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (`bench ... | head -1`)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture)
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so that what is still buffered is not written again to the
    closed pipe as Python exits (which prints "Exception ignored"): the way the Python docs
    give for SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def import_tensorflow_quietly(debug: bool) -> None:
    """Import TensorFlow with the lines its native libraries write to the process's stderr
    as they load (absl's warning before its logging starts, oneDNN's notice) kept out of the
    terminal, which then shows the command's own lines only; --debug lets them through."""
    if debug or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401

        return
    with environment.native_stderr_silenced():
        import tensorflow  # noqa: F401


def main_exit() -> None:
    """Entry point of the `bench` console script."""
    sys.exit(main())
