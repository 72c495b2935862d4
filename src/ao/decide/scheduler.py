"""Which tasks are done, which start now, which need a queued record. Pure: plain data in,
task keys out; the daemon, `ao status`, `ao plan status` and the board all ask here.

A task is done when one of its sessions merged (its outcome, kept beside `cleaned`) or its
issue was closed as completed; killed or failed work never unblocks a dependent. A task starts
as soon as all of its own dependencies are done, critical path first, never above the
project's max_concurrent. Waves are a view, never a barrier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ao.decide.plan import Plan, priority_order
from ao.record.state import KILLED_BY_HAND, LIVE, RUNNING, Outcome, State

if TYPE_CHECKING:
    from ao.record.store import Session

SPAWN_TRIES = 3  # failed starts of one task before the daemon stops and asks a human
SPAWN_BACKOFF = 30.0  # seconds before the first retry of a failed start; doubles each time


@dataclass(frozen=True)
class TaskStatus:
    """What a task's sessions add up to."""

    states: frozenset[State] = frozenset()
    merged: bool = False
    failures: tuple[float, ...] = ()  # when each failed session of the task ended, in order
    # its latest session was killed by a human: it stays stopped (not queued again) until
    # someone starts it (`ao spawn`, `ao session restore`); one ao ended (a dead agent the
    # cleanup took away) is queued again as before
    held: bool = False

    @property
    def live(self) -> bool:
        return bool(self.states & LIVE)

    @property
    def running(self) -> bool:
        return bool(self.states & RUNNING)


def by_task(sessions: Iterable[Session]) -> dict[str, TaskStatus]:
    states: dict[str, set[State]] = {}
    merged: set[str] = set()
    failures: dict[str, list[float]] = {}
    latest: dict[str, Session] = {}
    for s in sessions:
        states.setdefault(s.task, set()).add(s.state)
        if s.outcome is Outcome.MERGED:
            merged.add(s.task)
        elif s.outcome is Outcome.FAILED:
            failures.setdefault(s.task, []).append(s.updated_at)
        if s.task not in latest or s.created_at >= latest[s.task].created_at:
            latest[s.task] = s
    return {k: TaskStatus(frozenset(v), k in merged, tuple(sorted(failures.get(k, ()))),
                          held=latest[k].outcome is Outcome.ABANDONED
                          and latest[k].note == KILLED_BY_HAND)
            for k, v in states.items()}


def done_tasks(tasks: Mapping[str, TaskStatus], closed_issues: set[str]) -> set[str]:
    """Tasks with a merged session, or whose issue was closed as completed."""
    return {k for k, t in tasks.items() if t.merged} | closed_issues


def waiting_on(plan: Plan, key: str, done: set[str]) -> list[str]:
    return [d for d in plan.tasks[key].deps if d not in done]


def ready(plan: Plan, tasks: Mapping[str, TaskStatus], closed_issues: set[str]) -> list[str]:
    """Queued tasks whose dependencies are all done, critical path first (what starts as soon
    as there is room)."""
    done = done_tasks(tasks, closed_issues)
    out = [k for k in plan.tasks
           if k in tasks and State.QUEUED in tasks[k].states and not tasks[k].running
           and k not in done and not waiting_on(plan, k, done)]
    return priority_order(plan, out)


def next_to_start(plan: Plan, tasks: Mapping[str, TaskStatus], closed_issues: set[str],
                  max_concurrent: int, paused: bool = False,
                  keep: Callable[[list[str]], list[str]] | None = None) -> list[str]:
    """Queued tasks of `plan` to start now, in start order; `keep` narrows the ready ones
    before the room is counted out (a task held for its files never takes a slot)."""
    if paused:
        return []
    running = sum(1 for t in tasks.values() for s in t.states if s in RUNNING)
    room = max_concurrent - running
    if room <= 0:
        return []
    candidates = ready(plan, tasks, closed_issues)
    return (keep(candidates) if keep is not None else candidates)[:room]


def spawn_gave_up(t: TaskStatus, tries: int = SPAWN_TRIES) -> bool:
    return len(t.failures) >= tries


def to_queue(plan: Plan, tasks: Mapping[str, TaskStatus], closed_issues: set[str], now: float,
             tries: int = SPAWN_TRIES, backoff: float = SPAWN_BACKOFF) -> list[str]:
    """Tasks of the plan that need a queued record: not done, no live session, and not
    failing to start (a failed start is retried after a doubling backoff, `tries` times)."""
    done = done_tasks(tasks, closed_issues)
    out = []
    for key in plan.tasks:
        t = tasks.get(key, TaskStatus())
        if key in done or t.live or t.held or spawn_gave_up(t, tries):
            continue
        if t.failures and now - t.failures[-1] < backoff * 2 ** (len(t.failures) - 1):
            continue
        out.append(key)
    return out


def complete(plan: Plan, tasks: Mapping[str, TaskStatus], closed_issues: set[str]) -> bool:
    return set(plan.tasks) <= done_tasks(tasks, closed_issues)
