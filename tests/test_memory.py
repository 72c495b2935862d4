"""Starts that fit in memory (memory.py): each agent's process tree measured, its estimate
kept, and a local start held while the machine would fall under its floor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ao import config, paths
from ao.decide import placement
from ao.loop.daemon import Daemon
from ao.record.state import State
from ao.record.store import Store
from ao.world import memory

from .fleet_helpers import Env
from .helpers import run_ao


def test_a_room_keeps_its_floor_free_after_the_agents_size() -> None:
    room = placement.Room("local", 0, None, True, free_mb=2000, floor_mb=512, needs_mb=1800)
    assert not room.free and placement.choose([room]) is None
    assert "low on memory (2000 MB free, the agent takes about 1800 MB, 512 MB kept free)" in \
        placement.why_full([room])
    assert placement.Room("local", 0, None, True, 2400, 512, 1800).free


def test_a_process_tree_is_measured_whole(tmp_path: Path) -> None:
    """A parent and the child it starts (holding 64 MB): the tree's size counts both."""
    code = "import time; b = bytearray(64 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); " \
           "print('ready', flush=True); time.sleep(30)"
    parent = subprocess.Popen(["sh", "-c", f"{sys.executable} -c \"{code}\""],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
        sizes = memory.tree_rss_mb({"tree": parent.pid, "gone": 999_999_999})
        assert sizes["tree"] >= 64 and "gone" not in sizes
    finally:
        parent.kill()
        subprocess.run(["pkill", "-f", "bytearray(64"], check=False)


def test_the_daemon_measures_its_agents_and_a_start_waits_for_memory(env: Env) -> None:
    """The daemon measures a running agent's tree into AO_HOME/agent-memory.json (0600); a
    start whose agent would leave the machine under its floor waits in the queue and says
    why; with room again, it starts."""
    env.write_config(agent={"command": "cat"})
    sid = env.spawn("A-1")
    store = Store()
    d = Daemon(config.load(), store, env.server())
    d.measure_memory()
    sizes = memory.estimates()
    assert sizes.get("command", 0) > 0, sizes
    f = paths.home() / "agent-memory.json"
    assert oct(os.stat(f).st_mode & 0o777) == "0o600"
    # the agent is measured far larger than this machine's free memory
    f.write_text(json.dumps({"command": [10 ** 8]}))
    fleet = env.fleet()
    key = fleet.one_off("shop", "another task", None)
    r = fleet.spawn("shop", key)
    assert r.status == "queued" and "takes about 100000000 MB (measured)" in r.reason, r
    out = run_ao("session", "ls", "--json").out
    queued = [x for x in json.loads(out) if x["task"] == key]
    assert queued and queued[0]["state"] == "queued"
    # a wave: each start sees the same free memory; an agent started a moment ago, not grown
    # yet, counts at its size too (here 3/4 of the room: one fits, two do not)
    room_mb = (memory.available_mb() or 0) - memory.DEFAULT_FLOOR_MB
    f.write_text(json.dumps({"command": [room_mb * 3 // 4]}))
    assert memory.room("command", None) is None  # alone, it fits
    assert memory.room("command", None, starting=1) is not None
    again = fleet.start_queued(r.session or "", None)
    assert again.status == "queued", again  # A-1's session started under a minute ago
    f.write_text(json.dumps({"command": [1]}))
    started = fleet.start_queued(r.session or "", None)
    assert started.status == "spawned", started
    assert store.session(sid).state is State.WORKING
