"""Hook lines as the agent's hook processes write them: each recorded once, whole lines only,
and the newest by its own time wins (hooks run as separate processes and can append out of
order)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ao.record.state import Activity
from ao.record.store import Store
from ao.world import agent_hooks


def test_the_newest_hook_wins_whatever_the_order_of_its_line(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    s = store.create_session("shop", "sho", "A-1", agent="claude-code")
    # the turn's Stop (10.5) appended before its UserPromptSubmit (10.1): idle, not active
    chunk = b"Stop\t10.5\t{}\nUserPromptSubmit\t10.1\t{}\nPreToolUse\t10.2\t{\"tool_na"
    s = agent_hooks.ingest(store, s, chunk, 0)
    assert (s.hook_activity, s.hook_at) == (Activity.IDLE.value, 10.5)
    assert s.hooks_read == chunk.rfind(b"\n") + 1  # the line being written waits
    # a line older than what was recorded, read later, changes nothing
    late = b"PreToolUse\t10.2\t{}\n"
    s = agent_hooks.ingest(store, s, late, s.hooks_read)
    assert (s.hook_activity, s.hook_at) == (Activity.IDLE.value, 10.5)
    # a second reader of the same bytes records nothing twice
    before = store.last_event_id()
    assert agent_hooks.ingest(store, s, late, s.hooks_read - len(late)) == s
    assert store.last_event_id() == before
    events = [e for e in store.session_events(s.id) if e["type"] == "agent.hook"]
    assert [e["data"]["event"] for e in events] == ["Stop", "UserPromptSubmit", "PreToolUse"]


def test_a_reader_that_dies_halfway_leaves_the_lines_for_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes claimed, their events and the activity they set are one transaction: a
    reader that fails after claiming records nothing, and the next reader records every
    line once."""
    store = Store(tmp_path / "state.db")
    s = store.create_session("shop", "sho", "A-1", agent="claude-code")
    chunk = b"UserPromptSubmit\t10.1\t{}\nStop\t10.5\t{}\n"
    real = store.add_event
    calls: list[str] = []

    def dies_on_the_second(*row: Any) -> None:
        calls.append(row[1])
        if len(calls) == 2:
            raise KeyboardInterrupt  # the reader stopped between two of its events
        real(*row)

    monkeypatch.setattr(store, "add_event", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        agent_hooks.ingest(store, s, chunk, 0)
    monkeypatch.setattr(store, "add_event", real)
    after = store.session(s.id)
    assert (after.hooks_read, after.hook_activity) == (0, None)
    assert not [e for e in store.session_events(s.id) if e["type"] == "agent.hook"]
    s = agent_hooks.ingest(store, after, chunk, 0)
    assert (s.hooks_read, s.hook_activity) == (len(chunk), Activity.IDLE.value)
    events = [e for e in store.session_events(s.id) if e["type"] == "agent.hook"]
    assert [e["data"]["event"] for e in events] == ["UserPromptSubmit", "Stop"]
