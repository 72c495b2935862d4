"""Sessions against real git, real tmux and the demo agent."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ao import paths
from ao.errors import BadInput, ExternalError
from ao.record.state import Activity, State
from ao.record.store import Store
from ao.services.messaging import Messenger
from ao.world import remotes, tmux, workspace

from .fleet_helpers import Env
from .helpers import git, retry_until, run_ao

pytestmark = pytest.mark.timeout(120)


def worktrees(repo: Path) -> list[str]:
    return [ln for ln in git(repo, "worktree", "list", "--porcelain").splitlines()
            if ln.startswith("worktree ")]


def assert_nothing_left(env: Env, task: str = "A-1") -> None:
    fleet = env.fleet()
    assert fleet.store.sessions("shop", task=task) == []
    assert len(worktrees(env.repo)) == 1
    assert not workspace.local_branch_exists(env.repo, f"ao/{task.lower()}")
    assert tmux.sessions(fleet.srv) == []
    wt_dir = paths.ao_home() / "worktrees" / "shop"
    assert not wt_dir.exists() or list(wt_dir.iterdir()) == []
    sess_dir = paths.ao_home() / "sessions" / "shop"
    assert not sess_dir.exists() or list(sess_dir.iterdir()) == []


def test_spawn_then_kill_leaves_nothing_behind(env: Env) -> None:
    fleet = env.fleet()
    r = fleet.spawn("shop", "A-1", fleet.plan_for(fleet.cfg.project("shop")))
    assert (r.status, r.session) == ("spawned", "sho-1"), r.reason
    s = fleet.store.session("sho-1")
    assert s.state is State.WORKING and s.branch == "ao/a-1"
    wt = Path(s.worktree or "")
    assert wt == paths.worktree_path("shop", "sho-1") and wt.is_dir()
    # the demo agent got the first prompt, committed and pushed its branch
    prompt = (paths.session_dir("shop", "sho-1") / "prompt.md").read_text()
    assert env.inbox("sho-1") == [prompt.strip("\n")]
    retry_until(lambda: remotes.remote_branch_exists(env.repo, "origin", "ao/a-1"),
                message="the agent's push")
    retry_until(lambda: fleet.observe(fleet.store.session("sho-1")) is not Activity.ACTIVE,
                timeout=15, message="the agent to finish")
    assert tmux.pane(fleet.srv, "sho-1") is not None
    out = fleet.kill("sho-1")
    assert out["worktree"] == "removed"
    assert not wt.exists()
    assert len(worktrees(env.repo)) == 1
    assert tmux.sessions(fleet.srv) == []
    assert fleet.store.session("sho-1").state is State.KILLED
    types = [json.loads(line)["type"] for line in
             (paths.session_dir("shop", "sho-1") / "events.log").read_text().splitlines()]
    assert types[:2] == ["post-create", "session.started"] and "session.spawned" in types
    assert types[-1] == "session.killed"


def test_dependencies_queue_and_force(env: Env) -> None:
    fleet = env.fleet()
    plan = fleet.plan_for(fleet.cfg.project("shop"))
    r = fleet.spawn("shop", "B-1", plan)
    assert r.status == "queued" and "A-1" in r.reason
    assert fleet.store.session(r.session or "").state is State.QUEUED
    assert not workspace.local_branch_exists(env.repo, "ao/b-1")
    again = fleet.spawn("shop", "B-1", plan)
    assert again.status == "skipped" and r.session in again.reason


def test_max_concurrent_queues_the_rest_critical_path_first(env: Env) -> None:
    env.write_config(max_concurrent=1)
    fleet = env.fleet()
    plan = fleet.plan_for(fleet.cfg.project("shop"))
    results = fleet.batch_spawn("shop", ["C-1", "A-1", "D-1"], plan)
    # A-1 heads the longest chain (A-1 -> B-1), so it goes first
    assert [(r.task, r.status) for r in results] == [
        ("A-1", "spawned"), ("C-1", "queued"), ("D-1", "queued")]
    assert "max_concurrent" in results[1].reason


@pytest.mark.parametrize("key", ["../../etc", "has space", "x\x1b[2J"])
def test_unsafe_task_key_refused_before_anything_is_made(env: Env, key: str) -> None:
    fleet = env.fleet()
    with pytest.raises(BadInput, match="not safe"):
        fleet.spawn("shop", key, None)
    assert fleet.store.sessions() == []
    assert not (paths.ao_home() / "worktrees").exists()
    r = run_ao("spawn", "shop", key)
    assert r.code == 2 and "not safe" in r.err and r.err.count("\n") == 1


def test_existing_branch_is_continued_or_moved_aside(env: Env) -> None:
    git(env.repo, "checkout", "-q", "-b", "ao/a-1")
    (env.repo / "earlier.txt").write_text("an earlier session's work\n")
    git(env.repo, "add", "-A")
    git(env.repo, "commit", "-q", "-m", "earlier work")
    git(env.repo, "push", "-q", "origin", "ao/a-1")
    git(env.repo, "checkout", "-q", "main")
    fleet = env.fleet()
    plan = fleet.plan_for(fleet.cfg.project("shop"))
    r = fleet.spawn("shop", "A-1", plan)
    assert r.status == "spawned" and "continues ao/a-1 (1 commit(s) ahead" in r.reason, r.reason
    wt = Path(fleet.store.session(r.session or "").worktree or "")
    assert (wt / "earlier.txt").exists()
    # killed: what the agent left is saved, the earlier work is on the remote; the worktree and
    # the local branch go
    assert fleet.kill(r.session or "", force=True)["branch"] == "deleted"
    again = fleet.spawn("shop", "A-1", plan)
    assert again.status == "spawned" and "continues ao/a-1" in again.reason, again.reason
    assert (Path(fleet.store.session(again.session or "").worktree or "") / "earlier.txt").exists()
    fleet.kill(again.session or "", force=True)
    fresh = fleet.spawn("shop", "A-1", plan, fresh=True)
    assert fresh.status == "spawned" and "moved to attic/ao/a-1-" in fresh.reason, fresh.reason
    wt = Path(fleet.store.session(fresh.session or "").worktree or "")
    assert not (wt / "earlier.txt").exists()
    # nothing was lost: the old branch is on the remote under attic/
    assert "attic/ao/a-1-" in git(env.repo, "ls-remote", "--heads", "origin")


@pytest.mark.parametrize("breakage", ["post_create", "symlink", "worktree_path", "agent_exits",
                                      "prompt_not_taken"])
def test_failure_at_each_step_rolls_back_completely(env: Env, breakage: str) -> None:
    if breakage == "post_create":
        env.write_config(post_create=["true", "echo broken >&2; exit 4"])
    elif breakage == "symlink":
        env.write_config(symlinks=[".env-missing"])
    elif breakage == "worktree_path":
        (paths.worktrees_dir("shop") / "sho-1").mkdir()
        (paths.worktrees_dir("shop") / "sho-1" / "keep.txt").write_text("not ours")
    elif breakage == "agent_exits":
        env.write_config(agent={"command": "echo cannot start; exit 3"})
    elif breakage == "prompt_not_taken":
        # a program that shows output but never takes input: the paste stays on screen
        env.write_config(agent={"command": "echo ready; exec sleep 60"})
    fleet = env.fleet()
    r = fleet.spawn("shop", "A-1", fleet.plan_for(fleet.cfg.project("shop")))
    assert r.status == "failed", r
    if breakage == "worktree_path":
        # the folder that was in the way is not ours: it stays, and nothing else is made
        assert (paths.worktrees_dir("shop") / "sho-1" / "keep.txt").exists()
        assert fleet.store.sessions() == [] and len(worktrees(env.repo)) == 1
        assert not workspace.local_branch_exists(env.repo, "ao/a-1")
        return
    assert_nothing_left(env)
    failed = [json.loads(line) for line in paths.events_log().read_text().splitlines()
              if json.loads(line)["type"] == "spawn.failed"]
    assert len(failed) == 1 and failed[0]["data"]["undo_errors"] == []


def test_agent_not_installed_fails_cleanly(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import shutil

    # the gemini CLI is installed where `.ci/run` ran: take its folder off PATH
    gemini = shutil.which("gemini")
    if gemini:
        folder = os.path.dirname(gemini)
        monkeypatch.setenv("PATH", os.pathsep.join(
            d for d in os.environ["PATH"].split(os.pathsep) if d != folder))
    env.write_config(agent="gemini")
    fleet = env.fleet()
    r = fleet.spawn("shop", "A-1", fleet.plan_for(fleet.cfg.project("shop")))
    assert r.status == "failed" and "not installed" in r.reason
    assert_nothing_left(env)


def test_concurrent_batch_spawns_start_each_task_once(env: Env) -> None:
    env.write_config(max_concurrent=10)
    cmd = [sys.executable, "-m", "ao", "batch-spawn", "shop", "A-1", "C-1", "D-1"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=90) for p in procs]
    fleet = env.fleet()
    sessions = fleet.store.sessions("shop")
    assert sorted(s.task for s in sessions) == ["A-1", "C-1", "D-1"], outs
    assert all(s.state is State.WORKING for s in sessions)
    lines = "".join(o for o, _ in outs).splitlines()
    assert sum("spawned" in ln for ln in lines) == 3, outs
    assert sum("skipped" in ln for ln in lines) == 3, outs
    assert len(tmux.sessions(fleet.srv)) == 3


def wait_activity(env: Env, sid: str, activity: Activity, timeout: float = 10) -> None:
    fleet = env.fleet()
    retry_until(lambda: fleet.observe(fleet.store.session(sid)) is activity, timeout=timeout,
                message=f"{sid} to be {activity}")


def spawned(env: Env, task: str = "A-1") -> str:
    fleet = env.fleet()
    r = fleet.spawn("shop", task, fleet.plan_for(fleet.cfg.project("shop")))
    assert r.status == "spawned", r.reason
    assert r.session
    retry_until(lambda: "✓ done" in tmux.capture(fleet.srv, r.session or ""), timeout=20,
                message="the first prompt's work")
    return r.session


def test_long_multiline_message_arrives_whole(env: Env) -> None:
    sid = spawned(env)
    text = ("\n".join(f"line {i:03d} " + "x" * 40 for i in range(101)))[:4999] + "!"
    assert len(text) == 5000
    r = Messenger(env.fleet()).send(sid, text)
    assert r.status == "delivered", r.detail
    assert env.inbox(sid)[-1] == text


def test_escape_sequences_never_reach_the_agent(env: Env) -> None:
    sid = spawned(env)
    text = "fix the build\x1b]52;c;ZXZpbCBjbGlwYm9hcmQ=\x07 now\x1b[2J please\x1b[31m!"
    r = Messenger(env.fleet()).send(sid, text)
    assert r.status == "delivered", r.detail
    assert env.inbox(sid)[-1] == "fix the build now please!"


def test_busy_agent_gets_the_message_when_idle(env: Env) -> None:
    sid = spawned(env)
    fleet = env.fleet()
    m = Messenger(fleet)
    assert m.send(sid, "```demo\nsleep 4\n```").status == "delivered"
    wait_activity(env, sid, Activity.ACTIVE)
    r = m.send(sid, "and then this")
    assert (r.status, r.detail) == ("queued", "busy")
    assert env.inbox(sid)[-1].startswith("```demo")
    wait_activity(env, sid, Activity.IDLE, timeout=15)
    delivered = m.deliver_queued(sid)
    assert [d.status for d in delivered] == ["delivered"]
    assert env.inbox(sid)[-1] == "and then this"


def test_never_paste_into_a_permission_prompt(env: Env) -> None:
    sid = spawned(env)
    fleet = env.fleet()
    m = Messenger(fleet)
    assert m.send(sid, "```demo\nask Delete the database?\n```").status == "delivered"
    wait_activity(env, sid, Activity.WAITING_INPUT)
    for now in (False, True):
        r = m.send(sid, "hello while asked", now=now)
        assert r.status == "queued" and "permission" in r.detail
    screen = tmux.capture(fleet.srv, sid)
    assert "answered" not in screen  # nothing pressed Enter on the prompt
    tmux.send_keys(fleet.srv, sid, "2")  # the human answers "No"
    retry_until(lambda: "answered: no" in tmux.capture(fleet.srv, sid), message="answer")
    wait_activity(env, sid, Activity.IDLE, timeout=15)
    delivered = []

    def drain() -> bool:
        # one at a time: after each the agent works, and nothing is sent to a busy agent
        if fleet.observe(fleet.store.session(sid)) is Activity.IDLE:
            delivered.extend(m.deliver_queued(sid))
        return not fleet.store.messages(sid, "queued")

    retry_until(drain, timeout=30, message="the held messages")
    assert [d.status for d in delivered] == ["delivered", "delivered"]
    assert env.inbox(sid)[-2:] == ["hello while asked", "hello while asked"]


def test_kill_refuses_to_drop_unpushed_work(env: Env) -> None:
    sid = spawned(env)
    fleet = env.fleet()
    wt = Path(fleet.store.session(sid).worktree or "")
    (wt / "local.txt").write_text("precious\n")
    git(wt, "add", "local.txt")
    git(wt, "commit", "-q", "-m", "not pushed")
    (wt / "scratch.txt").write_text("untracked\n")
    out = fleet.kill(sid)
    assert out["worktree"] == "kept"
    assert any("not on the remote" in w for w in out["why"])  # type: ignore[attr-defined]
    assert (wt / "local.txt").exists()
    r = run_ao("session", "kill", sid, "--force")
    assert r.code == 0, r.err
    assert not wt.exists()
    saved = sorted((paths.session_dir("shop", sid) / "saved").iterdir())
    bundle = next(f for f in saved if f.suffix == ".bundle")
    patch = next(f for f in saved if f.suffix == ".patch")
    assert "untracked" in patch.read_text()
    assert "ok" in subprocess.run(["git", "bundle", "verify", str(bundle)], cwd=env.repo,
                                  capture_output=True, text=True).stderr
    git(env.repo, "fetch", "-q", str(bundle), "HEAD:refs/heads/recovered")
    assert git(env.repo, "show", "recovered:local.txt") == "precious"


def test_restore_relaunches_in_place(env: Env) -> None:
    sid = spawned(env)
    fleet = env.fleet()
    fleet.kill(sid)
    s = fleet.restore(sid)
    assert s.state is State.WORKING
    retry_until(lambda: "demo›" in tmux.capture(fleet.srv, sid), message="the agent again")
    # restarted, the agent is told to go on, its task included: it sat idle, told nothing
    told = [m for m in Store().messages(sid) if m["source"] == "restore"]
    assert len(told) == 1 and "ao restarted you" in told[0]["body"]
    assert "The task, as first given" in told[0]["body"] and "A-1" in told[0]["body"]
    Messenger(fleet).deliver_queued(sid)
    retry_until(lambda: "ao restarted you" in tmux.capture(fleet.srv, sid),
                message="the message typed in the restarted agent")
    with pytest.raises(BadInput, match="already running"):
        fleet.restore(sid)


def test_cli_session_commands(env: Env) -> None:
    sid = spawned(env)
    r = run_ao("session", "ls", "--json")
    assert r.code == 0, r.err
    rows = json.loads(r.out)
    assert [(x["id"], x["task"], x["state"], x["branch"]) for x in rows] == [
        (sid, "A-1", "working", "ao/a-1")]
    r = run_ao("send", sid, "Please add tests for the login function")
    assert (r.code, r.out.strip()) == (0, "delivered")
    r = run_ao("send", "sho-99", "hi")
    assert r.code == 2 and "no session or task sho-99" in r.err and sid in r.err
    retry_until(lambda: "login function" in run_ao("logs", sid).out, message="the transcript")
    logs = run_ao("logs", sid).out
    assert "\x1b" not in logs and "● received" in logs
    ev = run_ao("logs", sid, "--events").out
    assert "message.delivered" in ev
    st = run_ao("status").out
    assert "shop: 1/5 running" in st
    op = run_ao("open", "shop")
    assert op.code == 0 and "ao-shop: 1 windows" in op.out
    names = env.server().cmd("list-windows", "-t", "=ao-shop", "-F", "#{window_name}").stdout
    assert names == [f"{sid} A-1"]  # each window named by its session and task


def test_hook_records_agent_state(env: Env) -> None:
    sid = spawned(env)
    r = run_ao("hook", "claude-code", "UserPromptSubmit", input='{"prompt": "x"}',
               env={"AO_SESSION": sid})
    assert r.code == 0, r.err
    s = env.fleet().store.session(sid)
    assert s.hook_activity == "active"
    assert env.fleet().store.hook_seen(sid, "UserPromptSubmit", 0)
    # outside an ao session the hook does nothing and never fails the agent
    r = run_ao("hook", "claude-code", "Stop", input="not json", env={"AO_SESSION": ""})
    assert r.code == 0 and r.err == ""


def test_claude_code_root_without_sandbox_is_refused(env: Env) -> None:
    env.write_config(agent={"name": "claude-code", "permission_mode": "bypassPermissions"})
    fleet = env.fleet()
    from ao.world.agents.base import running_as_root

    if not running_as_root():
        pytest.skip("the refusal applies to root only")
    r = fleet.spawn("shop", "A-1", fleet.plan_for(fleet.cfg.project("shop")))
    assert r.status == "failed" and "IS_SANDBOX" in r.reason
    assert_nothing_left(env)


def test_no_tmux_server_leaks(env: Env) -> None:
    with pytest.raises(ExternalError):
        tmux._run(env.server(), "no-such-command")


def test_a_plain_command_is_an_agent(env: Env) -> None:
    """`cat` draws nothing until it gets input: it is ready once alive, and a message is
    confirmed by the screen changing after its one Enter."""
    env.write_config(agent={"command": "cat"})
    fleet = env.fleet()
    r = fleet.spawn("shop", "A-1", fleet.plan_for(fleet.cfg.project("shop")))
    assert r.status == "spawned", r.reason
    retry_until(lambda: json.loads(run_ao("session", "ls", "--json").out)[0]["activity"]
                == "idle", timeout=20, interval=0.5, message="cat idle")
    out = run_ao("send", r.session or "", "hello cat")
    assert (out.code, out.out.strip()) == (0, "delivered"), out.err
    screen = tmux.capture(fleet.srv, r.session or "")
    assert screen.count("hello cat") == 2  # the echo of the typing, and cat's own output


def test_concurrent_sends_are_never_glued(env: Env) -> None:
    """Five `ao send` at once to one agent: one sender types at a time (a lock held from the
    clear to the confirmation); every message arrives whole and once."""
    import subprocess
    import sys as _sys

    sid = spawned(env)
    texts = [f"message number {i} for the agent" for i in range(5)]
    procs = [subprocess.Popen([_sys.executable, "-m", "ao", "send", sid, t],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for t in texts]
    codes = [p.wait(timeout=90) for p in procs]
    assert all(c in (0, 3) for c in codes), [p.stderr.read() for p in procs]  # type: ignore[union-attr]
    r = run_ao("send", sid, "--flush")
    assert r.code == 0, (r.out, r.err)
    inbox = [m for m in env.inbox(sid) if m.startswith("message number")]
    assert sorted(inbox) == sorted(texts), inbox  # whole, once each, nothing glued


def test_kill_9_of_batch_spawn_is_repaired_by_the_next_command(env: Env) -> None:
    """`ao batch-spawn` killed with SIGKILL at random moments: the next `ao` command finishes
    or undoes what it left (no session stuck in `spawning`, no half-made worktree), and
    running batch-spawn again starts what is left."""
    import os
    import random
    import signal
    import subprocess
    import sys as _sys

    rng = random.Random(7)
    for _round in range(3):
        proc = subprocess.Popen([_sys.executable, "-m", "ao", "batch-spawn", "shop", "--plan",
                                 str(env.plan_file), "--force"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 2.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        rows = json.loads(run_ao("session", "ls", "--all", "--json").out)
        assert not [r for r in rows if r["state"] == "spawning"], rows
        owned = {r["id"] for r in rows if r["state"] not in ("cleaned", "queued")}
        wts = {p.name for p in (paths.ao_home() / "worktrees" / "shop").glob("*")} \
            if (paths.ao_home() / "worktrees" / "shop").exists() else set()
        assert wts <= owned, (wts, owned)  # no worktree without a live session
        assert not [m for r in rows for m in Store().messages(r["id"], "sending")]
    r = run_ao("batch-spawn", "shop", "--plan", str(env.plan_file), "--force")
    rows = json.loads(run_ao("session", "ls", "--json").out)
    live = {x["task"] for x in rows if x["state"] in ("working", "pr_open")}
    assert live == {"A-1", "B-1", "C-1", "D-1"}, (r.out, rows)


def test_logs_reads_the_agents_own_transcript(env: Env, tmp_path: Path) -> None:
    """A full-screen agent's pane log is cursor moves; when its hooks named a transcript
    (Claude Code's JSONL), `ao logs` prints that instead, readably."""
    from ao.record import events
    from ao.record.events import Event

    store = Store()
    s = store.create_session("shop", "sho", "A-1", state=State.SPAWNING)
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("\n".join(json.dumps(x) for x in [
        {"type": "user", "message": {"role": "user", "content": "Add a login form"}},
        {"type": "assistant", "message": {"content": [
            {"type": "text", "text": "I will add it.\x1b]52;c;aGk=\x07"},
            {"type": "tool_use", "name": "Bash", "input": {"command": "pytest -q"}}]}},
        {"type": "system", "subtype": "turn_duration"}]) + "\n")
    events.emit(Event("agent.hook", "shop", s.id, "A-1",
                      {"event": "Stop", "transcript_path": str(jsonl)}), store)
    r = run_ao("logs", s.id)
    assert r.out.splitlines() == ["you: Add a login form", "agent: I will add it.",
                                  'agent runs Bash: {"command": "pytest -q"}'], r.out


def test_restore_relaunches_what_the_session_was_started_with(env: Env) -> None:
    env.write_config(agent={"command": "cat"}, env={"GREETING": "first"})
    fleet = env.fleet()
    r = fleet.spawn("shop", "A-1", fleet.plan_for(fleet.cfg.project("shop")))
    assert r.status == "spawned", r.reason
    sid = r.session or ""
    env.write_config(agent={"command": "sleep 1000"}, env={"GREETING": "changed"})
    tmux.kill_session(fleet.srv, sid)  # the agent died
    r2 = run_ao("session", "restore", sid)
    assert r2.code == 0, r2.err
    pane = tmux.pane(fleet.srv, sid)
    assert pane is not None and pane.pid is not None
    children = Path(f"/proc/{pane.pid}/task/{pane.pid}/children").read_text().split()
    cmdlines = [Path(f"/proc/{pane.pid}/cmdline").read_bytes()] + \
        [Path(f"/proc/{c}/cmdline").read_bytes() for c in children]
    assert any(b"cat" in c for c in cmdlines) and not any(b"sleep" in c for c in cmdlines)
    env_of = dict(x.split(b"=", 1) for x in Path(f"/proc/{pane.pid}/environ").read_bytes()
                  .split(b"\0") if b"=" in x)
    assert env_of[b"GREETING"] == b"first"


def test_copy_mode_is_left_before_typing(env: Env) -> None:
    """A human scrolled back in the agent's pane (copy mode): the keys would be eaten by the
    mode; ao leaves it first, and the message arrives."""
    sid = spawned(env)
    fleet = env.fleet()
    fleet.srv.cmd("copy-mode", "-t", f"={sid}:")
    mode = fleet.srv.cmd("display-message", "-p", "-t", f"={sid}:", "#{pane_in_mode}").stdout
    assert mode == ["1"]
    r = run_ao("send", sid, "after the scroll back")
    assert (r.code, r.out.strip()) == (0, "delivered"), r.err
    assert "after the scroll back" in env.inbox(sid)


def test_listings_fit_an_80_column_terminal(env: Env) -> None:
    """At COLUMNS=80 the session table fits (it was 108 wide): long titles and reasons give
    way with '…'; without a terminal nothing is cut, and --json has every byte."""
    from ao.record.state import State
    from ao.record.store import Store

    store = Store()
    for i in range(3):
        s = store.create_session("shop", "sho", f"T-{i}", title="a very long title " * 6,
                                 state=State.SPAWNING)
        store.set_state(s.id, State.WORKING)
        store.update_session(s.id, note="x" * 120)
    narrow = run_ao("session", "ls", env={"COLUMNS": "80"})
    assert narrow.code == 0, narrow.err
    assert max(len(ln) for ln in narrow.out.splitlines()) <= 80, narrow.out
    assert "…" in narrow.out
    wide = run_ao("session", "ls")
    assert max(len(ln) for ln in wide.out.splitlines()) > 80
    rows = json.loads(run_ao("session", "ls", "--json", env={"COLUMNS": "80"}).out)
    assert rows[0]["title"] == "a very long title " * 6


def test_session_diff_shows_what_the_agent_changed(env: Env) -> None:
    """`ao session diff`: commits and uncommitted work against the default branch, and the
    files not added; escape sequences in the agent's text are shown, never obeyed."""
    from pathlib import Path

    from ao.record.store import Store

    from .helpers import git, run_ao

    env.write_config(agent={"command": "cat"})
    sid = env.spawn("A-1")
    wt = Path(Store().session(sid).worktree or "")
    (wt / "done.txt").write_text("committed\n")
    git(wt, "add", "done.txt")
    git(wt, "commit", "-q", "-m", "A-1: done")
    (wt / "README.md").write_text("changed, not committed \x1b]0;pwned\x07\n")
    (wt / "new.txt").write_text("not added\n")
    r = run_ao("session", "diff", sid)
    assert r.code == 0, r.err
    assert "+committed" in r.out and "+changed, not committed" in r.out
    assert "\x1b" not in r.out and "not added: new.txt" in r.out
    r = run_ao("session", "diff", sid, "--stat")
    assert "done.txt" in r.out and "README.md" in r.out and "+committed" not in r.out
    r = run_ao("session", "diff", "nope-9")
    assert r.code == 2 and r.err.count("\n") == 1


def test_the_diff_of_a_merged_session_is_what_it_merged(env: Env) -> None:
    """After its merge the merge base is the session's own head: the diff shows what the
    session brought in, said as merged, not "no changes"."""
    from ao import config
    from ao.record.state import State
    from ao.world.forge.local import LocalForge

    from .helpers import git, run_ao

    env.write_config(agent={"command": "cat"})
    sid = env.spawn("A-1")
    wt = env.commit_in_worktree(sid, {"done.txt": "committed\n"})
    store = Store()
    branch = str(store.session(sid).branch)
    git(wt, "push", "-q", "origin", f"HEAD:{branch}")
    forge = LocalForge(config.load().project("shop"), store)
    forge.poll([branch])
    pr = forge.create_pr(branch, "A-1", "")
    forge.merge(pr, pr.head_sha)
    git(wt, "fetch", "-q", "origin")
    store.update_session(sid, pr_state="merged")
    store.set_state(sid, State.PR_OPEN)
    store.set_state(sid, State.MERGED)
    r = run_ao("session", "diff", sid)
    assert r.code == 0 and "merged: its changes as they merged into main" in r.out, r.out
    assert "+committed" in r.out
