"""Exit codes and the exception types every layer raises; nothing here imports bench."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # an unexpected failure, or too many failed trials in a row
EXIT_USAGE = 2  # bad input: usage, data, unknown names, a run another search holds
EXIT_MORE = 75  # EX_TEMPFAIL: a process ran its share of trials; the run is not over
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C)
EXIT_TERMINATED = 143  # SIGTERM
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of the output went away, as `| head` does


class BadInput(Exception):
    """Input a person can correct (exit code 2); the message is one line that says how."""


class UsageError(BadInput):
    """Bad input from the command line."""


class ConfigError(BadInput, ValueError):
    """A setting that cannot make a run; the message says which and why."""


class SpaceError(ConfigError):
    """A search space that cannot make a run: the message names its file (or name) and what
    is wrong with it."""


class DataError(BadInput):
    """Bad or missing data: the message names the file and what is wrong."""


class ReportError(BadInput):
    """A run cannot be reported on."""


class ExportError(BadInput):
    """The run cannot be exported."""


class ConfirmError(BadInput):
    """The run cannot be confirmed."""


class DamagedFile(BadInput):
    """A file of a run cannot be read: the message names it and says what to do."""


class NotWritable(BadInput):
    """A folder the command must write into does not let it; the message names the folder."""


class RunLocked(BadInput):
    """Another live process is searching this run; the message names it."""


class DiskFull(BaseException):
    """A file could not be written for want of disk space (exit code 1); the message names
    it. A BaseException, like the budget's stop, so that KerasTuner leaves the trial in
    progress unfinished, to run again when the same command resumes the run, rather than
    recording it as failed."""


class FormatError(RuntimeError):
    """A serving format of an export does not give the model's answers (exit code 1); the
    message names it and its accuracy."""


class SearchError(RuntimeError):
    """The search could not go on (a failure, exit code 1); the message says why."""


class UnsupportedKerasTuner(RuntimeError):
    """The installed KerasTuner is not a version whose internals bench.train.kt_compat knows."""


def one_line(exc: BaseException) -> str:
    """The exception's type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
