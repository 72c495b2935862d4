"""What an agent's own hooks tell us, by one mechanism wherever the agent runs.

The hook is a line of shell (`command()`): it appends `EVENT<TAB>EPOCH<TAB>PAYLOAD` to
`hooks.tsv` in the session's folder on the agent's machine and touches ao's wake file when
that machine is this one. It needs neither ao nor Python where it runs, and it costs an
agent's tool call a few milliseconds instead of a Python start-up.

ao reads the new lines (`ingest`): the daemon's poll (here, directly; on a host, in the poll's
one round trip), and `ao send` while it waits for UserPromptSubmit. The file offset read so
far is the session's `hooks_read`, advanced by compare-and-set in the same transaction that
records the lines' events and activity, so two readers never record the same line twice and a
reader that dies halfway leaves them for the next; only whole lines are taken.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ao import paths
from ao.record.events import Event, published
from ao.record.state import Activity
from ao.world import agent_usage

HOOK_FILE = "hooks.tsv"  # in the session's folder: one line a hook event (agents/base.py)
# bytes of the payload kept on the line, so the line is one write of the shell's output
# buffer; a longer payload (a tool's input) is cut, and its fields are read from its start
HOOK_MAX_PAYLOAD = 3500

if TYPE_CHECKING:
    from ao.record.store import Session, Store

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
_FIELD = re.compile(r'"(' + "|".join(KEPT_FIELDS) + r')"\s*:\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Hook:
    event: str
    at: float
    payload: dict[str, Any]


def parse(chunk: bytes) -> tuple[list[Hook], int]:
    """The whole lines of `chunk` and how many bytes they take (a line being written is left
    for the next read)."""
    end = chunk.rfind(b"\n") + 1
    out = []
    for raw in chunk[:end].splitlines():
        event, _, rest = raw.decode("utf-8", "replace").partition("\t")
        stamp, _, body = rest.partition("\t")
        try:
            at = float(stamp)
        except ValueError:
            at = time.time()  # a `date` without %N: seconds are enough
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:  # cut at HOOK_MAX_PAYLOAD: the string fields we keep, from its start
            payload = {m[1]: json.loads(f'"{m[2]}"') for m in _FIELD.finditer(body)}
        if event:
            out.append(Hook(event.strip(), at, payload if isinstance(payload, dict) else {}))
    return out, end


def ingest(store: Store, s: Session, chunk: bytes, offset: int) -> Session:
    """Record the hooks in `chunk` (the file's bytes from `offset`) for the session; the
    session as it is after. Nothing is recorded if another reader took these bytes first."""
    hooks, used = parse(chunk)
    if not used:
        return s
    last = _newest(hooks, s.hook_at or 0.0)
    events = [Event("agent.hook", s.project, s.id, s.task, {
        "agent": s.agent, "event": h.event, "at": h.at,
        **{k: str(h.payload[k])[:200] for k in KEPT_FIELDS if k in h.payload}}) for h in hooks]
    # the bytes claimed, their events and the activity they set are one transaction: a
    # reader that dies halfway records all of them or none, and the next reader takes them
    # hooks write their own columns: `observe` combines them with the screen, so neither can
    # overwrite the other with a stale value
    if not store.record_hooks(s.id, offset, offset + used, [e.row() for e in events],
                              (last[0].value, last[1]) if last else None):
        return s
    for e in events:
        published(e)
    paths_named = [str(h.payload["transcript_path"]) for h in hooks
                   if h.payload.get("transcript_path")]
    if paths_named:  # where the agent records what it spends (agent_usage.py)
        agent_usage.note_transcript(store, s, paths_named[-1])
    if last is not None and last[0] in (Activity.IDLE, Activity.WAITING_INPUT,
                                        Activity.EXITED):
        paths.poke_daemon()  # queued messages and reactions need not wait for the next poll
    return store.session(s.id)


def _newest(hooks: list[Hook], since: float) -> tuple[Activity, float] | None:
    """The activity of the newest hook that says one, by its own time, and only if newer than
    `since` (what was recorded before). Hooks run as processes of their own: one that started
    later can append its line first (a UserPromptSubmit behind its turn's Stop), so the last
    line in the file is not the newest."""
    last: tuple[Activity, float] | None = None
    for h in hooks:
        activity = ACTIVITY.get(h.event)
        if h.event == "Notification":
            activity = Activity.WAITING_INPUT if h.payload.get("notification_type") == \
                "permission_prompt" else None
        if activity is not None and h.at >= (last[1] if last else since):
            last = (activity, h.at)
    return last


def local_file(s: Session) -> Path:
    return paths.session_dir(s.project, s.id) / HOOK_FILE


def ingest_local(store: Store, s: Session) -> Session:
    """Read a session's new hook lines on this machine."""
    try:
        with local_file(s).open("rb") as fh:
            fh.seek(s.hooks_read)
            chunk = fh.read()
    except OSError:
        return s
    return ingest(store, s, chunk, s.hooks_read) if chunk else s
