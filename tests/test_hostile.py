"""Hostile text from outside (titles, keys, bodies, event data) never reaches a terminal as an
escape sequence: every CLI surface is read as raw bytes and searched for ESC and C1 controls."""

from __future__ import annotations

import json
import re

from ao.record import events
from ao.record.events import Event
from ao.record.state import State
from ao.record.store import Store
from ao.sanitize import for_terminal

from .fleet_helpers import Env
from .helpers import retry_until, run_ao

EVIL = "x\x1b]52;c;aGVsbG8=\x07 \x1b[2J\x1b]0;pwned\x07\x9b31m \x1b]8;;http://e.invalid\x07"\
       "link\x1b]8;;\x07 [/bold] end"
BAD = re.compile("[\x1b\x07\x80-\x9f]")


def test_no_surface_prints_an_escape(env: Env) -> None:
    plan = {"tasks": {"A-1": {"title": EVIL, "body": EVIL},
                      "B-1": {"title": "fine", "deps": ["A-1"]}}}
    env.plan_file.write_text(json.dumps(plan))
    store = Store()
    s = store.create_session("shop", "sho", "A-1", title=EVIL, state=State.SPAWNING)
    store.set_state(s.id, State.WORKING)
    store.set_state(s.id, State.NEEDS_HUMAN, note=EVIL)
    events.emit(Event("ci.failed", "shop", s.id, "A-1", {"log": EVIL}), store)
    surfaces = [
        ["session", "ls", "--all"], ["session", "ls", "--all", "--json"], ["status"],
        ["plan", "show", str(env.plan_file)], ["plan", "check", str(env.plan_file)],
        ["plan", "status", str(env.plan_file), "-p", "shop"],
        ["plan", "status", str(env.plan_file), "-p", "shop", "--json"],
        ["events"], ["events", "--json"], ["logs", s.id, "--events"], ["config", "show"],
        ["send", "NOPE\x1b[2J", "x"],
    ]
    for argv in surfaces:
        r = run_ao(*argv)
        for stream in (r.out, r.err):
            assert not BAD.search(stream), (argv, stream[:300])
    # what was kept is the text: the words around the escapes survive
    assert "[/bold] end" in run_ao("session", "ls", "--all").out
    log = (run_ao("events", "--json").out)
    assert "\\u009b" in log  # C1 escaped, not dropped silently from the data


def test_lone_escape_keeps_the_text_after_it() -> None:
    assert for_terminal("a\x1b b") == "a b"
    assert for_terminal("ok\x1b[31mred\x1b[0m") == "okred"


def test_a_real_terminal_sees_no_clipboard_write_title_or_clear(env: Env) -> None:
    """Every surface printed into a real tmux pane with clipboard capture on: no OSC 52 reached
    the clipboard (tmux keeps it as a paste buffer), no title changed, nothing was cleared."""
    import shlex
    import sys

    from ao.world import tmux

    plan = {"tasks": {"A-1": {"title": EVIL, "body": EVIL}}}
    env.plan_file.write_text(json.dumps(plan))
    store = Store()
    s = store.create_session("shop", "sho", "A-1", title=EVIL, state=State.SPAWNING)
    store.set_state(s.id, State.WORKING)
    events.emit(Event("ci.failed", "shop", s.id, "A-1", {"log": EVIL}), store)
    srv = env.server()
    ao = f"{shlex.quote(sys.executable)} -m ao"
    script = "; ".join([
        "echo START-OF-OUTPUT", f"{ao} session ls --all", f"{ao} plan show {env.plan_file}",
        f"{ao} plan check {env.plan_file}", f"{ao} status", f"{ao} events",
        f"{ao} logs {s.id} --events", f"{ao} session ls --all --json", "echo END-OF-OUTPUT",
        "sleep 600"])
    tmux.new_session(srv, "holder", env.repo, "sleep 600")  # the server, to set options on
    srv.cmd("set-option", "-g", "set-clipboard", "on")  # OSC 52 would land in a buffer
    srv.cmd("set-option", "-g", "allow-rename", "on")
    tmux.new_session(srv, "viewer", env.repo, f"sh -c {shlex.quote(script)}")
    before = srv.cmd("display-message", "-p", "-t", "=viewer:", "#{pane_title}").stdout
    retry_until(lambda: "END-OF-OUTPUT" in tmux.capture(srv, "viewer", history=2000),
                timeout=60, message="the commands' output")
    assert srv.cmd("list-buffers").stdout == []  # no OSC 52 clipboard write
    after = srv.cmd("display-message", "-p", "-t", "=viewer:", "#{pane_title}").stdout
    assert after == before  # no title set
    assert "START-OF-OUTPUT" in tmux.capture(srv, "viewer", history=2000)  # nothing cleared
