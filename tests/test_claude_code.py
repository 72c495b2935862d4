"""The real Claude Code CLI in tmux, offline, against a local Messages API server.

Skipped (with the reason) where the `claude` CLI is not installed; `.ci/run` installs the
pinned version from npm."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ao import paths
from ao.record.state import Activity, State
from ao.record.store import Store
from ao.services.messaging import Messenger
from ao.world import tmux
from ao.world.agents.claude_code import ClaudeCode

from .fake_anthropic import FakeAnthropic, Reply, serve
from .fleet_helpers import Env, leave_own_paste
from .helpers import retry_until

pytestmark = [
    pytest.mark.claude,
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("claude") is None,
                       reason="the Claude Code CLI (`claude`) is not installed; "
                              "`.ci/run` installs @anthropic-ai/claude-code from npm"),
]
KEY = "sk-ant-test-0123456789abcdefghijklmnop"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAnthropic]:
    with serve() as f:
        # the tmux server is started by this process, so the agent inherits these
        for k, v in {"ANTHROPIC_BASE_URL": f.url, "ANTHROPIC_API_KEY": KEY,
                     "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
                     "DISABLE_AUTOUPDATER": "1"}.items():
            monkeypatch.setenv(k, v)
        yield f


def spawn_claude(env: Env, **agent: str) -> str:
    env.write_config(agent={"name": "claude-code", **agent})
    return env.spawn()


def activity(env: Env, sid: str) -> Activity:
    fleet = env.fleet()
    return fleet.observe(fleet.store.session(sid))


def turn_done(env: Env, sid: str) -> bool:
    """The first turn over: its Stop hook seen, and the agent idle (an idle read from
    SessionStart alone comes before the first prompt's turn has begun)."""
    fleet = env.fleet()
    return fleet.hook_seen(fleet.store.session(sid), "Stop", 0) and \
        activity(env, sid) is Activity.IDLE


def delivered_events(sid: str) -> list[dict[str, object]]:
    log = paths.session_dir("shop", sid) / "events.log"
    return [e["data"] for e in map(json.loads, log.read_text().splitlines())
            if e["type"] == "message.delivered"]


def drain(m: Messenger, sid: str) -> list[str]:
    """Deliver held messages as the daemon does: whenever the agent is idle, until none wait."""
    statuses: list[str] = []

    def step() -> bool:
        statuses.extend(r.status for r in m.deliver_queued(sid))
        return not m.store.messages(sid, "queued")

    retry_until(step, timeout=30, message="the held messages")
    return statuses


def test_first_start_prompt_hooks_and_kill(env: Env, fake: FakeAnthropic) -> None:
    fake.script = [Reply(text="Working on A-1", delay=1.5)]
    sid = spawn_claude(env)
    fleet = env.fleet()
    # no dialog was shown: trust, onboarding and the API key were pre-answered
    claude_json = json.loads((Path(os.environ["HOME"]) / ".claude.json").read_text())
    wt = Path(fleet.store.session(sid).worktree or "")
    assert claude_json["projects"][str(wt.resolve())]["hasTrustDialogAccepted"] is True
    assert KEY[-20:] in claude_json["customApiKeyResponses"]["approved"]
    # the first prompt reached the model, confirmed by Claude Code's own UserPromptSubmit hook
    assert delivered_events(sid)[0]["confirmed_by"] == "hook"
    retry_until(lambda: fake.user_texts(), message="the model request")
    assert "A-1: First task" in fake.user_texts()[0]
    # active while the model answers, idle after its Stop hook
    assert activity(env, sid) is Activity.ACTIVE
    retry_until(lambda: activity(env, sid) is Activity.IDLE, timeout=20, message="idle")
    assert fleet.hook_seen(fleet.store.session(sid), "Stop", 0)
    out = fleet.kill(sid)
    # its .claude/ holds only ao's hook settings (disposable): nothing keeps the worktree
    assert out["worktree"] == "removed", out
    assert not tmux.has_session(fleet.srv, sid)
    assert fleet.store.session(sid).state is State.KILLED


def test_message_while_working_is_queued_then_delivered(env: Env, fake: FakeAnthropic) -> None:
    fake.script = [Reply(text="thinking hard", delay=4)]
    sid = spawn_claude(env)
    fleet = env.fleet()
    m = Messenger(fleet)
    retry_until(lambda: activity(env, sid) is Activity.ACTIVE, message="busy")
    r = m.send(sid, "Please add tests for the login function")
    assert (r.status, r.detail) == ("queued", "busy")
    assert drain(m, sid) == ["delivered"]
    retry_until(lambda: any("login function" in t for t in fake.user_texts()),
                message="the message at the model")
    assert delivered_events(sid)[-1]["confirmed_by"] == "hook"


def test_message_during_permission_prompt_is_held(env: Env, fake: FakeAnthropic) -> None:
    fake.script = [Reply(text="I will create a file.", tool="Bash",
                         tool_input={"command": "touch made-by-claude.txt",
                                     "description": "Create a file"}),
                   Reply(text="Created it.")]
    sid = spawn_claude(env, permission_mode="default")
    fleet = env.fleet()
    m = Messenger(fleet)
    retry_until(lambda: activity(env, sid) is Activity.WAITING_INPUT, timeout=30,
                message="the permission prompt")
    # the PermissionRequest hook fires a moment before the dialog is drawn
    retry_until(lambda: "Do you want to proceed?" in tmux.capture(fleet.srv, sid), timeout=10,
                message="the dialog drawn")
    requests_before = len(fake.requests)
    for now in (False, True):
        r = m.send(sid, "hello during the prompt", now=now)
        assert r.status == "queued" and "permission" in r.detail
    screen = tmux.capture(fleet.srv, sid)
    assert "Do you want to proceed?" in screen  # nothing answered it
    wt = Path(fleet.store.session(sid).worktree or "")
    assert not (wt / "made-by-claude.txt").exists()
    assert len(fake.requests) == requests_before
    # the human says yes; a dialog drawn a moment ago may not take keys yet (Claude Code
    # guards against a key pressed before the dialog was read): they press again
    for _ in range(5):
        tmux.send_keys(fleet.srv, sid, "Enter")
        if tmux.wait_screen(fleet.srv, sid, lambda sc: "Do you want to proceed?" not in sc,
                            timeout=2) is not None:
            break
    retry_until(lambda: (wt / "made-by-claude.txt").exists(), timeout=20, message="the tool")
    assert drain(m, sid) == ["delivered", "delivered"]
    retry_until(lambda: any("hello during the prompt" in t for t in fake.user_texts()),
                message="the held message at the model")


def test_profile_keeps_other_keys_and_user_hooks(env: Env, tmp_path: Path) -> None:
    home = Path(os.environ["HOME"])
    (home / ".claude.json").write_text(json.dumps({"theme": "dark", "projects": {
        "/elsewhere": {"hasTrustDialogAccepted": False}}}))
    wt = tmp_path / "wt"
    (wt / ".claude").mkdir(parents=True)
    (wt / ".claude" / "settings.local.json").write_text(json.dumps(
        {"permissions": {"allow": ["Bash(ls)"]},
         "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "notify-me"}]}]}}))
    from ao.world.agents import LaunchContext

    ctx = LaunchContext(session_id="sho-1", project="shop", task="A-1", worktree=wt,
                        prompt_file=wt / "p.md", session_dir=tmp_path)
    ClaudeCode().prepare(ctx)
    ClaudeCode().prepare(ctx)  # twice: still one ao hook per event
    data = json.loads((home / ".claude.json").read_text())
    assert data["theme"] == "dark"
    assert data["projects"]["/elsewhere"] == {"hasTrustDialogAccepted": False}
    assert data["projects"][str(wt.resolve())]["hasTrustDialogAccepted"] is True
    settings = json.loads((wt / ".claude" / "settings.local.json").read_text())
    assert settings["permissions"] == {"allow": ["Bash(ls)"]}
    stop = [h["command"] for e in settings["hooks"]["Stop"] for h in e["hooks"]]
    assert stop[0] == "notify-me" and stop[1].endswith("Stop # ao-hook")
    assert len(stop) == 2


def test_worktree_stays_clean_and_commands_are_honest(env: Env, fake: FakeAnthropic) -> None:
    """ao's own files never show in `git status`; a `!` command is refused without --raw; a
    slash command (no UserPromptSubmit hook) is confirmed by the screen."""
    from ao.errors import BadInput

    from .helpers import git

    fake.script = [Reply(text="Done with A-1")]
    sid = spawn_claude(env)
    fleet = env.fleet()
    wt = Path(fleet.store.session(sid).worktree or "")
    assert git(wt, "status", "--porcelain") == ""
    retry_until(lambda: turn_done(env, sid), timeout=30, message="idle after the first turn")
    m = Messenger(fleet)
    # judged as typed: bytes that sanitizing removes do not hide the `!`
    for hidden in ("!touch nope.txt", "\x00!touch nope.txt", "\x1b[0m!touch nope.txt",
                   "\x07 !touch nope.txt"):
        with pytest.raises(BadInput, match="pass --raw"):
            m.send(sid, hidden)
    assert not (wt / "nope.txt").exists()
    r = m.send(sid, "/clear")
    assert r.status == "delivered", r.detail
    assert delivered_events(sid)[-1]["confirmed_by"] == "screen"
    # --raw: the shell command runs once, and the send says so by the screen (no prompt hook)
    retry_until(lambda: turn_done(env, sid), timeout=30, message="idle after /clear")
    started = time.monotonic()
    r = m.send(sid, "!touch yes.txt", raw=True)
    assert r.status == "delivered" and time.monotonic() - started < 20, r.detail
    assert delivered_events(sid)[-1]["confirmed_by"] == "screen"
    retry_until(lambda: (wt / "yes.txt").exists(), timeout=10, message="the command ran")


def test_a_humans_draft_is_never_cleared_or_glued(env: Env, fake: FakeAnthropic) -> None:
    # a turn long enough to outlast the checks below on a loaded machine (at 6 s one ended
    # under them once)
    fake.script = [Reply(text="thinking", delay=12)]
    sid = spawn_claude(env)
    fleet = env.fleet()
    retry_until(lambda: activity(env, sid) is Activity.ACTIVE, message="busy")
    tmux.send_keys(fleet.srv, sid, "human draft")  # someone typing in the agent's input
    retry_until(lambda: "human draft" in tmux.capture(fleet.srv, sid), message="the draft")
    # a busy agent with a draft is busy: the person's text in the box is no sign of a turn's end
    for _ in range(3):
        assert activity(env, sid) is Activity.ACTIVE, tmux.capture(fleet.srv, sid)
        time.sleep(0.5)
    from ao.errors import BadInput

    m = Messenger(fleet)
    with pytest.raises(BadInput, match="someone is typing"):  # --now refuses over a draft
        m.send(sid, "now-msg", now=True)
    r = m.send(sid, "later-msg")
    assert r.status == "queued" and "typing" in r.detail
    # the daemon, once the turn is over: the draft is the person's, never cleared (it used to
    # press Escape twice and send its own message, 4 of 4)
    retry_until(lambda: fleet.hook_seen(fleet.store.session(sid), "Stop", 0), timeout=40,
                message="the turn ended")
    went: list[Any] = []

    def tried() -> bool:  # as the daemon does, tick after tick (right at the Stop hook the
        went.extend(m.deliver_queued(sid))  # screen still shows the turn for a moment)
        return bool(went)

    retry_until(tried, timeout=10, interval=0.3, message="a delivery attempt")
    assert [x.status for x in went] == ["queued"] and "typing" in went[0].detail, went
    screen = tmux.capture(fleet.srv, sid)
    assert "human draft" in screen and "msg" not in screen and "Interrupted" not in screen


def test_new_spawns_get_the_current_api_endpoint(env: Env, fake: FakeAnthropic,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's environment is computed at each spawn, never the tmux server's old one."""
    fake.script = [Reply(text="first")]
    sid = spawn_claude(env)
    retry_until(lambda: fake.user_texts(), message="the first server")
    env.fleet().kill(sid, force=True)
    with serve() as second:
        second.script = [Reply(text="second")]
        monkeypatch.setenv("ANTHROPIC_BASE_URL", second.url)
        fleet = env.fleet()
        r = fleet.spawn("shop", "C-1", fleet.plan_for(fleet.cfg.project("shop")))
        assert r.status == "spawned", r.reason
        retry_until(lambda: second.user_texts(), message="the new endpoint")
        assert "C-1" in second.user_texts()[0]


def subscription(monkeypatch: pytest.MonkeyPatch) -> None:
    """Claude Code logged in with a subscription's token instead of an API key: the login
    under which it shows its usage-limit screen (with a key the same refusal is an API
    error line)."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-fake-0123456789abcdefghij")


def test_the_apis_limit_refusal_marks_the_session_limited_until_its_reset(
        env: Env, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API refuses the first request as it does at a subscription's 5-hour limit (429,
    the unified rate-limit headers); the real Claude Code shows "You've hit your 5-hour
    limit · resets ..."; ao reads the reset from it, to the minute."""
    subscription(monkeypatch)
    fake.script = [Reply(limit="five_hour", reset_in=3600)]
    sid = spawn_claude(env)
    reset = time.time() + 3600
    try:
        retry_until(lambda: activity(env, sid) is Activity.LIMITED, timeout=40,
                    message="the limit on screen")
    except AssertionError:
        raise AssertionError(tmux.capture(env.fleet().srv, sid)) from None
    s = env.fleet().store.session(sid)
    assert s.limited_until is not None and abs(s.limited_until - reset) < 75, \
        (s.limited_until, reset)
    assert "hit your 5-hour limit" in tmux.capture(env.fleet().srv, sid)


def test_one_sessions_limit_parks_the_other_claude_and_the_reset_resumes_both(
        env: Env, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two real Claude Codes on one subscription: A-1's request is refused at the limit
    while C-1's turn is still streaming. The daemon's tick parks C-1 (Escape: its turn is
    cut off, not run into the wall), and at the reset both are told to continue."""
    from ao import config
    from ao.loop.daemon import Daemon

    subscription(monkeypatch)

    def answer(body: dict[str, Any]) -> Reply:
        if "A-1" in json.dumps(body.get("messages")):
            return Reply(limit="five_hour", reset_in=3600)
        return Reply(text="working on it", delay=60)  # C-1's turn: long

    fake.script = [answer] * 20
    env.write_config(agent={"name": "claude-code"}, max_concurrent=2)
    b = env.spawn("C-1")  # its turn under way first: its request streams for a minute
    retry_until(lambda: any("C-1" in x for x in fake.user_texts()), timeout=40,
                message="C-1's request")
    retry_until(lambda: activity(env, b) is Activity.ACTIVE, timeout=40, message="C-1 busy")
    a = env.spawn("A-1")
    store = env.fleet().store
    now = [time.time()]
    d = Daemon(config.load(), store, env.server(), clock=lambda: now[0])

    def limited() -> bool:
        d.tick()
        return store.session(a).activity is Activity.LIMITED

    try:
        retry_until(limited, timeout=40, interval=0.5, message="A-1 at its limit")
    except AssertionError:
        raise AssertionError(tmux.capture(env.fleet().srv, a)) from None
    until = store.session(a).limited_until
    assert until and store.session(b).limited_until == until
    parked = [e for e in map(json.loads, paths.events_log().read_text().splitlines())
              if e["type"] == "session.parked"]
    assert [(e["session"], e["data"]["interrupted"]) for e in parked] == [(b, True)]
    # its turn cut off: Claude puts the prompt back in the box, the status line no longer
    # says "esc to interrupt"; and it asks the model nothing more until the reset
    asked = len(fake.requests)
    try:
        retry_until(lambda: "esc to interrupt" not in tmux.capture(env.fleet().srv, b),
                    timeout=15, message="C-1's turn cut off")
    except AssertionError:
        raise AssertionError(tmux.capture(env.fleet().srv, b)) from None
    time.sleep(3)
    assert len(fake.requests) == asked
    # the reset (the daemon's clock moved on: the test cannot wait an hour): both told to
    # continue, and C-1's continue reaches the model (whether Claude put the cut-off prompt
    # back in its box depends on how far the turn got: test_quota.py covers that case)
    fake.script = [Reply(text="carrying on")] * 4
    now[0] = until + 1  # the daemon's clock at the reset
    d.tick()
    said = {s: [m["body"] for m in store.messages(s) if m["source"] == "limit-reset"]
            for s in (a, b)}
    assert said == {a: ["continue"], b: ["continue"]}, said
    store.update_session(b, limited_until=time.time() - 1)  # the world's clock too
    drain(Messenger(env.fleet()), b)
    retry_until(lambda: "continue" in fake.user_texts()[-1], timeout=30,
                message="C-1's continue at the model")


def test_a_question_menu_is_waiting_and_holds_messages(env: Env, fake: FakeAnthropic) -> None:
    """Claude's AskUserQuestion menu waits on a human: never typed into."""
    fake.script = [Reply(text="One question first.", tool="AskUserQuestion", tool_input={
        "questions": [{"question": "Which database should I use?", "header": "Database",
                       "multiSelect": False, "options": [
                           {"label": "Postgres", "description": "the server one"},
                           {"label": "SQLite", "description": "the file one"}]}]}),
                   Reply(text="Thanks.")]
    sid = spawn_claude(env)
    fleet = env.fleet()
    try:
        retry_until(lambda: activity(env, sid) is Activity.WAITING_INPUT, timeout=30,
                    message="the question menu")
    except AssertionError:
        raise AssertionError(tmux.capture(fleet.srv, sid)) from None
    # the hook fires a moment before the menu is drawn: held either way
    retry_until(lambda: "Which database" in tmux.capture(fleet.srv, sid), timeout=10,
                message="the menu drawn")
    r = Messenger(fleet).send(sid, "use whatever", now=True)
    assert r.status == "queued"
    assert "Which database" in tmux.capture(fleet.srv, sid)  # the question is still there


def test_a_long_message_is_read_from_the_worktree_without_a_prompt(
        env: Env, fake: FakeAnthropic) -> None:
    """A 20 KB message goes to the worktree's excluded `.ao/messages/`; the agent reads it
    with its Read tool in the default permission mode, with no prompt for a human."""
    import re

    def read_the_file(body: dict[str, Any]) -> Reply:
        text = json.dumps(body)
        path = re.search(r"is in (/[^ ]+?\.md)", text)
        assert path, "no pointer to the message file"
        return Reply(text="Reading it.", tool="Read", tool_input={"file_path": path.group(1)})

    fake.script = [Reply(text="Ready."), read_the_file, Reply(text="Read it all.")]
    sid = spawn_claude(env, permission_mode="default")
    fleet = env.fleet()
    retry_until(lambda: turn_done(env, sid), timeout=30, message="idle after the first turn")
    body = "\n".join(f"line {i:04d} of the long message" for i in range(700)) + \
        "\nMARKER-20K-END"
    assert len(body) > 20_000
    r = Messenger(fleet).send(sid, body)
    assert r.status == "delivered", r.detail
    waited = []

    def read_back() -> bool:
        waited.append(activity(env, sid) is Activity.WAITING_INPUT)
        return any("MARKER-20K-END" in json.dumps(b) for b in fake.requests[2:])

    retry_until(read_back, timeout=60, interval=0.3, message="the file's text at the model")
    assert not any(waited)  # nobody had to approve the read
    wt = Path(fleet.store.session(sid).worktree or "")
    from .helpers import git

    assert git(wt, "status", "--porcelain") == ""  # .ao/ is excluded


def test_an_escape_settles_the_state_at_once(env: Env, fake: FakeAnthropic) -> None:
    """An Escape interrupts the turn and fires no Stop hook; the screen says so, and ao
    reads the agent as idle within an observation, not after the 5 s stillness rule."""
    import time as _time

    fake.script = [Reply(text="a long answer", delay=15)]
    sid = spawn_claude(env)
    fleet = env.fleet()
    retry_until(lambda: activity(env, sid) is Activity.ACTIVE, message="busy")
    retry_until(lambda: "esc to interrupt" in tmux.capture(fleet.srv, sid), message="spinner")
    tmux.send_keys(fleet.srv, sid, "Escape")
    t0 = _time.monotonic()
    try:
        retry_until(lambda: activity(env, sid) is Activity.IDLE, timeout=4.5, interval=0.2,
                    message="idle after the Escape")
    except AssertionError:
        raise AssertionError(tmux.capture(fleet.srv, sid)) from None
    assert _time.monotonic() - t0 < 4.5


def test_a_kill_with_the_daemon_running_ends_the_agent(env: Env, fake: FakeAnthropic) -> None:
    """The real Claude Code's exit hook wakes the daemon in the middle of a kill; the daemon
    (1 s poll) saw an exited agent and restored it (`claude --continue`) into a folder the
    kill then removed: 5 of 5 kills left a live agent. The kill holds the session's lock;
    the daemon waits a tick and finds the session killed."""
    import psutil

    from .helpers import run_ao

    fake.script = [Reply(text="done")] * 10
    env.write_config(agent={"name": "claude-code"})
    r = run_ao("start", env={"AO_POLL_INTERVAL": "1"})
    assert r.code == 0, r.err
    try:
        for task in ("A-1", "C-1", "D-1"):
            sid = env.spawn(task)
            retry_until(lambda sid=sid: turn_done(env, sid), timeout=60, message="idle")
            r = run_ao("session", "kill", sid)
            assert r.code == 0, r.err
            time.sleep(3.5)  # three polls of the daemon after the kill

            def agents_of(sid: str = sid) -> list[str]:
                """The session's agent processes (its hooks' short `ao hook` runs aside)."""
                found = []
                for p in psutil.process_iter(["pid"]):
                    try:
                        line, environ = " ".join(p.cmdline()), p.environ()
                        # this test's (other tests running beside it have a sho-1 too)
                        if environ.get("AO_SESSION") == sid and " hook " not in line \
                                and environ.get("AO_HOME") == str(paths.ao_home()) \
                                and p.status() != psutil.STATUS_ZOMBIE:
                            found.append(f"{p.pid} {line[:120]}")
                    except psutil.Error:
                        continue
                return found

            # a restored agent runs on: it would still be here after the daemon's polls
            retry_until(lambda: not agents_of(), timeout=15,
                        message=f"{sid}'s agent gone after the kill")
            time.sleep(2)
            assert agents_of() == [], f"{sid}: an agent came back after the kill"
            assert sid not in tmux.sessions(env.server())
            assert Store().session(sid).state is State.KILLED
            log = (paths.session_dir("shop", sid) / "events.log").read_text()
            assert '"agent.restored"' not in log
    finally:
        run_ao("stop")


def test_a_prompt_dismissed_without_a_hook_releases_held_messages_at_once(
        env: Env, fake: FakeAnthropic) -> None:
    """Escape on a permission prompt fires no hook: the held message waited for the next
    poll (about 29 s). The daemon looks at waiting agents between polls; with a 30 s poll the
    message is delivered within a few seconds of the Escape."""
    from .helpers import run_ao

    fake.script = [Reply(text="I will create a file.", tool="Bash",
                         tool_input={"command": "touch made-by-claude.txt",
                                     "description": "Create a file"}),
                   Reply(text="Understood."), Reply(text="Got it.")]
    sid = spawn_claude(env, permission_mode="default")
    fleet = env.fleet()
    retry_until(lambda: "Do you want to proceed?" in tmux.capture(fleet.srv, sid), timeout=30,
                message="the dialog drawn")
    r = run_ao("start", env={"AO_POLL_INTERVAL": "30"})
    assert r.code == 0, r.err
    try:
        retry_until(lambda: activity(env, sid) is Activity.WAITING_INPUT, timeout=20,
                    message="the daemon saw the prompt")
        r = run_ao("send", sid, "held while the prompt is up")
        assert r.code == 3 and "queued: waiting on a permission prompt" in r.out, r.out + r.err
        time.sleep(2.5)  # the daemon's first poll is behind it; the next is 30 s away
        for _ in range(5):  # the person dismisses the prompt (no hook fires)
            tmux.send_keys(fleet.srv, sid, "Escape")
            if tmux.wait_screen(fleet.srv, sid, lambda sc: "Do you want to proceed?" not in sc,
                                timeout=2) is not None:
                break
        retry_until(lambda: any("held while the prompt is up" in t for t in fake.user_texts()),
                    timeout=12, message="the held message delivered well before the next poll")
    finally:
        run_ao("stop")


def test_aos_own_leftover_paste_is_cleared_whole(env: Env, fake: FakeAnthropic) -> None:
    """ao's own paste of a delivery that gave up is cleared (Escape twice, apart) before the
    next message, which reaches the model alone."""
    fake.script = [Reply(text="ready"), Reply(text="noted")]
    sid = spawn_claude(env)
    retry_until(lambda: turn_done(env, sid), timeout=60, message="the first turn")
    fleet = env.fleet()
    left = "LEFTOVER-1 first line\nLEFTOVER-2 second line"
    leave_own_paste(fleet, sid, left)  # the delivery gave up before its Enter
    r = Messenger(fleet).send(sid, "NEXT-MARKER alone please")
    assert r.status == "delivered", r
    retry_until(lambda: any("NEXT-MARKER" in t for t in fake.user_texts()), timeout=30,
                message="the next message")
    assert not any("LEFTOVER" in t for t in fake.user_texts()), fake.user_texts()


def test_what_the_agent_spends_is_read_from_its_transcript(env: Env,
                                                          fake: FakeAnthropic) -> None:
    """Claude Code writes each message's usage in its transcript; ao reads it on from where it
    stopped at each poll (its hooks name the file), once per message, and `ao usage` shows
    the session's tokens and estimated cost."""
    from ao import config
    from ao.loop.daemon import Daemon
    from ao.world import agent_usage

    from .helpers import run_ao

    fake.script = [Reply(text="first", usage={"input_tokens": 1000, "output_tokens": 200}),
                   Reply(text="second", usage={"input_tokens": 3000, "output_tokens": 400})]
    sid = spawn_claude(env)
    retry_until(lambda: turn_done(env, sid), timeout=60, message="the first turn")
    store = Store()
    d = Daemon(config.load(), store, env.server())
    # the transcript's line can land a moment after the Stop hook: a later poll reads it
    retry_until(lambda: (d.tick(), store.agent_usage(sid)[0]["input_tokens"] >= 1000)[1],
                timeout=15, interval=0.3, message="the first message's usage")
    first = store.agent_usage(sid)[0]
    assert first["input_tokens"] >= 1000 and first["output_tokens"] >= 200, first
    m = Messenger(env.fleet())
    retry_until(lambda: m.send(sid, "and again").status in ("delivered", "queued"),
                timeout=30, interval=1.0, message="the second message sent")
    drain(m, sid)  # a held one delivered as the daemon would
    retry_until(lambda: (d.tick(), store.agent_usage(sid)[0]["input_tokens"] >= 4000)[1],
                timeout=30, interval=0.3, message="the second message's usage")
    row = store.agent_usage(sid)[0]
    assert row["output_tokens"] >= 600 and row["cost_usd"] > 0
    assert not agent_usage.read(store, store.session(sid))  # nothing new: nothing re-read
    r = run_ao("usage", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    mine = [x for x in data["sessions"] if x["session"] == sid]
    assert mine and mine[0]["input"] == row["input_tokens"] and mine[0]["usd"] > 0
    assert data["tasks"][0]["task"] == "A-1"
    assert sid in run_ao("usage").out
