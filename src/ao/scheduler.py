"""Which queued tasks start now. Pure: plain data in, task keys out.

A task starts as soon as all of its own dependencies are done, critical path first, never
above the project's max_concurrent. Waves are a view, never a barrier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .plan import Plan, priority_order
from .state import DONE, RUNNING, State

if TYPE_CHECKING:
    from .store import Session


def states_by_task(sessions: Iterable[Session]) -> dict[str, set[State]]:
    """Every state each task's sessions are in (a task can have a killed and a live one)."""
    out: dict[str, set[State]] = {}
    for s in sessions:
        out.setdefault(s.task, set()).add(s.state)
    return out


def done_tasks(states: Mapping[str, set[State]], closed_issues: set[str]) -> set[str]:
    """Tasks with a merged (or cleaned-after-merge) session, or whose issue was closed."""
    return {k for k, ss in states.items() if ss & DONE} | closed_issues


def waiting_on(plan: Plan, key: str, done: set[str]) -> list[str]:
    return [d for d in plan.tasks[key].deps if d not in done]


def next_to_start(plan: Plan, states: Mapping[str, set[State]], closed_issues: set[str],
                  max_concurrent: int, paused: bool = False) -> list[str]:
    """Queued tasks of `plan` to start now, in start order.

    `states` maps a task key to the states of all its sessions (a task with a queued session
    is a candidate; a task with a running one is not)."""
    if paused:
        return []
    running = sum(1 for ss in states.values() for s in ss if s in RUNNING)
    room = max_concurrent - running
    if room <= 0:
        return []
    done = done_tasks(states, closed_issues)
    ready = [k for k in plan.tasks
             if State.QUEUED in states.get(k, set()) and not (states[k] & RUNNING)
             and k not in done and not waiting_on(plan, k, done)]
    return priority_order(plan, ready)[:room]


def complete(plan: Plan, states: Mapping[str, set[State]], closed_issues: set[str]) -> bool:
    return set(plan.tasks) <= done_tasks(states, closed_issues)
