"""The real Codex, Gemini CLI and Aider in tmux, offline, each against a local fake of its
model API (tests/fake_models.py), driven through ao's own spawn, send, observe and kill.

Skipped (with the reason) where a CLI is not installed; `.ci/run` installs each at the
version its profile was measured with (docs/agents.md)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from ao import paths
from ao.record.state import Activity
from ao.services.messaging import Messenger
from ao.world import tmux

from .fake_models import FakeModels, Reply, serve
from .fleet_helpers import Env, leave_own_paste
from .helpers import git, retry_until, run_ao

pytestmark = [pytest.mark.timeout(240)]


@dataclass(frozen=True)
class Cli:
    agent: str
    binary: str
    package: str


CLIS = [Cli("codex", "codex", "@openai/codex (npm)"),
        Cli("gemini", "gemini", "@google/gemini-cli (npm)"),
        Cli("aider", "aider", "aider-chat (PyPI)")]


def _configure(cli: Cli, url: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the CLI at the fake, as a user points it at a proxy: its own settings and the
    environment variables its profile passes through. Nothing here answers a first-run
    dialog: that is the profile's job."""
    if cli.agent == "codex":
        codex_home = home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        # a user's config with keys of their own, which ao's trust entry must keep
        (codex_home / "config.toml").write_text(
            '# my codex settings\nmodel = "gpt-5"\nmodel_provider = "fake"\n\n'
            '[model_providers.fake]\nname = "fake"\n'
            f'base_url = "{url}/v1"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n')
        monkeypatch.setenv("CODEX_HOME", str(codex_home))
        monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-0123456789")
    elif cli.agent == "gemini":
        monkeypatch.setenv("GEMINI_API_KEY", "fake-gemini-key")
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", url)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-0123456789")
        monkeypatch.setenv("OPENAI_API_BASE", f"{url}/v1")
        monkeypatch.setenv("AIDER_MODEL", "openai/fake-model")
        monkeypatch.setenv("AIDER_EDIT_FORMAT", "diff")  # asks before shell commands


@pytest.fixture(params=CLIS, ids=[c.agent for c in CLIS])
def cli(request: pytest.FixtureRequest) -> Cli:
    c: Cli = request.param
    if shutil.which(c.binary) is None:
        pytest.skip(f"`{c.binary}` is not installed; `.ci/run` installs {c.package}")
    return c


@pytest.fixture
def fake(cli: Cli, env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeModels]:
    import os

    with serve() as f:
        _configure(cli, f.url, Path(os.environ["HOME"]), monkeypatch)
        env.write_config(agent={"name": cli.agent})
        yield f
        srv = env.server()
        for name in tmux.sessions(srv):
            tmux.kill_session(srv, name)  # the agent's whole process tree, before the server


def activity(env: Env, sid: str) -> Activity:
    fleet = env.fleet()
    return fleet.observe(fleet.store.session(sid))


def wait_activity(env: Env, sid: str, want: Activity, timeout: float = 30) -> None:
    try:
        retry_until(lambda: activity(env, sid) is want, timeout=timeout, interval=0.2,
                    message=str(want))
    except AssertionError:
        raise AssertionError(f"not {want}:\n{tmux.capture(env.server(), sid)}") from None


def settled(env: Env, sid: str, fake: FakeModels) -> None:
    """The first prompt's turn has reached the model and ended (right after the paste the
    CLI can still look idle: its title says Ready until the turn starts)."""
    retry_until(lambda: count(fake, "A-1: First task"), timeout=20, message="the first turn")
    wait_activity(env, sid, Activity.IDLE)


def events(sid: str, kind: str) -> list[dict[str, object]]:
    log = paths.session_dir("shop", sid) / "events.log"
    return [e["data"] for e in map(json.loads, log.read_text().splitlines())
            if e["type"] == kind]


def count(fake: FakeModels, marker: str) -> int:
    """How many model requests carried `marker` in their newest input (a marker from an
    earlier turn is repeated in every later request's history, so only the last message of
    each request is looked at)."""
    n = 0
    for _path, body in list(fake.requests):
        last = (body.get("input") or body.get("contents") or body.get("messages") or [])[-1:]
        n += marker in json.dumps(last)
    return n


def drain(m: Messenger, sid: str) -> list[str]:
    statuses: list[str] = []

    def step() -> bool:
        statuses.extend(r.status for r in m.deliver_queued(sid))
        return not m.store.messages(sid, "queued")

    retry_until(step, timeout=60, interval=0.3, message="the held messages")
    return statuses


def test_spawn_first_prompt_activity_and_kill(cli: Cli, env: Env, fake: FakeModels) -> None:
    """No first-run dialog; the first prompt reaches the model exactly once; busy while the
    reply streams, idle after; a kill leaves no process of the agent behind."""
    fake.script = [Reply(text=" ".join(f"step{i}" for i in range(30)), delay=5)]
    sid = env.spawn()
    fleet = env.fleet()
    assert events(sid, "message.delivered")[0]["enters"] == 1
    retry_until(lambda: count(fake, "A-1: First task"), timeout=20, message="the first turn")
    wait_activity(env, sid, Activity.ACTIVE, timeout=5)
    wait_activity(env, sid, Activity.IDLE, timeout=30)
    assert count(fake, "A-1: First task") == 1
    screen = tmux.capture(fleet.srv, sid)
    assert "Trust" not in screen and "(Y)es/(N)o" not in screen
    wt = Path(fleet.store.session(sid).worktree or "")
    assert git(wt, "status", "--porcelain") == ""  # nothing of the agent's shows in git
    r = fleet.srv.cmd("display-message", "-p", "-t", f"={sid}:", "#{pane_pid}")
    top = psutil.Process(int(r.stdout[0]))
    tree = [top, *top.children(recursive=True)]
    assert any(p.name() != "bash" for p in tree)
    fleet.kill(sid, force=True)
    alive = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.cmdline() for p in alive]
    # nothing of the agent's outlives it outside its tree either (codex's background
    # app-server, without --no-daemon, was shared by every later session)
    import os

    home = os.environ["HOME"]

    def ours(p: psutil.Process) -> bool:
        try:
            return p.environ().get("HOME") == home and p.status() != psutil.STATUS_ZOMBIE \
                and any(cli.binary in c for c in p.cmdline())
        except psutil.Error:
            return False

    retry_until(lambda: not [p for p in psutil.process_iter() if ours(p)], timeout=5,
                message="no process of the agent left")


def test_a_long_multiline_message_arrives_once(cli: Cli, env: Env, fake: FakeModels) -> None:
    """Over ~1000 characters or 5 lines the CLIs collapse a paste into a placeholder
    (`[Pasted Content N chars]`, `[Pasted Text: N lines]`): it counts as the text shown."""
    fake.script = [Reply(text="ready")]
    sid = env.spawn()
    settled(env, sid, fake)
    body = "\n".join(f"line {i:02d} of a long message to the agent, padded out" for i in
                     range(30)) + "\nLONG-MESSAGE-END"
    r = Messenger(env.fleet()).send(sid, body)
    assert r.status == "delivered", r.detail
    retry_until(lambda: count(fake, "LONG-MESSAGE-END"), timeout=30, message="the long message")
    wait_activity(env, sid, Activity.IDLE)
    assert count(fake, "LONG-MESSAGE-END") == 1


def test_a_message_while_busy_is_held_and_sent_once(cli: Cli, env: Env,
                                                    fake: FakeModels) -> None:
    """Never Enter into a running turn (codex steers, aider buffers the keys into its next
    question): held while the reply streams, delivered once the agent is idle."""
    # words that do not repeat: gemini halts a reply it takes for a loop
    fake.script = [Reply(text=" ".join(f"part{i}" for i in range(60)), delay=8),
                   Reply(text="noted")]
    sid = env.spawn()
    retry_until(lambda: count(fake, "A-1: First task"), timeout=20, message="the first turn")
    wait_activity(env, sid, Activity.ACTIVE, timeout=5)
    m = Messenger(env.fleet())
    # --now types into a working agent only where Enter queues (gemini); never into codex
    # or aider (what the CLIs do, not what the profile says: a reverted profile must fail)
    now = cli.agent in ("codex", "aider")
    r = m.send(sid, "BUSY-MARKER please also add tests", now=now)
    assert (r.status, r.detail) == ("queued", "busy"), r
    assert drain(m, sid) == ["delivered"]
    retry_until(lambda: count(fake, "BUSY-MARKER"), timeout=30, message="the held message")
    wait_activity(env, sid, Activity.IDLE)
    assert count(fake, "BUSY-MARKER") == 1
    assert count(fake, "A-1: First task") == 1  # the first turn was not steered or resent


def test_an_approval_prompt_holds_messages_and_nothing_is_approved(
        cli: Cli, env: Env, fake: FakeModels) -> None:
    fake.script = [Reply(text="I will create a file.", shell="touch made-by-agent.txt"),
                   Reply(text="Done.")]
    sid = env.spawn()
    wait_activity(env, sid, Activity.WAITING_INPUT)
    fleet = env.fleet()
    before = len(fake.requests)
    m = Messenger(fleet)
    for now in (False, True):
        r = m.send(sid, "hello during the prompt", now=now)
        assert r.status == "queued" and "permission" in r.detail, r
    wt = Path(fleet.store.session(sid).worktree or "")
    retry_until(lambda: activity(env, sid) is Activity.WAITING_INPUT, timeout=3)
    assert not (wt / "made-by-agent.txt").exists()
    assert len(fake.requests) == before
    assert "hello during the prompt" not in tmux.capture(fleet.srv, sid)


def test_a_humans_draft_is_never_cleared_or_glued(cli: Cli, env: Env,
                                                  fake: FakeModels) -> None:
    fake.script = [Reply(text="ready")]
    sid = env.spawn()
    settled(env, sid, fake)
    fleet = env.fleet()
    tmux.send_keys(fleet.srv, sid, "human draft")
    retry_until(lambda: "human draft" in tmux.capture(fleet.srv, sid), message="the draft")
    from ao.errors import BadInput

    m = Messenger(fleet)
    with pytest.raises(BadInput, match="someone is typing"):  # --now refuses over a draft
        m.send(sid, "machine-msg", now=True)
    r = m.send(sid, "machine-msg")
    assert r.status == "queued" and "typing" in r.detail, r
    went = m.deliver_queued(sid)  # as the daemon would: the draft is the person's
    assert [x.status for x in went] in ([], ["queued"]), went
    screen = tmux.capture(fleet.srv, sid)
    assert "human draft" in screen and "machine-msg" not in screen
    assert activity(env, sid) is not Activity.EXITED  # no clear key ended the agent


def test_ao_agents_shows_the_measured_version(cli: Cli, env: Env, fake: FakeModels) -> None:
    from .helpers import run_ao

    r = run_ao("agents", "--json")
    assert r.code == 0, r.err
    row = next(a for a in json.loads(r.out) if a["name"] == cli.agent)
    assert row["installed"] and row["version"] and row["measured"]
    assert row["version_ok"] is True, row


def test_aos_own_leftover_paste_is_cleared_whole(cli: Cli, env: Env, fake: FakeModels) -> None:
    """A delivery that gave up left its multi-line paste in the input: it is ao's, so the next
    delivery clears all of it (aider's C-u clears one line; gemini needs Escape twice) and
    the next message goes alone, never glued to the remains."""
    fake.script = [Reply(text="ready"), Reply(text="noted")]
    sid = env.spawn()
    settled(env, sid, fake)
    fleet = env.fleet()
    left = "LEFTOVER-1 first line\nLEFTOVER-2 second line\nLEFTOVER-3 third line"
    leave_own_paste(fleet, sid, left)  # the delivery gave up before its Enter
    r = Messenger(fleet).send(sid, "NEXT-MARKER alone please")
    assert r.status == "delivered", r
    retry_until(lambda: count(fake, "NEXT-MARKER"), timeout=30, message="the next message")
    assert count(fake, "LEFTOVER") == 0, [b for _, b in fake.requests][-1]
    assert activity(env, sid) is not Activity.EXITED  # no clear key ended the agent


def test_a_reply_that_stalls_mid_stream_is_still_busy(cli: Cli, env: Env,
                                                      fake: FakeModels) -> None:
    """A model that pauses mid-reply leaves a still screen that looks idle (codex and gemini
    draw no busy line while a reply streams): the pane title says working, and a message
    waits instead of steering the turn."""
    fake.script = [Reply(text=" ".join(f"word{i}" for i in range(20)), delay=1, stall=12),
                   Reply(text="noted")]
    sid = env.spawn()
    retry_until(lambda: count(fake, "A-1: First task"), timeout=20, message="the first turn")
    time.sleep(7)  # the stall: past activity.IDLE_AFTER of an unchanged screen
    assert activity(env, sid) is Activity.ACTIVE, tmux.capture(env.server(), sid)
    r = Messenger(env.fleet()).send(sid, "STALL-MARKER")
    assert (r.status, r.detail) == ("queued", "busy"), r
    assert count(fake, "STALL-MARKER") == 0


def test_an_agents_own_commit_has_the_users_identity(cli: Cli, env: Env,
                                                     fake: FakeModels) -> None:
    """Gemini CLI's shell runs git with GIT_CONFIG_GLOBAL=/dev/null: its `git commit` failed
    with "Author identity unknown" and the agent could never deliver. Agents get the user's
    git identity as GIT_AUTHOR_* and GIT_COMMITTER_*."""
    if cli.agent != "gemini":
        pytest.skip("the case measured is Gemini CLI's shell (aider commits by itself; codex's "
                    "own sandbox keeps the user's git config)")
    env.write_config(agent={"name": cli.agent}, sandboxed=True)  # no approval asked
    fake.script = [Reply(text="Committing.", shell="git commit -q --allow-empty -m "
                         "'A-1: made by the agent' && touch committed.ok"), Reply(text="Done.")]
    sid = env.spawn()
    fleet = env.fleet()
    wt = Path(fleet.store.session(sid).worktree or "")
    retry_until(lambda: (wt / "committed.ok").exists(), timeout=60,
                message=f"the agent's commit\n{tmux.capture(fleet.srv, sid)}")
    log = git(wt, "log", "-1", "--format=%an <%ae>|%s")
    assert log.endswith("|A-1: made by the agent"), log
    assert log.split("|")[0] == "ao test <ao@example.invalid>", log  # the user's (conftest)


def test_ao_pushes_for_an_agent_that_cannot(cli: Cli, env: Env, fake: FakeModels,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Aider commits each edit itself, but under --yes-always (ao's sandboxed mode) it answers
    "no" to every shell command, `git push` too: its work never reached the remote and no PR
    opened. ao pushes its commits for it once it is idle."""
    if cli.agent != "aider":
        pytest.skip("codex, gemini and Claude Code push by themselves")
    from ao import config
    from ao.loop import telling
    from ao.loop.daemon import Daemon

    monkeypatch.setattr(telling, "PUSH_FOR_AGENT_GRACE", 0.0)
    env.write_config(agent={"name": "aider"}, sandboxed=True)
    fake.script = [Reply(text="notes/aider.md\n```\n<<<<<<< SEARCH\n=======\nwritten by "
                               "aider\n>>>>>>> REPLACE\n```\n")]
    sid = env.spawn()
    fleet = env.fleet()
    wt = Path(fleet.store.session(sid).worktree or "")
    try:
        retry_until(lambda: "written by aider" in git(wt, "log", "-p", "-1"), timeout=60)
    except AssertionError:
        raise AssertionError(f"{git(wt, 'status', '--short')}\n{git(wt, 'log', '-2')}\n"
                             f"{tmux.capture(fleet.srv, sid)[-600:]}") from None
    assert git(env.remote, "branch", "--list", "ao/a-1") == ""  # aider did not push
    d = Daemon(config.load(), fleet.store, env.server())

    def pushed() -> bool:
        d.tick()
        return git(env.remote, "branch", "--list", "ao/a-1") != ""

    retry_until(pushed, timeout=60, interval=0.5, message="ao's push for the agent")
    assert git(env.remote, "rev-parse", "ao/a-1") == git(wt, "rev-parse", "HEAD")
    assert "branch.pushed_for_agent" in {e["type"] for e in events_all(sid)}


def events_all(sid: str) -> list[dict[str, object]]:
    log = paths.session_dir("shop", sid) / "events.log"
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_each_clis_usage_is_read_from_its_own_record(cli: Cli, env: Env,
                                                    fake: FakeModels) -> None:
    """Each CLI's own record of what it spent, found by ao and read on at each poll: Codex's
    rollout file (its running totals), Gemini CLI's chat record (each reply's tokens, once
    per reply), Aider's analytics log (aider's own count of a streamed reply, marked an
    estimate). Where the CLI records the API's usage, the sums match the fake's to the
    token: 12 input and 7 output tokens a reply it served."""
    from ao import config
    from ao.loop.daemon import Daemon
    from ao.record.store import Store

    fake.script = [Reply(text="done")]
    sid = env.spawn()
    settled(env, sid, fake)
    store = Store()
    d = Daemon(config.load(), store, env.server())
    # the replies the fake served to the CLI's turns (not Codex's title requests nor Gemini's
    # model router: neither is in the CLI's record)
    turns = {"codex": "/responses", "gemini": ":streamGenerateContent",
             "aider": "/chat/completions"}[cli.agent]

    def served() -> int:
        return sum(1 for path, body in list(fake.requests) if path.endswith(turns) and
                   (cli.agent != "aider" or body.get("stream")))

    def counted() -> bool:
        d.tick()
        rows = store.agent_usage(sid)
        if not rows or int(rows[0]["output_tokens"]) == 0:
            return False
        return cli.agent == "aider" or (int(rows[0]["input_tokens"]),
                                        int(rows[0]["output_tokens"])) == \
            (12 * served(), 7 * served())

    try:
        retry_until(counted, timeout=30, interval=0.5, message=f"{cli.agent}'s usage read")
    except AssertionError:
        raise AssertionError((store.agent_usage(sid), served())) from None
    row = store.agent_usage(sid)[0]
    where = {"codex": "rollout-", "gemini": "/chats/session-", "aider": "aider-analytics"}
    assert where[cli.agent] in str(row["transcript"]), row
    model = {"codex": "gpt-5", "gemini": "gemini-", "aider": ""}[cli.agent]
    assert str(row["model"]).startswith(model) and float(row["cost_usd"]) > 0, row
    assert bool(row["estimated"]) == (cli.agent != "codex"), row  # priced models only
    before = dict(row)
    d.tick()  # nothing new written: nothing counted twice
    assert {k: store.agent_usage(sid)[0][k] for k in ("input_tokens", "output_tokens")} == \
        {k: before[k] for k in ("input_tokens", "output_tokens")}
    r = run_ao("usage", "--json")
    assert any(x["session"] == sid and x["agent"] == cli.agent for x in
               json.loads(r.out)["sessions"]), r.out


def test_codex_at_its_usage_limit_is_limited_until_the_reset(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Responses API refuses the turn as it does at a ChatGPT plan's limit (429,
    `usage_limit_reached` with `resets_at`); the real Codex says "You've hit your usage
    limit. ... try again at 10:54 PM." over two lines; ao reads the reset from it."""
    import os

    cli = CLIS[0]
    if shutil.which(cli.binary) is None:
        pytest.skip(f"`{cli.binary}` is not installed; `.ci/run` installs {cli.package}")
    with serve() as f:
        _configure(cli, f.url, Path(os.environ["HOME"]), monkeypatch)
        env.write_config(agent={"name": "codex"})
        f.script = [Reply(limit_reset_in=3600)]
        sid = env.spawn()
        reset = time.time() + 3600
        try:
            wait_activity(env, sid, Activity.LIMITED, timeout=40)
        except AssertionError as e:
            raise AssertionError(str(e)) from None
        s = env.fleet().store.session(sid)
        assert s.limited_until is not None and abs(s.limited_until - reset) < 75, \
            (s.limited_until, reset)
        assert "hit your usage limit" in tmux.capture(env.server(), sid)
