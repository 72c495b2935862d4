"""One actor at a time: the daemon, a person and a kill never step on each other (the race
with the real Claude Code is in test_claude_code.py)."""

from __future__ import annotations

import psutil

from ao import tmux

from .fleet_helpers import Env


def test_stopping_a_stopped_session_never_hits_another_by_prefix(env: Env) -> None:
    """tmux 3.3a resolves `list-panes -s -t =sho-1` to sho-11 when sho-1 is gone: a merge's
    cleanup stopping sho-1 a second time killed sho-11's agent. Targets are exact now."""
    srv = env.server()
    tmux.new_session(srv, "sho-11", env.repo, "sleep 600")
    p = tmux.pane(srv, "sho-11")
    assert p is not None and p.pid is not None
    assert tmux.kill_session(srv, "sho-1", grace=0.2) is False  # no such session: nothing
    assert "sho-11" in tmux.sessions(srv)
    assert psutil.pid_exists(p.pid) and psutil.Process(p.pid).status() != "zombie"
