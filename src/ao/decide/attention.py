"""The board's attention zones, derived from a session's state and observations, never stored
(DESIGN "State"): respond > merge > fixing > working > queued > done."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ao.record.state import Activity, State

if TYPE_CHECKING:  # the record only: a decision never reads the store
    from ao.record.store import Session

ZONES = ("respond", "gate", "merge", "fixing", "working", "queued", "done")
STUCK_AFTER = 600.0


def zone(s: Session, now: float | None = None, stuck_after: float = STUCK_AFTER) -> str:
    now = time.time() if now is None else now
    if s.state in (State.MERGED, State.CLEANED, State.KILLED, State.FAILED):
        return "done"
    if s.state is State.QUEUED:
        return "queued"
    if s.state is State.NEEDS_HUMAN or s.activity in (Activity.WAITING_INPUT, Activity.EXITED) \
            or _stuck(s, now, stuck_after):
        return "respond"
    if s.pr_checks == "failing" or s.pr_review == "changes_requested" or \
            s.pr_mergeable == "conflicting":
        return "fixing"
    return _pr_zone(s)


def _stuck(s: Session, now: float, stuck_after: float) -> bool:
    """Idle with no PR for `stuck_after` seconds."""
    idle_since = max(s.screen_changed_at or 0, s.hook_at or 0)
    return s.activity == Activity.IDLE and not s.pr_number and bool(idle_since) and \
        now - idle_since >= stuck_after


def _pr_zone(s: Session) -> str:
    if not (s.pr_number and s.pr_state == "open"):
        return "working"
    if s.pr_gate_ok:
        return "merge"  # the merge gate said yes (gate.py), as the daemon last saw it
    if s.step == "approve":
        return "gate"  # only a human's approval holds it (`ao approve`, steps.py)
    if s.pr_checks == "passing" and s.step != "review" and \
            s.pr_review in ("not_reviewed", "review_required"):
        return "respond"  # green, and a person's review holds it (waiting.py: reviewer)
    return "working"


def rank(s: Session, now: float | None = None) -> int:
    return ZONES.index(zone(s, now))
