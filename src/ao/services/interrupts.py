"""Ctrl-C at safe points: a SIGINT noted where it lands and raised where ao can undo.

A KeyboardInterrupt raised wherever the signal lands can cut a step in half: Python kills a
`git worktree add` it was waiting on (its `git reset --hard` child goes on writing after the
rollback removed the folder), or interrupts the rollback itself. Inside `deferred()`, a
SIGINT (Ctrl-C, or `kill -INT`) only sets a flag; `check()` raises KeyboardInterrupt at the
next safe point, where the caller's undo knows exactly what was made. A second Ctrl-C while
a rollback runs is noted, not obeyed: the rollback finishes.

Only the main thread can own signal handlers, and only Python's own SIGINT handler is
replaced (the daemon's handler already stops it gracefully): elsewhere `deferred()` does
nothing and `check()` never raises.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_noted = threading.Event()
_active = threading.Event()


def _note(signum: int, frame: FrameType | None) -> None:
    if not _noted.is_set():
        sys.stderr.write("ao: interrupted: finishing the step in hand, then undoing it\n")
    else:
        sys.stderr.write("ao: still undoing the step in hand; one moment\n")
    _noted.set()


@contextmanager
def deferred() -> Iterator[None]:
    """Within: SIGINT is noted, `check()` raises it, `interrupted()` tells. The caller reports
    the interruption itself before the block ends (nothing here raises it again)."""
    if (threading.current_thread() is not threading.main_thread() or _active.is_set()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    _noted.clear()
    _active.set()
    previous = signal.signal(signal.SIGINT, _note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _active.clear()
        _noted.clear()


def interrupted() -> bool:
    """Whether a SIGINT was noted inside the block."""
    return _noted.is_set()


def check() -> None:
    """A safe point: a noted SIGINT is raised here as KeyboardInterrupt."""
    if _noted.is_set():
        raise KeyboardInterrupt
