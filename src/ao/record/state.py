"""The session lifecycle: one StrEnum, one transition table, one function that enforces it.

The store repeats the allowed states as a CHECK constraint, so no write can bypass this.
"""

from __future__ import annotations

from enum import StrEnum

from ao.errors import StateError


class State(StrEnum):
    QUEUED = "queued"
    SPAWNING = "spawning"
    WORKING = "working"
    PR_OPEN = "pr_open"
    MERGED = "merged"
    CLEANED = "cleaned"
    NEEDS_HUMAN = "needs_human"
    KILLED = "killed"
    FAILED = "failed"


class Activity(StrEnum):
    ACTIVE = "active"
    IDLE = "idle"
    WAITING_INPUT = "waiting_input"
    EXITED = "exited"
    LIMITED = "limited"  # the agent hit its usage limit and waits for the reset
    UNREACHABLE = "unreachable"  # its host does not answer: not failed, not done
    UNKNOWN = "unknown"


S = State
TRANSITIONS: dict[State, frozenset[State]] = {
    S.QUEUED: frozenset({S.SPAWNING, S.KILLED}),
    # back to the queue: a start interrupted by a crash is undone and tried again
    S.SPAWNING: frozenset({S.WORKING, S.FAILED, S.KILLED, S.QUEUED}),
    S.WORKING: frozenset({S.PR_OPEN, S.MERGED, S.NEEDS_HUMAN, S.KILLED, S.FAILED}),
    S.PR_OPEN: frozenset({S.WORKING, S.MERGED, S.NEEDS_HUMAN, S.KILLED}),
    S.NEEDS_HUMAN: frozenset({S.WORKING, S.PR_OPEN, S.MERGED, S.KILLED, S.FAILED}),
    S.MERGED: frozenset({S.CLEANED}),
    # a killed session can be restored in place, or its leftovers cleaned
    S.KILLED: frozenset({S.WORKING, S.CLEANED}),
    S.FAILED: frozenset({S.CLEANED}),
    S.CLEANED: frozenset(),
}
# states in which a session occupies its task (at most one such session per task)
LIVE: frozenset[State] = frozenset({S.QUEUED, S.SPAWNING, S.WORKING, S.PR_OPEN, S.NEEDS_HUMAN})
# states that count against max_concurrent (a queued session has no agent yet)
RUNNING: frozenset[State] = LIVE - {S.QUEUED}
# states a session ends in (cleaned is the last step of each, not an outcome)
ENDED: frozenset[State] = frozenset({S.MERGED, S.CLEANED, S.KILLED, S.FAILED})


class Outcome(StrEnum):
    """How a session's work ended, kept beside `cleaned`: only `merged` makes a task done."""

    MERGED = "merged"
    ABANDONED = "abandoned"
    FAILED = "failed"


# the note of a session a human killed (`ao session kill`, the board, the web): its task stays
# stopped until someone starts it again (scheduler.TaskStatus.held)
KILLED_BY_HAND = "killed by hand; `ao spawn` or `ao session restore` starts the task again"

# entering one of these states records the session's outcome (leaving killed by a restore
# clears it again)
OUTCOME_OF: dict[State, Outcome] = {S.MERGED: Outcome.MERGED, S.KILLED: Outcome.ABANDONED,
                                    S.FAILED: Outcome.FAILED}


def check_transition(current: State | str, new: State | str) -> State:
    """Return `new` as a State if the table allows current -> new; raise StateError otherwise."""
    cur, nxt = State(current), State(new)
    if nxt not in TRANSITIONS[cur]:
        allowed = ", ".join(sorted(TRANSITIONS[cur])) or "none (final)"
        raise StateError(f"a session cannot go from {cur} to {nxt}", f"from {cur}: {allowed}")
    return nxt
