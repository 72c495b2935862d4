"""What the store hands out: a session's row as a typed record, and the refusals of a
claim (the task is busy; the project is at capacity)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ao.errors import AoError
from ao.record.state import Activity, Outcome, State


@dataclass(frozen=True)
class Session:
    id: str
    project: str
    task: str
    title: str
    state: State
    agent: str
    branch: str | None
    worktree: str | None
    created_at: float
    updated_at: float
    activity: Activity  # what its agent is doing, as last observed (activity.py)
    activity_at: float | None
    screen_hash: str | None
    screen_changed_at: float | None
    hook_activity: Activity | None  # what its agent's own hooks said last
    hook_at: float | None
    pr_number: int | None
    pr_url: str | None
    pr_state: str | None
    pr_head_sha: str | None
    pr_checks: str | None
    pr_review: str | None
    pr_mergeable: str | None
    pr_seen_at: float | None
    pane_alive: int | None
    exit_status: int | None
    runtime_seen_at: float | None
    note: str | None
    outcome: Outcome | None = None
    pr_gate: str | None = None  # the merge gate's verdict on the PR as last seen
    pr_gate_ok: int | None = None
    pr_draft: int | None = None
    pr_merge_state: str | None = None
    owner_pid: int | None = None  # the process starting it, while `spawning`
    limited_until: float | None = None  # its agent's usage limit resets then
    step: str | None = None  # the step of the task's work it is at (steps.py)
    host: str = "local"  # the machine its agent runs on (hosts.py)
    hooks_read: int = 0  # bytes of its hook file recorded (agent_hooks.py)
    unpushed: str | None = None  # its commits are not on the remote, and why (pushes.py)

    @property
    def merged(self) -> bool:
        """Done means merged: the one predicate dependents, plan status and the board read."""
        return self.outcome is Outcome.MERGED

    @property
    def placed_on(self) -> str | None:
        """The machine its agent runs on; None while it waits in the queue: it is placed
        when it starts, on whichever machine has room then."""
        return None if self.state is State.QUEUED else self.host

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Session:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["state"] = State(values["state"])
        values["activity"] = _activity(values["activity"]) or Activity.UNKNOWN
        values["hook_activity"] = _activity(values["hook_activity"])
        values["outcome"] = Outcome(values["outcome"]) if values["outcome"] else None
        return cls(**values)


def _activity(value: str | None) -> Activity | None:
    """A stored activity; one this version does not know reads as unknown."""
    if value is None:
        return None
    return Activity(value) if value in Activity._value2member_map_ else Activity.UNKNOWN


class TaskBusy(AoError):
    def __init__(self, task: str, sid: str, state: str) -> None:
        super().__init__(f"{task} already has session {sid} ({state})",
                         f"see `ao session ls`; `ao session kill {sid}` to start over")
        self.session_id = sid


class AtCapacity(AoError):
    def __init__(self, project: str, running: int) -> None:
        super().__init__(f"{project} already runs {running} sessions (max_concurrent)",
                         "the task is queued; raise max_concurrent to run more")
