"""GitHub as the plan (docs/plans.md "Pickup by label"): the open issues carrying the
project's label are its tasks, keyed by issue number (`123`; `#123` names it too, as
everywhere in ao), and the issues each waits for (GitHub's own
"blocked by" dependencies, its sub-issues, `Depends on #N` lines) are their dependencies. One
pure decision: the plan the scheduler runs, and what keeps an issue out of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ao.decide.plan import Plan, Task
from ao.record.state import State
from ao.sanitize import clean

if TYPE_CHECKING:  # the records only: a decision reads them, never the store
    from ao.decide.waiting import Wait
    from ao.record.forge import PickedIssue
    from ao.record.store import Session

MARKER = "<!-- ao-status -->"  # the one comment on the issue that ao keeps up to date


def key(number: int) -> str:
    return str(number)


def number(task_key: str) -> int | None:
    """The issue number of a pickup task's key, or None for any other task."""
    return int(task_key) if task_key.isdigit() else None


def plan_of(picked: Iterable[PickedIssue]) -> tuple[Plan, list[str]]:
    """The plan of the picked issues, and why any issue waits outside it: blocked by an open
    issue that is not picked up (it starts when that one is closed), or in a cycle."""
    plan, held = plan_and_held(picked)
    return plan, list(dict.fromkeys(held.values()))


def plan_and_held(picked: Iterable[PickedIssue]) -> tuple[Plan, dict[int, str]]:
    """The plan, and each held issue with why (said on the issue itself)."""
    issues = {p.number: p for p in picked}
    held: dict[int, str] = {}
    for cycle in _cycles({n: p.blocked_by for n, p in issues.items()}):
        why = ("a dependency cycle: " + " -> ".join(f"#{n}" for n in cycle) +
               " (none of them can start; remove one link on GitHub)")
        held |= {n: why for n in cycle}
    changed = True
    while changed:  # an issue waiting outside holds those that wait for it, and so on
        changed = False
        for n, p in issues.items():
            if n in held:
                continue
            outside = [b for b in p.blocked_by if b not in issues or b in held]
            if outside:
                held[n] = (f"#{n} waits for {', '.join(f'#{b}' for b in outside)}, not "
                           "ready for pickup here: it starts once that is closed")
                changed = True
    tasks = {key(n): Task(key(n), p.title, p.body, deps=tuple(key(b) for b in p.blocked_by))
             for n, p in sorted(issues.items()) if n not in held}
    return Plan(tasks=tasks), held


def _cycles(graph: dict[int, tuple[int, ...]]) -> list[list[int]]:
    """The cycles among the graph's nodes (each once, as a path back to its start)."""
    found: list[list[int]] = []
    seen: set[int] = set()
    path: list[int] = []  # the nodes under visit, in order

    def visit(n: int) -> None:
        seen.add(n)
        path.append(n)
        for m in graph.get(n, ()):
            if m not in graph:
                continue
            if m in path:
                found.append([*path[path.index(m):], m])
            elif m not in seen:
                visit(m)
        path.pop()

    for n in sorted(graph):
        if n not in seen:
            visit(n)
    return found


def status_line(s: Session | None, wait: Wait | None, rounds: int = 0,
                of: int = 0) -> str:
    """Where the issue's task stands, in one line, for its status comment: queued, an agent
    on it, its PR and what it waits for, fix rounds, needs a human, merged."""
    if s is None or s.state is State.QUEUED:
        why = f": {s.note}" if s is not None and s.note else ""
        return f"Queued{why}."
    if s.state in (State.MERGED, State.CLEANED) and (s.merged or s.pr_state == "merged"):
        return f"Merged in PR #{s.pr_number}." if s.pr_number else "Merged."
    if s.state in (State.KILLED, State.FAILED, State.CLEANED):
        return f"Stopped ({s.state.value}); it starts again when asked (`ao spawn`)."
    if s.state is State.NEEDS_HUMAN:
        return f"Needs a human: {s.note or 'escalated'} (session {s.id})."
    line = f"An agent ({s.agent}) is on it in session {s.id}"
    if s.pr_number:
        line += f"; PR #{s.pr_number}"
    if rounds:
        line += f"; CI fix round {rounds}{f' of {of}' if of else ''}"
    if wait is None:
        return line + "."
    # a reason whose text moves with the clock ("idle for 12 min") would edit the comment
    # every minute: its kind is said instead
    steady = {"stuck": "the agent is idle with no pull request"}.get(wait.kind, wait.reason)
    return line + f": {steady}."


def status_body(line: str) -> str:
    """The comment: ao's line as text on a page others read (no @-mention pings anyone, no
    markup or HTML from a reason's outside text takes effect)."""
    text = clean(line).replace("@", "@\u200b")
    for ch in "\\`*_<>[]#|~":
        text = text.replace(ch, "\\" + ch)
    return f"{MARKER}\n**ao**: {text}\n\n<sub>This comment is kept up to date by ao.</sub>"
