"""Hostile text from outside (titles, keys, bodies, event data) never reaches a terminal as an
escape sequence: every CLI surface is read as raw bytes and searched for ESC and C1 controls."""

from __future__ import annotations

import json
import re

from ao import events
from ao.events import Event
from ao.sanitize import for_terminal
from ao.state import State
from ao.store import Store

from .fleet_helpers import Env
from .helpers import run_ao

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
