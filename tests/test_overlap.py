"""Don't start two agents on the same files: the decision (overlap.py) and the daemon holding
a task while a running session writes its files."""

from __future__ import annotations

import json
from pathlib import Path

from ao import config
from ao.decide import overlap
from ao.loop.daemon import Daemon
from ao.record.state import State
from ao.record.store import Store

from .fleet_helpers import Env
from .helpers import run_ao


def test_the_later_of_two_tasks_on_the_same_files_is_held() -> None:
    files = {"B": ["src/web/*.tsx"], "C": ["src/web/app.tsx"], "D": ["docs/*.md"], "E": []}
    held = overlap.hold(["B", "C", "D", "E"], files, {}, set())
    assert held == {"C": "shares src/web/app.tsx with B (starting now)"}
    # a running session's actual changes count, and the critical path is never held
    running = {"A": ("sho-1", ["docs/intro.md"])}
    assert overlap.hold(["D"], files, running, set()) == {
        "D": "shares docs/intro.md with A (sho-1)"}
    assert overlap.hold(["D"], files, running, {"D"}) == {}
    assert overlap.hold(["E"], files, running, set()) == {}  # no files declared: never held


def test_the_daemon_holds_a_task_whose_files_a_running_session_writes(env: Env) -> None:
    plan = {"tasks": {
        "A-1": {"title": "the long one", "estimate": "5d"},
        "B-1": {"title": "shared one", "estimate": "1d", "files": ["src/shared.py"]},
        "C-1": {"title": "shared two", "estimate": "1d", "files": ["src/*.py"]},
    }}
    env.plan_file.write_text(json.dumps(plan))
    env.write_config(agent={"command": "cat"})
    assert run_ao("plan", "run", str(env.plan_file), "-p", "shop").code == 0
    store = Store()
    d = Daemon(config.load(), store, env.server())
    d.tick()
    by_task = {s.task: s for s in store.sessions("shop")}
    assert by_task["A-1"].state is State.WORKING and by_task["B-1"].state is State.WORKING
    assert by_task["C-1"].state is State.QUEUED
    d.tick()  # B-1 runs now: the reason names its session
    out = run_ao("status").out
    assert f"held: shares src/shared.py with B-1 ({by_task['B-1'].id})" in out, out
    held = [e for e in store.events_after(0, project="shop") if e["type"] == "task.held"]
    assert len(held) == 1  # said once
    # B-1 ends: C-1 starts at the next tick
    assert run_ao("session", "kill", by_task["B-1"].id).code == 0
    d.tick()
    assert [s.state for s in store.sessions("shop", task="C-1")][-1] is State.WORKING
    released = [e for e in store.events_after(0, project="shop") if e["type"] == "task.released"]
    assert len(released) == 1 and "ended" in released[0]["data"]


def test_plan_show_names_predicted_overlaps_and_the_makespan_with_holds(tmp_path: Path) -> None:
    """`ao plan show` lists the tasks that may run together and share files, and the
    simulated makespan when one waits for the other (overlap: wait) beside without."""
    f = tmp_path / "p.yaml"
    f.write_text(
        "tasks:\n"
        "  FE-1: {title: login, estimate: 3d, files: [src/web/app.tsx, 'src/web/login/*']}\n"
        "  FE-2: {title: settings, estimate: 3d, files: [src/web/app.tsx]}\n"
        "  BE-1: {title: api, estimate: 2d, files: ['src/api/**']}\n"
        "  BE-2: {title: docs, estimate: 1d, deps: [BE-1], files: [src/api/docs.md]}\n")
    r = run_ao("plan", "show", str(f))
    assert r.code == 0, r.err
    assert "FE-1 and FE-2 share src/web/app.tsx" in r.out, r.out
    assert "BE-1 and BE-2" not in r.out  # one waits for the other: never together
    data = json.loads(run_ao("plan", "show", str(f), "--json").out)
    assert data["overlaps"] == [{"tasks": ["FE-1", "FE-2"], "shares": "src/web/app.tsx"}]
    assert data["makespan"]["dependency_driven"] == 3.0
    assert data["makespan"]["with_overlap_holds"] == 6.0  # one of the two waits
