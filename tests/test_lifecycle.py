"""The task lifecycle as a user meets it: the README's path, done means merged, respawning,
re-running a plan, escalations that resolve, a spawn that always fails, sessions by key."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ao import config, paths
from ao.decide import scheduler
from ao.decide.plan import parse
from ao.decide.reactions import History, Observation, Policy, decide
from ao.loop.daemon import Daemon
from ao.record.forge import PASSING, CheckSummary, PullRequest
from ao.record.state import Activity, Outcome, State
from ao.record.store import Store

from .fleet_helpers import Env
from .helpers import git, retry_until, run_ao
from .test_daemon import PLAN, TEST_A, demo, write

pytestmark = pytest.mark.timeout(180)


def test_readme_path_from_a_fresh_home_ends_with_the_plan_merged(repo: Path,
                                                                  tmp_path: Path) -> None:
    """`ao init`, edit the starter as docs/quickstart.md says, `ao start`, `ao plan run`:
    run as a user would, each command a real process, the daemon in its own tmux."""
    r = run_ao("init", "--name", "shop", cwd=repo)
    assert r.code == 0 and "registered" in r.out, r.err
    starter = repo / "agent-orchestrator.yaml"
    text = starter.read_text()
    text = text.replace("agent: claude-code", "agent: demo")
    text = text.replace("# poll_interval: 30s", "poll_interval: 1s")
    text = text.replace("    max_concurrent: 5",
                        "    max_concurrent: 5\n    auto_merge: true\n    require_review: false\n"
                        f"    ci: {{command: \"{sys.executable} -m unittest -q\"}}")
    starter.write_text(text)
    (repo / "plans").mkdir()
    plan = {"project": "shop", **PLAN}
    (repo / "plans" / "shop.yaml").write_text(json.dumps(plan))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "ao config and plan")
    git(repo, "push", "-q", "origin", "main")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # `ao status` outside the repo sees the project too: the daemon and the CLI agree
    assert "shop" in run_ao("config", "show", cwd=elsewhere).out
    try:
        r = run_ao("start", cwd=repo)
        assert r.code == 0 and "daemon started" in r.out, r.err
        r = run_ao("plan", "run", "plans/shop.yaml", cwd=repo)
        assert r.code == 0 and "2 newly queued on shop" in r.out, r.err

        def all_done() -> bool:
            rows = json.loads(run_ao("plan", "status", "plans/shop.yaml", "--json",
                                     cwd=repo).out)
            return all(row["state"] == "done" for row in rows)

        retry_until(all_done, timeout=120, interval=0.5, message="the plan merged")
        # running the plan again queues nothing: every task is merged
        again = run_ao("plan", "run", "plans/shop.yaml", cwd=repo)
        assert "0 newly queued" in again.out and "2 already done" in again.out, again.out
        log = paths.events_log().read_text()
        assert log.count('"type": "config.reloaded"') == 0  # reading is not a change
    finally:
        run_ao("stop", cwd=repo)
        subprocess.run(["tmux", "-L", "ao", "kill-server"], capture_output=True)
    merges = git(repo.parent / "remote.git", "log", "--merges", "--format=%s", "main")
    assert len(merges.splitlines()) == 2, merges


def test_killed_then_cleaned_work_never_unblocks_a_dependent(env: Env) -> None:
    fleet = env.fleet()
    plan = fleet.plan_for(fleet.cfg.project("shop"))
    assert plan is not None
    sid = env.spawn("A-1")
    fleet.kill(sid, force=True)
    assert run_ao("session", "cleanup", "--all", "--yes").code == 0
    s = fleet.store.session(sid)
    assert (s.state, s.outcome) == (State.CLEANED, Outcome.ABANDONED)
    tasks = scheduler.by_task(fleet.store.sessions("shop"))
    assert scheduler.done_tasks(tasks, set()) == set()
    queued = fleet.spawn("shop", "B-1", plan)
    assert queued.status == "queued" and "waits on A-1" in queued.reason
    rows = json.loads(run_ao("plan", "status", str(env.plan_file), "-p", "shop", "--json").out)
    assert {row["task"]: row["state"] for row in rows}["A-1"] != "done"


def test_a_merged_task_refuses_to_spawn_without_force(env: Env) -> None:
    store = Store()
    s = store.create_session("shop", "sho", "A-1", state=State.SPAWNING)
    store.set_state(s.id, State.WORKING)
    store.set_state(s.id, State.MERGED)
    assert store.session(s.id).outcome is Outcome.MERGED
    r = run_ao("spawn", "shop", "A-1")
    assert r.code == 0 and "already merged by sho-1; --force" in r.out, (r.out, r.err)
    store.set_state(s.id, State.CLEANED)
    assert store.session(s.id).outcome is Outcome.MERGED  # cleaning keeps the outcome


def test_plan_run_is_idempotent_and_picks_up_tasks_added_later(env: Env) -> None:
    r = run_ao("plan", "run", str(env.plan_file), "-p", "shop")
    assert r.code == 0, r.err
    n = int(r.out.split("tasks, ")[1].split()[0])
    again = run_ao("plan", "run", str(env.plan_file), "-p", "shop")
    assert "0 newly queued" in again.out, again.out
    store = Store()
    assert len(store.sessions("shop")) == n
    # a task added to the plan while it runs is queued by the daemon's next tick
    data = env.plan_file.read_text()
    plan = parse(data)
    extra = {k: {"title": t.title, "deps": list(t.deps), "body": t.body}
             for k, t in plan.tasks.items()}
    extra["LATE-1"] = {"title": "Added later", "body": "late"}
    env.plan_file.write_text(json.dumps({"tasks": extra}))
    d = Daemon(config.load(), store, env.server())
    store.set_paused("shop", True)  # queue only, start nothing
    d.tick()
    assert [s.state for s in store.sessions("shop", task="LATE-1")] == [State.QUEUED]


def _pr(**kw: object) -> PullRequest:
    base: dict[str, object] = dict(number=1, url="u", state="open", head_branch="ao/a-1",
                                   head_sha="abc", mergeable="mergeable",
                                   checks=CheckSummary(PASSING, ()), reviews=(("r", "approved"),))
    base.update(kw)
    return PullRequest(**base)  # type: ignore[arg-type]


def test_an_escalation_resolves_when_its_cause_goes_away() -> None:
    policy = Policy(auto_merge=True)
    escalated = History(escalated_for="ci-exhausted", ci_rounds=("a", "b", "c"))
    still = _pr(checks=CheckSummary("failing", ()))
    assert decide(Observation(State.NEEDS_HUMAN, Activity.IDLE, 0, still), escalated,
                  policy) == []
    fixed = _pr()  # the human pushed a fix: green, approved, mergeable
    actions = decide(Observation(State.NEEDS_HUMAN, Activity.IDLE, 0, fixed), escalated, policy)
    assert [(a.kind, a.state) for a in actions] == [("resume", State.PR_OPEN)]
    # after a hand-back the same trouble escalates again (a new fingerprint), with a fresh
    # budget of fix rounds first
    resumed = History(escalated_for="ci-exhausted", ci_rounds=("a", "b", "c"), resumes=1,
                      done=frozenset({"escalate:ci-exhausted:0"}))
    failing = _pr(head_sha="d", checks=CheckSummary("failing", ()))
    kinds = [a.kind for a in decide(Observation(State.PR_OPEN, Activity.IDLE, 0, failing),
                                    resumed, policy)]
    assert kinds == ["fix-ci"]
    spent = History(ci_rounds=tuple("abcdef"), resumes=1)
    esc = decide(Observation(State.PR_OPEN, Activity.IDLE, 0, _pr(
        head_sha="g", checks=CheckSummary("failing", ()))), spent, policy)
    assert [(a.kind, a.fingerprint) for a in esc] == [("escalate", "escalate:ci-exhausted:1")]


def test_session_resume_by_hand(env: Env) -> None:
    store = Store()
    s = store.create_session("shop", "sho", "A-1", state=State.SPAWNING)
    store.set_state(s.id, State.WORKING)
    store.set_state(s.id, State.NEEDS_HUMAN, note="stuck")
    r = run_ao("session", "resume", "A-1")  # by task key
    assert r.code == 0 and "sho-1 resumed (working)" in r.out, r.err
    assert store.attempts(s.id, "resume")
    r = run_ao("session", "resume", "A-1")
    assert r.code == 2 and r.err.count("\n") == 1 and "not waiting for a human" in r.err


def test_a_spawn_that_always_fails_is_retried_with_backoff_then_escalated(env: Env) -> None:
    env.write_config(post_create=["false"])
    store = Store()
    assert run_ao("plan", "run", str(env.plan_file), "-p", "shop").code == 0
    now = [time.time()]
    d = Daemon(config.load(), store, env.server(), clock=lambda: now[0])
    for _ in range(12):  # 12 ticks, each a minute apart: 3 tries, then a human is asked
        d.tick()
        now[0] += 60
    failed = [s for s in store.sessions("shop", task="A-1") if s.outcome is Outcome.FAILED]
    assert len(failed) == scheduler.SPAWN_TRIES, [s.state for s in failed]
    log = paths.events_log().read_text().splitlines()
    escalations = [e for e in (json.loads(x) for x in log if '"escalated"' in x)
                   if e["task"] == "A-1"]
    assert len(escalations) == 1 and "failed to start 3 times" in \
        escalations[0]["data"]["reason"]
    assert not store.sessions("shop", states={State.QUEUED}, task="A-1")


def test_commands_take_a_task_key(env: Env) -> None:
    fleet = env.fleet()
    r = fleet.spawn("shop", "A-1", fleet.plan_for(fleet.cfg.project("shop")))
    assert r.status == "spawned"
    out = run_ao("send", "A-1", "hello from the key")
    assert out.code in (0, 3), out.err
    assert run_ao("logs", "shop/A-1", "--events").code == 0
    bad = run_ao("send", "NOPE-9", "x")
    assert bad.code == 2 and "no session or task NOPE-9" in bad.err


def test_plan_check_refuses_keys_that_share_a_branch(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("tasks:\n  X-1: {title: a}\n  x-1: {title: b}\n  '1': {title: c}\n"
                 "  '#1': {title: d}\n")
    r = run_ao("plan", "check", str(f))
    assert r.code == 2 and "x-1: the same task as X-1" in r.out + r.err


def test_merge_by_ao_starts_dependents_in_the_same_tick(env: Env) -> None:
    """A PR seen green merges in the tick that sees it, and the dependent starts in it too."""
    plan = {"tasks": {
        "A-1": {"title": "Add a", "body": demo("\n".join([
            write("mod_a.py", "def a():\n    return 1"), write("test_a.py", TEST_A),
            "commit A-1: add a", "push"]))},
        "B-1": {"title": "B", "deps": ["A-1"], "body": "nothing to do"}}}
    env.plan_file.write_text(json.dumps(plan))
    env.write_config(ci={"command": "true"}, auto_merge=True, require_review=False)
    store = Store()
    assert run_ao("plan", "run", str(env.plan_file), "-p", "shop").code == 0
    d = Daemon(config.load(), store, env.server())
    d.tick()  # starts A-1
    a = store.sessions("shop", task="A-1")[0]
    retry_until(lambda: git(env.remote, "branch", "--list", "ao/a-1"), timeout=30,
                message="A-1 pushed")
    d.tick()  # sees the PR, starts CI
    retry_until(lambda: (store.local_ci("shop", git(env.remote, "rev-parse", "ao/a-1")) or
                         {}).get("status") == "passing", timeout=30, message="CI")
    d.tick()  # merges, and starts B-1 in the same tick
    assert store.session(a.id).state is State.MERGED
    b = store.sessions("shop", task="B-1")[-1]
    assert b.state in (State.WORKING, State.SPAWNING), b.state
    # the merged agent was stopped at once; its worktree stays for the grace period
    assert not env.server().has_session(a.id)



def test_a_one_off_task_needs_no_plan_entry(env: Env) -> None:
    r = run_ao("spawn", "shop", "--prompt", "Tidy the README\nand nothing else",
               "--title", "Tidy")
    assert r.code == 0 and "TASK-1" in r.out and "spawned" in r.out, (r.out, r.err)
    s = Store().find_session("TASK-1")
    assert (s.title, s.branch) == ("Tidy", "ao/task-1")
    prompt = (paths.session_dir("shop", s.id) / "prompt.md").read_text()
    assert "Tidy the README" in prompt
    bad = run_ao("spawn", "shop")
    assert bad.code == 2 and "--prompt" in bad.err


def tick_until_limited(d: Daemon, store: Store, sid: str) -> None:
    def limited() -> bool:
        d.tick()
        return store.session(sid).activity == "limited"

    retry_until(limited, timeout=30, interval=0.3, message="the limit seen")


def test_a_usage_limit_holds_the_agent_and_new_spawns_then_continues(env: Env) -> None:
    """The demo agent prints Claude Code's limit line: the session is `limited` until the
    reset (no nudge, no escalation), one notification says so, no new session of that agent
    starts, and at the reset the agent is told to continue."""
    plan = {"tasks": {
        "A-1": {"title": "a", "body": demo("limit 30") + "\n```demo-on continue\n"
                + "\n".join([write("a.txt", "a"), "commit A-1: a", "push"]) + "\n```"},
        "B-1": {"title": "b", "body": "independent"}}}
    env.plan_file.write_text(json.dumps(plan))
    env.write_config(max_concurrent=1)
    store = Store()
    assert run_ao("plan", "run", str(env.plan_file), "-p", "shop").code == 0
    now = [time.time()]
    d = Daemon(config.load(), store, env.server(), clock=lambda: now[0])
    d.tick()
    a = store.sessions("shop", task="A-1")[0]

    tick_until_limited(d, store, a.id)
    s = store.session(a.id)
    assert s.limited_until and s.limited_until - time.time() > 25 * 60
    env.write_config(max_concurrent=2)
    d.reload_config()
    d.tick()
    assert [x.state for x in store.sessions("shop", task="B-1")] == [State.QUEUED]
    log = paths.events_log().read_text()
    assert log.count('"attention.limited"') == 1 and '"spawn.held"' in log
    now[0] = s.limited_until + 1  # the reset: the daemon says continue
    d.tick()
    msgs = [m for m in store.messages(a.id) if m["source"] == "limit-reset"]
    assert [m["body"] for m in msgs] == ["continue"]


def test_ctrl_c_in_batch_spawn_rolls_back_and_reports(env: Env) -> None:
    """A real SIGINT to a real `ao batch-spawn`: the start in hand is rolled back, the ones
    handed to agents finish, the rest are reported as not started, the summary is printed,
    exit 130; nothing is left half-made."""
    import signal

    env.write_config(post_create=["sleep 1"])
    proc = subprocess.Popen([sys.executable, "-m", "ao", "batch-spawn", "shop", "--plan",
                             str(env.plan_file), "--force"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)  # the first task or two started, one in hand
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err and "spawned" in err, err  # the summary
    assert "not started: interrupted" in out, out
    store = Store()
    assert not store.sessions("shop", states={State.SPAWNING})
    alive = [s for s in store.sessions("shop") if s.state is not State.CLEANED]
    wts = paths.ao_home() / "worktrees" / "shop"
    made = {p.name for p in wts.iterdir()} if wts.exists() else set()
    assert made <= {s.id for s in alive}, (made, alive)  # no half-made worktree
    branches = {b.strip(" *+") for b in git(env.repo, "branch", "--list", "ao/*").splitlines()}
    assert branches <= {f"ao/{s.task.lower()}" for s in alive}, branches  # no stray branch


def test_new_sessions_take_the_fallback_agent_while_limited(env: Env) -> None:
    plan = {"tasks": {"A-1": {"title": "a", "body": demo("limit 30")},
                      "B-1": {"title": "b", "body": "independent"}}}
    env.plan_file.write_text(json.dumps(plan))
    env.write_config(max_concurrent=1,
                     agent={"name": "demo", "command": "cat", "fallback": "command"})
    store = Store()
    assert run_ao("plan", "run", str(env.plan_file), "-p", "shop").code == 0
    d = Daemon(config.load(), store, env.server())
    d.tick()
    a = store.sessions("shop", task="A-1")[0]

    tick_until_limited(d, store, a.id)
    env.write_config(max_concurrent=2,
                     agent={"name": "demo", "command": "cat", "fallback": "command"})
    d.reload_config()
    d.tick()
    b = store.sessions("shop", task="B-1")[-1]
    assert (b.state, b.agent) == (State.WORKING, "command"), (b.state, b.agent)
    assert '"spawn.fallback"' in paths.events_log().read_text()


def test_a_killed_task_stays_stopped_until_someone_starts_it(env: Env) -> None:
    """Kill means stop: the daemon does not queue a task again whose latest session a human
    killed (before, a killed plan task came back as a new session at the next tick)."""
    fleet = env.fleet()
    plan = fleet.plan_for(fleet.cfg.project("shop"))
    assert plan is not None
    fleet.kill(env.spawn("C-1"), force=True)
    tasks = scheduler.by_task(fleet.store.sessions("shop"))
    assert tasks["C-1"].held
    assert "C-1" not in scheduler.to_queue(plan, tasks, set(), time.time())
    status = json.loads(run_ao("status", "--json").out)
    assert status["projects"]["shop"]["stopped"] == ["C-1"]  # said, not silent
    again = fleet.spawn("shop", "C-1", plan)  # a human starts it again
    assert again.status == "spawned", again.reason
    tasks = scheduler.by_task(fleet.store.sessions("shop"))
    assert not tasks["C-1"].held
