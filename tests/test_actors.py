"""One actor at a time: the daemon, a person and a kill never step on each other (the race
with the real Claude Code is in test_claude_code.py)."""

from __future__ import annotations

import psutil

from ao.world import tmux

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


def test_kill_then_spawn_continues_the_work_pushed_or_not(env: Env) -> None:
    """The seed's recovery recipe, `ao session kill wor-8 && ao spawn workflow BOT-002`, on
    an agent stuck mid-task (unpushed commits, uncommitted changes): the new session takes
    over the old worktree and goes on (it failed: 'ao/a-1 is already checked out'); with
    --fresh it starts from main, the old branch under attic/ and the uncommitted work saved."""
    from pathlib import Path

    from ao import paths
    from ao.record.store import Store

    from .helpers import git, run_ao

    env.write_config(agent={"command": "cat"})  # an agent that touches nothing itself
    sid = env.spawn("A-1")
    wt = Path(Store().session(sid).worktree or "")
    (wt / "work.txt").write_text("committed, not pushed\n")
    git(wt, "add", "work.txt")
    git(wt, "commit", "-q", "-m", "A-1: half done")
    (wt / "wip.txt").write_text("not even committed\n")
    r = run_ao("session", "kill", sid)
    assert r.code == 0 and wt.is_dir(), r.out + r.err  # kept: it holds work
    r = run_ao("spawn", "shop", "A-1")
    assert r.code == 0 and "spawned" in r.out, r.out + r.err
    new = Store().sessions("shop", task="A-1")[-1]
    assert new.id != sid and new.worktree is not None
    nwt = Path(new.worktree)
    assert (nwt / "work.txt").exists() and (nwt / "wip.txt").read_text() == "not even committed\n"
    assert "A-1: half done" in git(nwt, "log", "--oneline", "-3")
    assert not wt.exists() and Store().session(sid).worktree is None
    # --fresh: from the default branch; nothing lost
    assert run_ao("session", "kill", new.id).code == 0
    r = run_ao("spawn", "shop", "A-1", "--fresh")
    assert r.code == 0 and "spawned" in r.out, r.out + r.err
    fresh = Store().sessions("shop", task="A-1")[-1]
    fwt = Path(fresh.worktree or "")
    assert not (fwt / "work.txt").exists() and not (fwt / "wip.txt").exists()
    attic = git(env.repo, "branch", "--list", "attic/*").split()
    assert attic and "A-1: half done" in git(env.repo, "log", "--oneline", attic[-1])
    saved = list((paths.session_dir("shop", new.id) / "saved").glob("*.patch"))
    assert saved and "not even committed" in saved[0].read_text()


def test_a_zombie_counts_as_gone(tmp_path: object) -> None:
    """An agent that has exited but is not reaped yet (an orphan where no init reaps it)
    has ended: a stop does not wait out its grace on it (psutil's wait_procs counted it
    alive, and each merge's record waited 2 s)."""
    import subprocess

    from ao import paths

    child = subprocess.Popen(["true"])  # never waited for: a zombie once it exits
    zombie = psutil.Process(child.pid)
    import time

    deadline = time.monotonic() + 10
    while zombie.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.01)
    assert zombie.status() == psutil.STATUS_ZOMBIE
    assert paths.wait_gone([zombie], 5.0) == []  # (not this process's to reap there)
    child.wait()


def test_a_crash_between_a_merge_and_its_record_is_finished_once(
        env: Env, monkeypatch: object) -> None:
    """A daemon killed within moments of a merge lost the steps after it (30 of 96 merges in
    a crash battery): no `merged` event or hook, the task never closed. The record is
    finished by the next daemon, once."""
    import json
    import sys

    import pytest

    from ao import config, paths
    from ao.loop.daemon import Daemon
    from ao.record.state import State
    from ao.record.store import Store
    from ao.services import merging

    from .helpers import retry_until, run_ao
    from .test_daemon import PLAN

    mp = pytest.MonkeyPatch()
    env.plan_file.write_text(json.dumps({"tasks": {"A-1": PLAN["tasks"]["A-1"]}}))
    env.write_config(auto_merge=True, require_review=False,
                     ci={"command": f"{sys.executable} -m unittest -q"})
    hook = paths.home() / "hooks" / "merged"
    hook.parent.mkdir()
    ran = paths.home() / "hook-ran"
    hook.write_text(f"#!/bin/sh\necho x >> {ran}\n")
    hook.chmod(0o755)
    assert run_ao("plan", "run", str(env.plan_file), "-p", "shop").code == 0
    store = Store()

    class Killed(BaseException):
        pass

    def killed(*_: object) -> None:
        raise Killed  # the process dies here: after the merge, before its record

    mp.setattr(merging, "finish_record", killed)
    d = Daemon(config.load(), store, env.server())

    def merged_then_killed() -> bool:
        try:
            d.tick()
        except Killed:
            return True
        return False

    retry_until(merged_then_killed, timeout=60, interval=0.3, message="the merge")
    mp.undo()
    s = store.sessions("shop", task="A-1")[-1]
    assert s.state is State.MERGED and not ran.exists()
    assert store.task("shop", "A-1")["issue_state"] != "closed"
    again = Daemon(config.load(), Store(), env.server())
    again.acquire()
    try:
        assert Store().task("shop", "A-1")["issue_state"] == "closed"
        types = [e["type"] for e in Store().session_events(s.id)]
        assert types.count("merged") == 1
        again.finish_merge_records()  # and a second start does nothing more
        assert [e["type"] for e in Store().session_events(s.id)].count("merged") == 1
        assert ran.read_text() == "x\n"
    finally:
        again.release()
    merging.wait_for_stops()


def test_a_kill_cut_short_is_finished_never_undone(env: Env) -> None:
    """A kill interrupted after it stopped the agent (Ctrl-C, a closed terminal) left an
    exited agent in a live session: the daemon's next tick restored it. Its intent is
    recorded first, so the tick finishes the kill instead, once."""
    import pytest

    from ao import config
    from ao.loop.daemon import Daemon
    from ao.record.state import State
    from ao.record.store import Store
    from ao.services import ending

    env.write_config(agent={"command": "cat"})
    sid = env.spawn("A-1")
    fleet = env.fleet()
    real = ending.teardown

    def cut_short(srv: object, *_: object, **__: object) -> None:
        tmux.kill_session(fleet.server(fleet.store.session(sid)), sid)  # the agent stopped
        raise KeyboardInterrupt  # ... and then the person's Ctrl-C, before the record

    mp = pytest.MonkeyPatch()
    mp.setattr(ending, "teardown", cut_short)
    with pytest.raises(KeyboardInterrupt):
        fleet.kill(sid)
    mp.undo()
    assert ending.teardown is real
    store = Store()
    assert store.session(sid).state is State.WORKING  # cut short: nothing recorded yet
    d = Daemon(config.load(), store, env.server())
    for _ in range(2):
        d.tick()
    assert store.session(sid).state is State.KILLED
    assert sid not in tmux.sessions(env.server())  # not restored
    kinds = [e["type"] for e in store.session_events(sid)]
    assert "agent.restored" not in kinds and kinds.count("session.killed") == 1, kinds
    assert kinds.count("session.recovered") == 1


def test_held_messages_of_many_sessions_go_out_beside_the_tick(env: Env) -> None:
    """Held messages were delivered one session after another inside the tick (150 reminders:
    a 42 s tick). The tick hands them to deliveries that go on beside it, side by side, each
    session's in order, and returns at once: it does not wait for them."""
    from ao import config
    from ao.loop.daemon import Daemon
    from ao.record.state import Activity
    from ao.record.store import Store

    from .helpers import retry_until

    env.write_config(max_concurrent=6)  # the demo agent: its prompt says when it is idle
    sids = [env.spawn(k) for k in ("A-1", "C-1", "D-1")]
    fleet = env.fleet()
    for sid in sids:
        retry_until(lambda sid=sid: fleet.observe(fleet.store.session(sid)) is Activity.IDLE,
                    timeout=30, message=f"{sid} idle")
    store = Store()
    for sid in sids:  # the next goes when the agent is idle again: one each is the tick's
        store.queue_message(sid, f"held for {sid}", "user")
    d = Daemon(config.load(), store, env.server())
    d.tick()
    going = [m["status"] for sid in sids for m in store.messages(sid) if m["source"] == "user"]
    assert set(going) & {"queued", "sending"}, going  # the tick did not wait for them
    assert d.deliveries.settle(30)
    d.deliveries.close()
    for sid in sids:
        rows = [m for m in store.messages(sid) if m["source"] == "user"]
        assert [m["status"] for m in rows] == ["delivered"], (sid, rows)
        assert f"held for {sid}" in tmux.capture(env.server(), sid)
