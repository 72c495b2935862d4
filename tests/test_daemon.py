"""The daemon end to end: real git, real tmux, the demo agent and the local forge."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

from ao import config, paths
from ao.loop.daemon import Daemon
from ao.record.state import State
from ao.record.store import Store
from ao.world import tmux

from .fleet_helpers import Env
from .helpers import git, retry_until

pytestmark = pytest.mark.timeout(180)

TEST_A = """\
import unittest

import mod_a


class T(unittest.TestCase):
    def test_a(self):
        self.assertEqual(mod_a.a(), 1)
"""
TEST_B = TEST_A.replace("mod_a", "mod_b").replace("a()", "b()").replace("1)", "2)") \
    .replace("test_a", "test_b")


def demo(script: str) -> str:
    return f"```demo\n{script}\n```"


def write(path: str, text: str) -> str:
    return f"write {path}\n{text.rstrip()}\nEOF"


PLAN = {
    "tasks": {
        "A-1": {"title": "Add a", "body": demo("\n".join([
            write("mod_a.py", "def a():\n    return 1"), write("test_a.py", TEST_A),
            "commit A-1: add a", "push"]))},
        "B-1": {"title": "Add b", "deps": ["A-1"], "body": demo("\n".join([
            write("mod_b.py", "def b():\n    return 3"), write("test_b.py", TEST_B),
            "commit B-1: add b", "push"])) + "\n" + "```demo-on CI failed\n" + "\n".join([
                "replace mod_b.py return 3 => return 2", "commit B-1: fix b", "push"]) + "\n```"},
    }
}


def setup(env: Env, plan: dict[str, object], **project: object) -> Path:
    plan_file = env.repo / "plans" / "run.yaml"
    plan_file.write_text(json.dumps(plan))
    env.write_config(**{"ci": {"command": f"{sys.executable} -m unittest -q",
                               "timeout": "60s"}, "auto_merge": True, "require_review": False,
                        "max_concurrent": 2, **project})
    cfg = paths.config_file()
    data = json.loads(cfg.read_text())
    data.update(poll_interval="0.2s", cleanup={"grace": "0s"})
    cfg.write_text(json.dumps(data))
    return plan_file


def daemon(env: Env) -> Daemon:
    return Daemon(config.load(), Store(), env.server())


def run_until(env: Env, done: object, timeout: float = 120, restart_every: int = 0) -> Daemon:
    d = daemon(env)
    deadline = time.monotonic() + timeout
    ticks = 0
    while time.monotonic() < deadline:
        d.tick()
        ticks += 1
        if callable(done) and done():
            return d
        if restart_every and ticks % restart_every == 0:
            d = daemon(env)  # a restart: nothing but the store carries over
        time.sleep(0.1)
    events = [json.loads(x)["type"] for x in paths.events_log().read_text().splitlines()]
    raise AssertionError(f"not done after {timeout}s; events: {events[-40:]}")


def event_types(project: str = "shop") -> list[dict[str, object]]:
    return [e for e in map(json.loads, paths.events_log().read_text().splitlines())
            if e.get("project") in (project, None)]


def test_full_loop_on_the_local_forge(env: Env) -> None:
    from .helpers import run_ao

    plan_file = setup(env, PLAN)
    r = run_ao("plan", "run", str(plan_file), "--project", "shop")
    assert r.code == 0 and "2 newly queued" in r.out, r.err
    store = Store()

    def finished() -> bool:
        return all(s.state is State.CLEANED for s in store.sessions("shop")) and \
            not store.plan_runs("shop")

    run_until(env, finished)
    sessions = {s.task: s for s in store.sessions("shop")}
    assert set(sessions) == {"A-1", "B-1"}
    # B-1 waited for A-1: it started only after A-1 merged
    evs = event_types()
    order = [(e["type"], e.get("task")) for e in evs]
    assert order.index(("merged", "A-1")) < order.index(("session.started", "B-1"))
    # B-1's CI failed once, the agent was told, fixed it, and it merged
    fix = [e for e in evs if e["type"] == "ci.failed"]
    assert [(e["task"], e["data"]["round"]) for e in fix] == [("B-1", 1)]
    rounds = store.attempts(sessions["B-1"].id, "fix-ci")
    # what the agent had spent when the round was sent: what the round cost (`ao usage`)
    assert [json.loads(a["data"])["usd_at"] for a in rounds] == [0.0]
    msgs = store.messages(sessions["B-1"].id)
    assert [m["source"] for m in msgs] == ["prompt", "ci-failed"]
    assert all(m["status"] == "delivered" for m in msgs)
    assert "mod_b" in msgs[1]["body"] or "test_b" in msgs[1]["body"]
    # both merged into main on the remote, with the fix
    main = git(env.remote, "show", "main:mod_b.py")
    assert "return 2" in main
    assert git(env.remote, "show", "main:mod_a.py").strip().endswith("return 1")
    # cleaned up: no agents, no worktrees
    assert tmux.sessions(env.server()) == []
    assert len(git(env.repo, "worktree", "list").splitlines()) == 1
    complete = [e for e in evs if e["type"] == "all-complete"]
    assert len(complete) == 1 and complete[0]["data"]["merged"] == 2
    assert complete[0]["data"]["fix_rounds"] == {"A-1": 0, "B-1": 1}
    waves = [e["data"]["tasks"] for e in evs if e["type"] == "wave.started"]
    assert waves == [["A-1"], ["B-1"]]


@pytest.mark.parametrize("configured", [False, True], ids=["defaults", "configured"])
def test_retry_discipline_survives_restarts_and_pending(env: Env, configured: bool) -> None:
    """CI failing on successive heads: exactly 3 fix messages (2 with `escalate_after: 2`)
    and 1 escalation, with the daemon restarted every few polls (CI goes pending on every new
    head in between). A configured `message` opens each fix message, filled in."""
    plan = {"tasks": {"B-1": {"title": "Never green", "body": demo("\n".join([
        write("mod_b.py", "def b():\n    return 3"), write("test_b.py", TEST_B),
        "commit B-1: add b", "push"]))}}}
    rounds = 2 if configured else 3
    reactions = {"reactions": {"ci-failed": {
        "escalate_after": 2, "message": "Round {round}/{rounds} on {sha}: make it green."}}}
    plan_file = setup(env, plan, **(reactions if configured else {}))
    from .helpers import run_ao

    assert run_ao("plan", "run", str(plan_file), "--project", "shop").code == 0
    store = Store()

    def escalated() -> bool:
        return any(s.state is State.NEEDS_HUMAN for s in store.sessions("shop"))

    run_until(env, escalated, restart_every=3)
    d = daemon(env)
    for _ in range(10):  # more polls change nothing once a human has it
        d.tick()
    s = store.sessions("shop")[0]
    fixes = [m for m in store.messages(s.id) if m["source"] == "ci-failed"]
    assert len(fixes) == rounds
    assert [json.loads(a["data"])["round"] for a in store.attempts(s.id, "fix-ci")] == \
        list(range(1, rounds + 1))
    assert len(store.attempts(s.id, "escalate")) == 1
    heads = {a["fingerprint"] for a in store.attempts(s.id, "fix-ci")}
    assert len(heads) == rounds  # one round per failing head
    assert [e["type"] for e in event_types()].count("escalated") == 1
    assert store.session(s.id).note == f"CI failed after {rounds} fix rounds"
    for n, m in enumerate(fixes, start=1):
        first = m["body"].splitlines()[0]
        if configured:
            assert re.fullmatch(rf"Round {n}/2 on [0-9a-f]{{10}}: make it green\.", first), first
        else:
            assert first.startswith("CI failed on ") and f"fix round {n} of 3" in first
        assert "## Failing check" in m["body"]  # the details follow either opening


def test_paused_project_starts_nothing(env: Env) -> None:
    from .helpers import run_ao

    plan_file = setup(env, PLAN)
    assert run_ao("pause", "shop").code == 0
    assert run_ao("plan", "run", str(plan_file), "--project", "shop").code == 0
    d = daemon(env)
    for _ in range(3):
        d.tick()
    assert {s.state for s in Store().sessions("shop")} == {State.QUEUED}
    status = run_ao("status")
    assert "starts next: A-1" in status.out  # B-1 waits on A-1
    assert run_ao("resume", "shop").code == 0
    d.tick()
    retry_until(lambda: any(s.state is State.WORKING for s in Store().sessions("shop")),
                message="a start after resume")


def test_invalid_plan_edit_keeps_the_last_good_plan(env: Env) -> None:
    plan_file = setup(env, {"tasks": {"A-1": {"title": "a"}}})
    from .helpers import run_ao

    env.write_config(agent={"command": "sleep 600 # {prompt_file}"})
    assert run_ao("plan", "run", str(plan_file), "--project", "shop").code == 0
    d = daemon(env)
    d.tick()
    plan_file.write_text("tasks: {A-1: {title: a, deps: [NOPE]}}")
    d.tick()
    invalid = [e for e in event_types() if e["type"] == "plan.invalid"]
    assert len(invalid) == 1 and invalid[0]["data"]["kept"] is True
    plan_file.write_text(json.dumps({"tasks": {"A-1": {"title": "a"},
                                               "C-1": {"title": "c", "deps": ["A-1"]}}}))
    d.tick()
    assert [e["type"] for e in event_types()].count("plan.reloaded") == 1
    assert {s.task for s in Store().sessions("shop")} == {"A-1", "C-1"}


def github_ci(repo: object, sha: str) -> tuple[str, str, str]:
    """Run the unit tests of `sha` from the fake's bare repository, as Actions would."""
    import subprocess
    import tempfile

    bare = repo.bare  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["git", "clone", "-q", str(bare), tmp], check=True)
        subprocess.run(["git", "-C", tmp, "checkout", "-q", sha], check=True)
        proc = subprocess.run([sys.executable, "-m", "unittest", "-q"], cwd=tmp,
                              capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    return ("success" if proc.returncode == 0 else "failure",
            "tests passed" if proc.returncode == 0 else "tests failed", log)


@pytest.mark.parametrize("fault_rate", [0.0, 0.2])
def test_full_loop_on_fake_github(env: Env, fault_rate: float,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from ao.world.forge.github import GitHubForge

    from .fake_github import serve

    with serve() as fake:
        repo = fake.add_repo("acme/shop", env.remote)
        fake.auto_ci = github_ci
        fake.add_issue(repo, "[A-1] Add a")
        fake.add_issue(repo, "[B-1] Add b")
        setup(env, PLAN, repo="acme/shop", forge="github")
        fake.fault_rate = fault_rate
        store = Store()
        cfg = config.load()
        store.put_task("shop", "A-1", "Add a", issue_number=1)
        store.put_task("shop", "B-1", "Add b", issue_number=2)
        project = cfg.project("shop")
        gh = GitHubForge(project, store, "t0ken", base_url=fake.url, sleep=lambda _s: None)
        plan_file = env.repo / "plans" / "run.yaml"
        store.ensure_project("shop", str(env.repo), "acme/shop")
        store.start_plan_run("shop", str(plan_file))
        d = Daemon(cfg, store, env.server(), forges={"shop": gh})
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            d.tick()
            if not store.plan_runs("shop") and all(
                    s.state is State.CLEANED for s in store.sessions("shop")):
                break
            time.sleep(0.1)
        else:
            raise AssertionError([(e["type"], e.get("data")) for e in event_types()][-30:])
        # GitHub's side: both PRs merged by ao, their issues closed
        assert sorted(p["state"] for p in repo.pulls.values()) == ["merged", "merged"]
        assert all(i["state"] == "closed" for i in repo.issues.values())
        b = next(p for p in repo.pulls.values() if p["head"] == "ao/b-1")
        assert "Closes #2" in b["body"]
        assert "return 2" in git(env.remote, "show", "main:mod_b.py")
        fixes = [e for e in event_types() if e["type"] == "ci.failed"]
        assert [e["task"] for e in fixes] == ["B-1"]
        if fault_rate:
            assert fake.counts["total"] > 0


def test_kill_9_at_random_points_loses_nothing(env: Env) -> None:
    """The daemon killed with SIGKILL at random moments and started again each time: every task
    ends merged, no task gets two sessions, no message is sent twice, no round is lost."""
    import os
    import random
    import signal
    import subprocess

    from ao.loop.daemon import read_state

    from .helpers import run_ao

    # the agents take their time (they go on while the daemon is dead), so the daemon is
    # killed at least ten times, at every stage of the plan
    slow = json.loads(json.dumps(PLAN).replace("commit A-1", "sleep 6\\ncommit A-1")
                      .replace("commit B-1: add b", "sleep 6\\ncommit B-1: add b"))
    plan_file = setup(env, slow)
    assert run_ao("plan", "run", str(plan_file), "--project", "shop").code == 0
    store = Store()
    rng = random.Random(1234)
    kills = 0
    deadline = time.monotonic() + 150
    log = open(paths.logs_dir() / "chaos.log", "ab")  # noqa: SIM115
    try:
        while time.monotonic() < deadline:
            proc = subprocess.Popen([sys.executable, "-m", "ao", "daemon", "run"],
                                    stdout=log, stderr=log, start_new_session=True)
            # the random moment is counted from the daemon being up, not from its start:
            # on a loaded machine (the suite runs on every core) starting alone can take
            # longer than the whole window, and then no kill would land in a tick
            up = time.monotonic() + 20
            while time.monotonic() < up and proc.poll() is None and \
                    (read_state() or {}).get("pid") != proc.pid:
                time.sleep(0.02)
            try:
                proc.wait(timeout=rng.uniform(0.2, 1.2))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
            if not store.plan_runs("shop") and all(
                    s.state is State.CLEANED for s in store.sessions("shop")):
                break
        else:
            raise AssertionError([(e["type"], e.get("task")) for e in event_types()][-30:])
    finally:
        log.close()
    assert kills >= 10
    # every task merged exactly once, no branch leaked, nothing left half-started
    merges = git(env.remote, "log", "--merges", "--format=%s", "main").splitlines()
    assert len(merges) == 2, merges
    assert git(env.repo, "branch", "--list", "ao/*") == ""
    assert not store.sessions("shop", states={State.SPAWNING})
    sessions = store.sessions("shop")
    assert sorted(s.task for s in sessions) == ["A-1", "B-1"]  # one session per task
    for s in sessions:
        inbox = env.inbox(s.id)
        assert len(inbox) == len(set(inbox)), f"{s.id} got a message twice"
        delivered = [m for m in store.messages(s.id) if m["status"] == "delivered"]
        assert len(delivered) == len(inbox)
    b = next(s for s in sessions if s.task == "B-1")
    assert len(store.attempts(b.id, "fix-ci")) == 1
    assert "return 2" in git(env.remote, "show", "main:mod_b.py")


def test_a_start_cut_short_by_a_crash_is_undone_and_retried(env: Env) -> None:
    from ao.world import workspace

    from .helpers import run_ao

    plan_file = setup(env, PLAN)
    assert run_ao("plan", "run", str(plan_file), "--project", "shop").code == 0
    fleet = env.fleet()
    s = fleet.store.sessions("shop", task="A-1")[0]
    # what a daemon killed in the middle of starting A-1 leaves behind
    fleet.store.set_state(s.id, State.SPAWNING)
    wt = paths.worktree_path("shop", s.id)
    workspace.add_worktree(env.repo, wt, "ao/a-1", "refs/heads/main")
    fleet.store.update_session(s.id, worktree=str(wt), branch="ao/a-1")
    d = daemon(env)
    d.acquire()
    try:
        assert fleet.store.session(s.id).state is State.QUEUED
        assert not wt.exists() and not workspace.local_branch_exists(env.repo, "ao/a-1")
        d.tick()
        assert fleet.store.session(s.id).state in (State.WORKING, State.PR_OPEN)
        assert [x.id for x in fleet.store.sessions("shop", task="A-1")] == [s.id]
    finally:
        d.release()


def test_status_counts_a_closed_issue_as_done(env: Env) -> None:
    from .helpers import run_ao

    plan_file = setup(env, PLAN)
    assert run_ao("pause", "shop").code == 0
    assert run_ao("plan", "run", str(plan_file), "--project", "shop").code == 0
    Store().put_task("shop", "A-1", "Add a", issue_state="closed")  # closed as completed
    out = run_ao("status").out
    assert "starts next: B-1\n" in out  # A-1 is done by its closed issue; B-1 waits on nothing
    rows = json.loads(run_ao("plan", "status", str(plan_file), "-p", "shop", "--json").out)
    assert {r["task"]: r["waits_on"] for r in rows}["B-1"] == []


def test_a_spent_budget_starts_nothing_new_and_tells_the_agents_once(env: Env) -> None:
    """`budget_usd` reached by what the project's agents spent (their own records): no new
    session starts, each running agent is told once to wrap up, a person is told once, and
    `ao status` says why the queued tasks wait."""
    from ao.record.store import Store

    from .helpers import run_ao
    from .test_sessions import spawned

    env.write_config(budget_usd=0.5)
    sid = spawned(env, "A-1")
    store = Store()
    store.set_agent_usage(sid, model="claude-sonnet-5-5", cost_usd=0.75, input_tokens=100000)
    store.start_plan_run("shop", str(env.plan_file.resolve()))
    d = Daemon(config.load(), store, env.server())
    for _ in range(3):
        d.tick()
    running = [s for s in store.sessions("shop") if s.state not in (State.QUEUED,)]
    assert [s.task for s in running] == ["A-1"], running  # C-1 and D-1 stay queued
    told = [m for m in store.messages(sid) if m["source"] == "budget"]
    assert len(told) == 1 and "budget is spent ($0.75 of $0.50)" in told[0]["body"]
    kinds = [e["type"] for e in store.events_after(0, project="shop")]
    assert kinds.count("budget.reached") == 1
    r = run_ao("status")
    assert "budget is spent" in r.out, r.out
    env.write_config(budget_usd=5)  # raised: the queued tasks start
    d = Daemon(config.load(), store, env.server())
    d.tick()
    assert {s.task for s in store.sessions("shop") if s.state is not State.QUEUED} >= \
        {"A-1", "C-1", "D-1"}
