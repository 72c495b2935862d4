from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading
from pathlib import Path

from ao import paths
from ao.record import events
from ao.record.events import Event
from ao.record.store import Store

from .helpers import retry_until, run_ao


def _writer(home: str, worker: int, n: int) -> None:
    os.environ["AO_HOME"] = home
    for i in range(n):
        events.emit(Event("test.line", project="workflow", session=f"wor-{worker}",
                          data={"i": i, "pad": "x" * 300}))


def test_concurrent_writers_never_interleave_lines(isolated_home: Path) -> None:
    home = os.environ["AO_HOME"]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(home, w, 200)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    lines = paths.events_log().read_text().splitlines()
    assert len(lines) == 800
    seen = {(json.loads(line)["session"], json.loads(line)["data"]["i"]) for line in lines}
    assert len(seen) == 800
    per_session = paths.session_dir("workflow", "wor-2") / "events.log"
    assert len(per_session.read_text().splitlines()) == 200


def test_rotation_keeps_every_line(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    for i in range(100):
        events.append_line(log, json.dumps({"i": i, "pad": "y" * 100}), max_bytes=2000, keep=50)
    files = sorted(tmp_path.glob("events.log*"))
    assert len(files) > 5
    total = sum(len(f.read_text().splitlines()) for f in files)
    assert total == 100
    assert all(f.stat().st_size <= 2000 for f in files)


def test_rotation_drops_only_the_oldest(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    for i in range(100):
        events.append_line(log, json.dumps({"i": i}), max_bytes=200, keep=2)
    kept = [json.loads(line)["i"] for f in (log.with_name("events.log.2"),
            log.with_name("events.log.1"), log) for line in f.read_text().splitlines()]
    assert kept == sorted(kept) and kept[-1] == 99 and len(kept) < 100


def test_emit_writes_store_and_files_and_dirs_are_private(isolated_home: Path) -> None:
    store = Store()
    events.emit(Event("session.spawned", "workflow", "wor-1", "AUTH-001", {"agent": "demo"}),
                store)
    rows = list(store.db.query("SELECT type, session, data FROM events"))
    assert rows == [{"type": "session.spawned", "session": "wor-1", "data": '{"agent": "demo"}'}]
    home = paths.ao_home()
    for d in (home, home / "logs", home / "sessions" / "workflow" / "wor-1"):
        assert d.stat().st_mode & 0o777 == 0o700, d


def test_follow_sees_new_events_across_rotation(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    got: list[Event] = []

    def reader() -> None:
        for ev in events.follow(log, poll=0.02, stop=5, from_start=True):
            got.append(ev)
            if len(got) == 30:
                return

    t = threading.Thread(target=reader)
    t.start()
    for i in range(30):
        events.append_line(log, Event("t", data={"i": i}).to_json(), max_bytes=400, keep=40)
        # one line at a time, as a real log grows: the reader must see each, rotation or not
        retry_until(lambda i=i: len(got) > i, timeout=5, message=f"event {i}")
    t.join(timeout=10)
    assert [e.data["i"] for e in got] == list(range(30))
    assert len(list(tmp_path.glob("events.log.*"))) >= 3


def test_events_command_filters(isolated_home: Path) -> None:
    events.emit(Event("ci.failed", "workflow", "wor-1", "AUTH-001", {"round": 1}))
    events.emit(Event("ci.passed", "workflow", "wor-2", "DB-001"))
    events.emit(Event("session.spawned", "other", "oth-1", "X-1"))
    r = run_ao("events", "-t", "ci", "--json")
    assert r.code == 0, r.err
    assert [json.loads(line)["type"] for line in r.out.splitlines()] == ["ci.failed", "ci.passed"]
    r = run_ao("events", "-s", "wor-2")
    assert "ci.passed" in r.out and "ci.failed" not in r.out
    r = run_ao("events", "-p", "other", "-n", "1")
    assert r.out.count("\n") == 1 and "session.spawned" in r.out
