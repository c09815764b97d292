"""Named moments at which `make soak` and the tests stop a process on purpose.

A random kill rarely lands in the few milliseconds between two writes, where a defect hides.
Code marks such a moment with `point(name)`; with BENCH_KILL_AT=<name>[:<n>[:<signal>]] in the
environment, the process sends itself the signal (SIGKILL unless named) the n-th time (1 unless
given) it reaches that point. Without the variable a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "BENCH_KILL_AT"
_reached: dict[str, int] = {}


def parse(value: str) -> tuple[str, int, signal.Signals]:
    """BENCH_KILL_AT's value as (point, n, signal)."""
    name, _, rest = value.partition(":")
    times, _, signame = rest.partition(":")
    n = int(times) if times else 1
    if n < 1:
        raise ValueError(f"{KILL_ENV}={value}: the count must be 1 or more")
    return name, n, signal.Signals[signame.upper()] if signame else signal.SIGKILL


def point(name: str) -> None:
    """Stop here if BENCH_KILL_AT names this point and this is its n-th passage."""
    wanted = os.environ.get(KILL_ENV)
    if not wanted or wanted.partition(":")[0] != name:
        return
    _, n, signum = parse(wanted)
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == n:
        os.kill(os.getpid(), signum)
