"""Don't start two agents on the same files (docs/plans.md "Files and overlap"): one pure
decision beside the scheduler. Given the ready tasks in start order, where each will write
(the plan's `files:` globs) and where each running session writes (its plan's globs and the
files its branch has actually changed), which ready tasks to hold now, and why. A task on
the critical path is never held; a task that declares no files is never held; of two ready
tasks that share files, the first in start order goes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatch


def meets(globs: Sequence[str], files: Iterable[str]) -> str | None:
    """The first file (or glob) of `files` that `globs` covers, or that covers a glob."""
    for f in files:
        for g in globs:
            if f == g or fnmatch(f, g):
                return f
            if fnmatch(g, f):
                return g  # the more precise of the two names it
    return None


def hold(start: Sequence[str], files: Mapping[str, Sequence[str]],
         running: Mapping[str, tuple[str, Iterable[str]]], critical: set[str]
         ) -> dict[str, str]:
    """`start`: the ready tasks in start order; `files`: each task's declared globs;
    `running`: task -> (session id, the files or globs it writes). Returns the tasks to hold,
    each with its reason."""
    held: dict[str, str] = {}
    going: dict[str, tuple[str, list[str]]] = {k: (sid, list(f)) for k, (sid, f) in
                                               running.items()}
    for key in start:
        globs = files.get(key) or ()
        if not globs or key in critical:
            going[key] = ("starting now", list(globs))
            continue
        for other, (sid, theirs) in going.items():
            shared = meets(globs, theirs)
            if shared is not None:
                held[key] = f"shares {shared} with {other} ({sid})"
                break
        else:
            going[key] = ("starting now", list(globs))
    return held
