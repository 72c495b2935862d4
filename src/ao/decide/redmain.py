"""Which merge turned main red: one pure decision, like the merge gate (docs/reactions.md
"Main stays green"). Given the merges on main's first-parent line since its last green head
(oldest first, the red head last) and the CI verdicts known so far, it names the next commit
to run CI on (a bisection: the first red merge is found in about log2(n) runs), or the culprit.

Two PRs, each green alone, can make main red together (a semantic conflict): the culprit is
the first merge whose result is red, the one that brought the second half of the conflict.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PASSING, FAILING = "passing", "failing"


@dataclass(frozen=True)
class Step:
    run: str | None = None  # a commit whose CI verdict is needed next (run it, then look again)
    culprit: str | None = None  # the first merge whose result is red
    waiting: bool = False  # a verdict asked for earlier is not in yet


def bisect(merges: Sequence[str], verdicts: Mapping[str, str]) -> Step:
    """`merges`: the first-parent commits after the last green head, oldest first; the last
    is red. `verdicts`: sha -> passing | failing | anything else (pending)."""
    if not merges:
        return Step()
    lo, hi = -1, len(merges) - 1  # merges[lo] green (the last green head at -1), merges[hi] red
    # what is known narrows the range from both ends before anything more is run
    for i, sha in enumerate(merges[:-1]):
        if verdicts.get(sha) == PASSING:
            lo = max(lo, i)
    for i in range(hi - 1, lo, -1):  # downwards: the earliest red one known is the bound
        if verdicts.get(merges[i]) == FAILING:
            hi = i
    while hi - lo > 1:
        mid = (lo + hi) // 2
        v = verdicts.get(merges[mid])
        if v == PASSING:
            lo = mid
        elif v == FAILING:
            hi = mid
        elif v is None:
            return Step(run=merges[mid])
        else:
            return Step(waiting=True)
    return Step(culprit=merges[hi])


def red_reason(watch: dict[str, Any]) -> str | None:
    """What `ao status` and "why is it waiting" say while main is red; None when it is not."""
    if not watch.get("red"):
        return None
    since = time.strftime("%H:%M", time.localtime(float(watch.get("since") or time.time())))
    text = f"main is red since {since} (CI failing at {str(watch['red'])[:10]})"
    if watch.get("culprit_pr"):
        text += f"; turned red by PR #{watch['culprit_pr']} ({watch.get('culprit_branch')})"
    elif watch.get("culprit"):
        text += f"; turned red by {str(watch['culprit'])[:10]}"
    else:
        text += "; finding the merge that turned it red"
    if watch.get("revert_failed"):
        text += f"; not reverted: {watch['revert_failed']}"
    elif watch.get("revert_pr"):
        text += f"; PR #{watch['revert_pr']} reverts it"
    elif watch.get("fix_task"):
        text += f"; {watch['fix_task']} fixes it"
    return text
