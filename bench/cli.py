"""How people call it: `bench spaces | search | report | export`, one argparse table."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import traceback
from dataclasses import fields
from pathlib import Path

from bench.config import DEFAULT_BATCH_SIZE, DEFAULT_MAX_EPOCHS, TUNER_NAMES, ConfigError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
EXIT_MORE = 75  # EX_TEMPFAIL: a worker ran its share of trials; the run is not over
DEFAULT_RESULTS = "results"


class UsageError(Exception):
    """Bad input from the command line; exit code 2."""


def cmd_spaces(args) -> int:
    for name, module in _import_spaces().SPACES.items():
        print(f"{name:10s} {module.DESCRIPTION}")
    return EXIT_OK


def _import_spaces():
    try:
        import search_spaces
    except Exception as exc:  # a space module that does not import is the user's to fix
        raise UsageError(f"the search spaces do not import: {type(exc).__name__}: {exc}") from exc
    return search_spaces


def parse_budget(text: str | None) -> float | None:
    from bench.config import parse_duration

    return None if text is None else parse_duration(text)


def search_config(args):
    """The run's SearchConfig from the parsed flags, with the space's own fit defaults."""
    from bench.config import SearchConfig, with_space_defaults

    known = {f.name for f in fields(SearchConfig)}
    given = {k: v for k, v in vars(args).items() if k in known and v is not None}
    if "budget" in given:
        given["budget"] = parse_budget(given["budget"])
    config = SearchConfig(**given)
    try:
        space = _import_spaces().get(config.space)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    return with_space_defaults(config, space.FIT_DEFAULTS, set(given)).validate()


def resume_command(config) -> str:
    """The command that carries on this run: its name and every setting that is not a default."""
    from bench.config import IDENTITY_FIELDS, SearchConfig

    defaults = SearchConfig(run=config.run)
    parts = ["bench", "search", "--run", config.run]
    for name in (
        *IDENTITY_FIELDS,
        "results",
        "data_dir",
        "trials_per_process",
        "workers",
        "tensorboard",
    ):
        value = getattr(config, name)
        if value != getattr(defaults, name):
            flag = f"--{name.replace('_', '-')}"
            parts += [flag] if value is True else [flag, str(value)]
    return shlex.join(parts)


def _report(run_dir: Path) -> None:
    from bench import records, report

    if (run_dir / records.CONFIG_FILE).is_file():
        print(f"report: {report.write_report([run_dir], run_dir / 'report')}", flush=True)


def _stopped_by_signal(config, code: int) -> int:
    name = "SIGTERM" if code == EXIT_TERMINATED else "SIGINT"
    print(
        f"stopped by {name}; finished trials are kept. Resume with: {resume_command(config)}",
        file=sys.stderr,
    )
    return code


def cmd_search(args) -> int:
    config = search_config(args)
    if args.role == "chief":
        return serve_chief(config)
    if args.role is None and config.workers:
        return run_cluster(config, args)
    if args.role is None and config.trials_per_process:
        return supervise(config, args.argv)
    return search_here(config, args.role, fresh=args.fresh)


def search_here(config, role: str | None, fresh: bool = False) -> int:
    """Run the search in this process: on its own (role None), or as a child of a supervisor
    (role "process" or "worker"), which then writes the report and says how to resume."""
    from bench import search
    from bench.progress import STOP, Terminated

    report = _report if role is None else (lambda run_dir: None)
    previous = STOP.install()
    try:
        if role == "worker":
            over = search.run_worker(config)
        else:
            over = search.run_search(config, fresh=fresh)
    except (KeyboardInterrupt, Terminated) as exc:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the report finish
        report(config.run_dir)
        code = EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
        return code if role else _stopped_by_signal(config, code)
    except search.SearchError:
        report(config.run_dir)
        raise
    finally:
        STOP.restore(previous)
    report(config.run_dir)
    return EXIT_OK if over else EXIT_MORE


def serve_chief(config) -> int:
    """The chief of a distributed run, until its supervisor stops it or KerasTuner ends it."""
    from bench import search

    # Its state is on disk after every call it answers; a stop needs no unwinding (and
    # KerasTuner's gRPC threads would hold up a normal exit).
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(EXIT_TERMINATED))
    search.serve_chief(config)
    return EXIT_OK


def _without(argv: list[str], flags: dict[str, int]) -> list[str]:
    """argv without the given flags (name -> how many values follow it)."""
    out, skip = [], 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in flags:
            skip = 0 if "=" in arg else flags[name]
            continue
        out.append(arg)
    return out


def run_cluster(config, args) -> int:
    """`bench search --workers N`: a KerasTuner chief and N workers on this run, watched here."""
    from bench import distributed, lock, records, search
    from bench.progress import Budget, Progress

    host, port = distributed.LOOPBACK, None
    if args.listen:
        host, port = distributed.parse_address(args.listen)
    splits = search.open_run(config, args.fresh, sys.stdout)
    with lock.run_lock(config.run_dir):
        resumed = search.prepare_run_dir(config, splits)
        progress = Progress(total=search.planned_trials(config), budget=Budget(config.budget))
        existing = records.load_records(config.run_dir)
        progress.resume_from(existing)
        print(
            f"{'resuming' if resumed else 'starting'} run {config.run}: space {config.space}, "
            f"tuner {config.tuner}, {progress.total} trials planned ({progress.done} finished)",
            flush=True,
        )
        cluster = distributed.Cluster(
            run_dir=config.run_dir,
            argv=_without(args.argv, {"--fresh": 0, "--workers": 1, "--listen": 1}),
            workers=config.workers,
            threads=config.threads or distributed.split_threads(config.workers),
            host=host,
            port=port or distributed.free_port(host),
            progress=progress,
            wait_for_chief=bool(args.listen),
        )
        cluster.shown = {r["trial_id"]: r["finished_at"] for r in existing}
        cluster.start()
        code = cluster.watch()
    print(f"trials by worker: {cluster.summary() or 'none'}", flush=True)
    if code in (EXIT_OK, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TERMINATED):
        _report(config.run_dir)
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        return _stopped_by_signal(config, code)
    return code


def cmd_worker(args) -> int:
    """`bench worker --chief HOST:PORT --run NAME`: join a distributed run from anywhere."""
    from bench import distributed, records
    from bench.config import SearchConfig, check_run_name

    chief = args.chief or distributed.chief_from_environment()
    if not chief:
        variables = f"{distributed.ENV_IP} and {distributed.ENV_PORT}"
        raise UsageError(f"no chief: give --chief HOST:PORT or set {variables}")
    host, port = distributed.parse_address(chief)
    run_dir = Path(args.results) / check_run_name(args.run)
    try:
        saved = records.load_config(run_dir)
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"run {args.run!r} has no readable config.json in {args.results}: "
            "the worker needs the run folder the chief writes (a shared folder)"
        ) from exc
    config = SearchConfig.from_json(
        saved,
        results=args.results,
        data_dir=args.data_dir,
        threads=args.threads,
        budget=parse_budget(args.budget),
        workers=None,
        trials_per_process=None,
    ).validate()
    name = args.id or os.environ.get(distributed.ENV_ID) or f"{socket.gethostname()}-{os.getpid()}"
    name = distributed.check_worker_id(name)
    os.environ.update(
        {distributed.ENV_ID: name, distributed.ENV_IP: host, distributed.ENV_PORT: str(port)}
    )
    print(f"worker {name} joins run {config.run} at chief {host}:{port}", flush=True)
    return search_here(config, "worker")


def _run_worker(argv: list[str]) -> int:
    """Run `bench search ... --worker` in a child process, passing signals on to it."""
    child = subprocess.Popen([sys.executable, "-m", "bench", *argv, "--role", "process"])

    def forward(signum, frame):
        child.send_signal(signum)

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, forward) for signum in handled}
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def supervise(config, argv: list[str]) -> int:
    """Run the search in a series of child processes of --trials-per-process trials each."""
    from bench.progress import Budget

    budget = Budget(config.budget, margin=0.0)
    while True:
        child_argv = list(argv)
        if (left := budget.left()) is not None:
            # argparse keeps the last --budget: each child gets what is left.
            child_argv += ["--budget", f"{max(int(left), 1)}s"]
        code = _run_worker(child_argv)
        argv = [arg for arg in argv if arg != "--fresh"]  # only the first child starts over
        if code != EXIT_MORE:
            break
    if code in (EXIT_OK, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TERMINATED):
        _report(config.run_dir)
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        return _stopped_by_signal(config, code)
    return code


def _run_dirs(args) -> list[Path]:
    from bench.config import check_run_name

    return [Path(args.results) / check_run_name(name) for name in args.runs]


def cmd_report(args) -> int:
    from bench import report

    run_dirs = _run_dirs(args)
    out = Path(args.out) if args.out else run_dirs[0] / "report"
    print(f"report: {report.write_report(run_dirs, out)}")
    return EXIT_OK


DEFAULT_CONFIRM_TOP, DEFAULT_CONFIRM_SEEDS = 3, 3


def cmd_confirm(args) -> int:
    from bench import confirm, report

    (run_dir,) = _run_dirs(args)
    confirm.confirm_run(run_dir, args.top, args.seeds, data_dir=args.data_dir)
    print(f"report: {report.write_report([run_dir], run_dir / 'report')}")
    return EXIT_OK


def _add_confirm_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs=1, metavar="RUN", help="run whose top trials to retrain")
    p.add_argument(
        "--top",
        type=int,
        default=DEFAULT_CONFIRM_TOP,
        help=f"how many trials, best by validation accuracy (default {DEFAULT_CONFIRM_TOP})",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=DEFAULT_CONFIRM_SEEDS,
        help=f"fresh seeds per trial (default {DEFAULT_CONFIRM_SEEDS})",
    )


def cmd_export(args) -> int:
    from bench import export

    (run_dir,) = _run_dirs(args)
    out = export.export_run(
        run_dir,
        retrain_all=args.retrain,
        data_dir=args.data_dir,
        epochs=args.epochs,
        confirmed=args.confirmed,
        seed=args.seed,
        clean_epochs=args.clean_epochs,
    )
    print(f"exported: {out}")
    return EXIT_OK


def _add_search_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", help="search space (see `bench spaces`); default cnn")
    p.add_argument("--tuner", choices=TUNER_NAMES, help="default hyperband")
    p.add_argument("--run", required=True, help="run name: letters, digits, - _ . only")
    p.add_argument(
        "--max-trials", type=int, help="trial limit (default 20; hyperband: its schedule)"
    )
    p.add_argument(
        "--max-epochs", type=int, help=f"epochs per trial (default {DEFAULT_MAX_EPOCHS})"
    )
    p.add_argument("--batch-size", type=int, help=f"default {DEFAULT_BATCH_SIZE}")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (default 3)")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--val-size", type=int, help="validation images from the end of train (10000)")
    p.add_argument("--train-limit", type=int, help="keep only the first N training images")
    p.add_argument("--test-limit", type=int, help="keep only the first N test images")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), help="Keras fit verbosity")
    p.add_argument("--budget", help="time this search may run, e.g. 7h30m, 45m, 90s")
    p.add_argument("--max-params", type=int, help="bigger models fail as 'Oversized model'")
    p.add_argument("--max-failures", type=int, help="failed trials in a row that stop (5)")
    p.add_argument("--fresh", action="store_true", help="move an existing run aside, start over")
    p.add_argument(
        "--trials-per-process", type=int, help="run N trials per fresh process (bounds memory)"
    )
    p.add_argument(
        "--workers", type=int, help="run N worker processes under a KerasTuner chief (this machine)"
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
    from bench.data import DATASETS

    p.add_argument(
        "--dataset",
        choices=tuple(DATASETS),
        help="mnist (default) or fashion_mnist (Debian's dataset-fashion-mnist or Keras' cache)",
    )
    # Set by a supervising `bench search` on the processes it starts.
    p.add_argument("--role", choices=("process", "chief", "worker"), help=argparse.SUPPRESS)


def _add_threads_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads", type=int, help="TensorFlow threads per process (--workers: cores / N)"
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
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Find, compare and ship MNIST CNNs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (handler, help_text, add_flags) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        # Accepted after the command too; SUPPRESS keeps the top-level value when absent here.
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="tracebacks")
        if name in ("search", "worker", "export", "report", "confirm"):
            p.add_argument("--results", default=DEFAULT_RESULTS, help="folder of runs (results)")
        if name in ("search", "worker", "export", "confirm"):
            p.add_argument("--data-dir", help="MNIST IDX folder (else $BENCH_DATA_DIR, data/mnist)")
        if add_flags:
            add_flags(p)
    runs = sub.choices
    runs["report"].add_argument("runs", nargs="+", metavar="RUN", help="run names to report on")
    runs["report"].add_argument("--out", help="output folder (default results/<first RUN>/report)")
    runs["export"].add_argument("runs", nargs=1, metavar="RUN", help="run to export")
    runs["export"].add_argument("--retrain", action="store_true", help="retrain on all 60k images")
    runs["export"].add_argument(
        "--epochs", type=int, help="with --retrain: epochs to train (default: the trial's best)"
    )
    runs["export"].add_argument(
        "--seed", type=int, help="with --retrain: seed to train from (default: the run's seed)"
    )
    runs["export"].add_argument(
        "--clean-epochs",
        type=int,
        default=0,
        help="with --retrain: epochs to add without augmentation, at the final learning rate",
    )
    runs["export"].add_argument(
        "--confirmed",
        action="store_true",
        help="pick by mean validation accuracy over `bench confirm` seeds",
    )
    return parser


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input (exit 2), imported only where already loaded."""
    kinds: list[type[BaseException]] = [UsageError, ConfigError]
    for module, name in (
        ("bench.data", "DataError"),
        ("bench.report", "ReportError"),
        ("bench.export", "ExportError"),
        ("bench.confirm", "ConfirmError"),
        ("bench.lock", "RunLocked"),
    ):
        if module in sys.modules:
            kinds.append(getattr(sys.modules[module], name))
    return tuple(kinds)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code: 0 ok, 1 failure, 2 bad input, 130 SIGINT, 143 SIGTERM."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for worker processes
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        bad_input = isinstance(exc, _bad_input_errors())
        prefix = "error" if bad_input else f"error ({type(exc).__name__})"
        hint = "" if bad_input or args.debug else " [--debug shows the traceback]"
        message = (str(exc).strip().splitlines() or [""])[0]
        print(f"{prefix}: {message}{hint}", file=sys.stderr)
        return EXIT_USAGE if bad_input else EXIT_FAILURE


def main_exit() -> None:
    """Entry point of the `bench` console script."""
    sys.exit(main())
