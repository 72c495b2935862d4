"""What an agent's own hooks tell us (`ao hook claude-code EVENT`), recorded for its session."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from . import paths
from .errors import AoError
from .events import Event, emit
from .state import Activity
from .store import Store

ACTIVITY = {
    "SessionStart": Activity.IDLE,
    "UserPromptSubmit": Activity.ACTIVE,
    "PreToolUse": Activity.ACTIVE,
    "PostToolUse": Activity.ACTIVE,
    "PermissionRequest": Activity.WAITING_INPUT,
    "Stop": Activity.IDLE,
    "SessionEnd": Activity.EXITED,
}
KEPT_FIELDS = ("notification_type", "tool_name", "source", "reason", "session_id",
               "transcript_path")


def record(agent: str, event: str, raw: str, store: Store | None = None) -> bool:
    """Record one hook call. Returns False (and records nothing) outside an ao session."""
    sid = os.environ.get("AO_SESSION")
    if not sid:
        return False
    try:
        payload: dict[str, Any] = json.loads(raw) if raw.strip() else {}
    except ValueError:
        payload = {}
    store = store or Store()
    try:
        s = store.session(sid)
    except AoError:
        return False
    activity = ACTIVITY.get(event)
    if event == "Notification":
        activity = Activity.WAITING_INPUT if payload.get("notification_type") == \
            "permission_prompt" else None
    if activity is not None:
        # hooks write their own columns: `observe` combines them with the screen, so neither
        # can overwrite the other with a stale value
        store.update_session(sid, hook_activity=activity.value, hook_at=time.time())
    data = {"agent": agent, "event": event,
            **{k: str(payload[k])[:200] for k in KEPT_FIELDS if k in payload}}
    emit(Event("agent.hook", s.project, sid, s.task, data), store)
    if activity in (Activity.IDLE, Activity.WAITING_INPUT, Activity.EXITED):
        paths.poke_daemon()  # queued messages and reactions need not wait for the next poll
    return True
