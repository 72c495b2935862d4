"""Hook lines as the agent's hook processes write them: each recorded once, whole lines only,
and the newest by its own time wins (hooks run as separate processes and can append out of
order)."""

from __future__ import annotations

from pathlib import Path

from ao import agent_hooks
from ao.state import Activity
from ao.store import Store


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
