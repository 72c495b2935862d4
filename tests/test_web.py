"""The daemon over HTTP, with real sockets: the JSON API (same fields as `--json`), the live
event stream (filters, Last-Event-ID), actions, metrics, and the board page."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from ao import config, paths
from ao.record import events
from ao.record.events import Event
from ao.record.state import State
from ao.record.store import Store
from ao.web import WebServer, web_token

from .fleet_helpers import Env
from .helpers import run_ao


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def web(env: Env) -> Iterator[str]:
    server = WebServer(config.load(), "127.0.0.1", free_port())
    server.start()
    with_token()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        urllib.request.install_opener(None)  # type: ignore[arg-type]


def with_token() -> None:
    """urlopen as the user: every request carries the dashboard's token."""
    opener = urllib.request.build_opener()
    opener.addheaders = [("Authorization", f"Bearer {web_token()}")]
    urllib.request.install_opener(opener)


def plain(req: urllib.request.Request | str) -> int:
    """The status a request without the token gets (another local user, another page)."""
    try:
        with urllib.request.build_opener().open(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def post(url: str, body: object) -> tuple[int, object]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_api_has_the_cli_fields_and_the_stream_resumes(env: Env, web: str) -> None:
    store = Store()
    s = store.create_session("shop", "sho", "A-1", title="Add a", state=State.SPAWNING)
    store.set_state(s.id, State.WORKING)
    cli = json.loads(run_ao("session", "ls", "--json").out)
    api = get(f"{web}/api/sessions")
    assert isinstance(api, list) and set(api[0]) == set(cli[0])
    assert get(f"{web}/api/sessions/A-1")["timeline"] == []  # type: ignore[index]
    assert [p["name"] for p in get(f"{web}/api/projects")] == ["shop"]  # type: ignore[attr-defined]
    first = events.emit(Event("ci.failed", "shop", s.id, "A-1", {"n": 1}), store)
    events.emit(Event("pr.opened", "shop", s.id, "A-1", {"pr": 3}), store)
    events.emit(Event("ci.failed", "other", None, None, {"n": 2}), store)
    last_id = store.last_event_id()
    with urllib.request.urlopen(f"{web}/api/events?after=0&project=shop&type=ci.&limit=1",
                                timeout=10) as r:
        body = r.read().decode()
    assert "event: ci.failed" in body and '"n": 1' in body and "pr.opened" not in body
    ident = int(body.split("id: ")[1].split("\n")[0])
    req = urllib.request.Request(f"{web}/api/events?limit=2",
                                 headers={"Last-Event-ID": str(ident)})
    with urllib.request.urlopen(req, timeout=10) as r:
        rest = r.read().decode()
    assert "pr.opened" in rest and f"id: {last_id}" in rest and first.type == "ci.failed"


def test_actions_answer_what_the_cli_would(env: Env, web: str) -> None:
    status, out = post(f"{web}/api/projects/shop/pause", {})
    assert status == 200 and out == {"project": "shop", "paused": True}
    assert Store().paused("shop")
    status, out = post(f"{web}/api/sessions/NOPE-1/send", {"message": "hi"})
    assert status == 404 and "no session or task NOPE-1" in out["error"]  # type: ignore[index]
    status, out = post(f"{web}/api/projects/shop/explode", {})
    assert status == 400 and "no action" in out["error"]  # type: ignore[index]


def test_metrics_are_prometheus_text(env: Env, web: str) -> None:
    store = Store()
    s = store.create_session("shop", "sho", "A-1", state=State.SPAWNING)
    store.set_state(s.id, State.WORKING)
    store.set_state(s.id, State.MERGED)
    store.set_agent_usage(s.id, model="claude-sonnet-5-5", cost_usd=1.25)
    with urllib.request.urlopen(f"{web}/metrics", timeout=10) as r:
        text = r.read().decode()
        assert r.headers["content-type"].startswith("text/plain")
    assert 'ao_sessions{project="shop",state="merged"} 1' in text
    assert 'ao_merged_total{project="shop"} 1' in text
    assert "# TYPE ao_utilisation gauge" in text
    assert 'ao_agent_cost_usd{project="shop"} 1.25' in text  # the agents' own records
    assert 'ao_cost_per_merged_usd{project="shop"} 1.25' in text


def test_the_run_report_is_served_as_a_page_and_a_picture(env: Env, web: str) -> None:
    """`/api/report`: the page (the picture inside it, no script), the PNG, the figures; only
    with the token."""
    store = Store()
    s = store.create_session("shop", "sho", "A-1", state=State.SPAWNING,
                             title="<script>alert(1)</script>")
    store.set_state(s.id, State.WORKING)
    store.set_state(s.id, State.MERGED)
    with urllib.request.urlopen(f"{web}/api/report?project=shop&format=png",
                                timeout=60) as r:
        assert r.headers["content-type"] == "image/png" and r.read().startswith(b"\x89PNG")
    with urllib.request.urlopen(f"{web}/api/report?project=shop", timeout=60) as r:
        page = r.read().decode()
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert plain(f"{web}/api/report?project=shop") == 401
    try:
        urllib.request.urlopen(f"{web}/api/report?project=nope", timeout=30)
        raise AssertionError("a report of no project")
    except urllib.error.HTTPError as e:
        assert e.code == 404 and "no project 'nope'" in e.read().decode()
    assert plain(f"{web}/api/report?project=shop&format=gif") == 401  # refused before reading


def test_the_board_page_is_served(env: Env, web: str) -> None:
    with urllib.request.urlopen(f"{web}/", timeout=10) as r:
        page = r.read().decode()
    assert "ao board" in page and "/ws" in page


def test_start_with_a_port_serves_it(env: Env) -> None:
    port = free_port()
    try:
        r = run_ao("start", "--port", str(port))
        url = f"http://127.0.0.1:{port}/?token={web_token()}"
        assert r.code == 0 and url in r.out, r.err  # the address to open, with its token
        assert f"dashboard: {url}" in run_ao("status").out
        assert plain(f"http://127.0.0.1:{port}/api/projects") == 401  # loopback too
        with_token()
        assert get(f"http://127.0.0.1:{port}/api/projects")
    finally:
        urllib.request.install_opener(None)  # type: ignore[arg-type]
        run_ao("stop")


def test_other_origins_and_missing_tokens_are_refused(env: Env) -> None:
    # bound beyond 127.0.0.1 (127.0.0.2 is still this machine): a token is required
    server = WebServer(config.load(), "127.0.0.2", free_port())
    server.start()
    base = f"http://127.0.0.2:{server.port}"
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{base}/api/projects", timeout=10)
        assert e.value.code == 401
        token = (paths.ao_home() / "web.token").read_text().strip()
        assert oct((paths.ao_home() / "web.token").stat().st_mode & 0o777) == "0o600"
        req = urllib.request.Request(f"{base}/api/projects",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())[0]["name"] == "shop"
    finally:
        server.stop()


def test_a_post_from_another_origin_is_refused(env: Env, web: str) -> None:
    req = urllib.request.Request(f"{web}/api/projects/shop/pause", data=b"{}", method="POST",
                                 headers={"Origin": "http://evil.example",
                                          "content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 403 and not Store().paused("shop")


def test_stats_count_outcomes_rounds_and_time_to_merge(env: Env) -> None:
    store = Store()
    for task, end in (("A-1", State.MERGED), ("C-1", State.MERGED), ("D-1", State.KILLED)):
        s = store.create_session("shop", "sho", task, state=State.SPAWNING)
        store.set_state(s.id, State.WORKING)
        store.record_attempt(s.id, "fix-ci", f"ci:{task}")
        store.set_state(s.id, end)
    r = run_ao("stats", "--json")
    assert r.code == 0, r.err
    (row,) = json.loads(r.out)
    assert (row["merged"], row["abandoned"], row["fix_rounds"]) == (2, 1, 3)
    assert row["success_rate"] == round(2 / 3, 3) and row["p90_seconds_to_merge"] is not None
    assert "shop" in run_ao("stats").out


def test_a_stream_resumed_after_a_disconnect_loses_and_repeats_nothing(env: Env,
                                                                       web: str) -> None:
    store = Store()
    for i in range(5):
        events.emit(Event("bench.x", "shop", data={"n": i}), store)
    first = store.last_event_id() - 4

    def read(last_id: int, limit: int) -> list[int]:
        req = urllib.request.Request(f"{web}/api/events?type=bench.&limit={limit}",
                                     headers={"Last-Event-ID": str(last_id)})
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
        return [json.loads(ln[6:])["data"]["n"] for ln in text.splitlines()
                if ln.startswith("data: ")]

    got = read(first - 1, 2)  # the connection drops after two events
    for i in range(5, 8):  # more happen while it is away
        events.emit(Event("bench.x", "shop", data={"n": i}), store)
    got += read(first + 1, 6)  # the client resumes from the last id it saw
    assert got == list(range(8))


def test_loopback_needs_the_token_and_rebinding_hosts_are_refused(env: Env, web: str) -> None:
    """docs/security.md: another local user without the token, and a DNS-rebinding page
    (its Host and Origin are its own name), can neither read nor act."""
    assert plain(f"{web}/api/projects") == 401
    assert plain(urllib.request.Request(f"{web}/api/projects/shop/pause", data=b"{}",
                                        method="POST")) == 401
    port = web.rsplit(":", 1)[1]
    rebound = urllib.request.Request(
        f"{web}/api/projects/shop/pause", data=b"{}", method="POST",
        headers={"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}",
                 "content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(rebound, timeout=10)  # even with the token
    assert e.value.code == 403 and not Store().paused("shop")
    assert plain(urllib.request.Request(f"{web}/api/projects",
                                        headers={"Host": f"localhost:{port}"})) == 401
    # a forwarded port (ssh -L 8080:127.0.0.1:PORT) keeps the name: the user gets in
    forwarded = urllib.request.Request(f"{web}/api/projects",
                                       headers={"Host": "localhost:8080"})
    with urllib.request.urlopen(forwarded, timeout=10) as r:
        assert r.status == 200
    status, _ = post(f"{web}/api/projects/shop/pause", {})  # the user, same origin
    assert status == 200 and Store().paused("shop")


def test_the_token_in_the_url_becomes_a_strict_cookie_and_leaves_the_address(
        env: Env, web: str) -> None:
    urllib.request.install_opener(None)  # type: ignore[arg-type]
    opener = urllib.request.build_opener(NoRedirect())
    with pytest.raises(urllib.error.HTTPError) as e:
        opener.open(f"{web}/?token={web_token()}&fontsize=14", timeout=10)
    assert e.value.code == 302 and e.value.headers["Location"] == "/?fontsize=14"
    cookie = e.value.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and web_token() in cookie
    name_value = cookie.split(";")[0]
    req = urllib.request.Request(f"{web}/api/projects", headers={"Cookie": name_value})
    with urllib.request.build_opener().open(req, timeout=10) as r:
        assert r.status == 200
    assert plain(urllib.request.Request(f"{web}/api/projects",
                                        headers={"Cookie": name_value + "x"})) == 401


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_the_board_websocket_checks_origin_and_token(env: Env, web: str) -> None:
    """The websocket drives the board, whose keys send, kill and merge: another site's page
    (any Origin but the dashboard's) and a client without the token get no socket."""
    import asyncio

    import aiohttp

    async def handshake(headers: dict[str, str]) -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(f"{web}/ws", headers=headers) as ws:
                    await ws.close()
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return e.status

    token = {"Authorization": f"Bearer {web_token()}"}
    assert asyncio.run(handshake({**token, "Origin": "http://evil.example"})) == 403
    assert asyncio.run(handshake(token)) == 403  # no Origin: not a browser page of ours
    assert asyncio.run(handshake({"Origin": web})) == 401
    assert asyncio.run(handshake({**token, "Origin": web})) == 101


def test_bound_to_every_address_the_page_points_at_the_address_used(env: Env) -> None:
    server = WebServer(config.load(), "0.0.0.0", free_port())
    server.start()
    try:
        assert server.url() == f"http://{socket.gethostname()}:{server.port}/" \
            f"?token={web_token()}"
        with_token()
        with urllib.request.urlopen(f"http://127.0.0.2:{server.port}/", timeout=10) as r:
            page = r.read().decode()
        assert f"ws://127.0.0.2:{server.port}/ws" in page and "0.0.0.0" not in page
    finally:
        urllib.request.install_opener(None)  # type: ignore[arg-type]
        server.stop()


def test_json_values_carry_no_escape_or_control_bytes(env: Env, web: str) -> None:
    """A title or an event from outside reaches a client that prints the JSON: no ESC, BEL,
    NUL or C1 byte survives decoding."""
    store = Store()
    hostile = "A\x1b]52;c;aGk=\x07B\x00C\x9b31mD\x1b[2J"
    s = store.create_session("shop", "sho", "A-1", title=hostile, state=State.SPAWNING)
    events.emit(Event("ci.failed", "shop", s.id, "A-1", {"log": hostile}), store)
    title = get(f"{web}/api/sessions/{s.id}")["title"]  # type: ignore[index]
    with urllib.request.urlopen(f"{web}/api/events?after=0&limit=1", timeout=10) as r:
        line = next(ln for ln in r.read().decode().splitlines() if ln.startswith("data: "))
    log = json.loads(line[6:])["data"]["log"]
    for text in (title, log):
        assert not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f for c in text), repr(text)
        assert "A" in text and "D" in text


def test_github_webhooks_wake_the_daemon_only_when_signed(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """`POST /webhooks/github` needs no dashboard token but the webhook's secret: a delivery
    signed as GitHub signs it, for a project's repository, wakes the daemon; a forged or
    unsigned one is refused and wakes nothing; without the secret set, the endpoint is off;
    the path opens nothing else of the dashboard."""
    from .fake_github import deliver

    env.write_config(repo="acme/shop", forge="github")
    issue = {"action": "labeled", "label": {"name": "ai-implement"},
             "issue": {"number": 7, "title": "x"}, "repository": {"full_name": "Acme/Shop"}}
    wake = paths.wake_file()

    def serve(secret: str | None) -> WebServer:
        if secret is None:
            monkeypatch.delenv("AO_GITHUB_WEBHOOK_SECRET", raising=False)
        else:
            monkeypatch.setenv("AO_GITHUB_WEBHOOK_SECRET", secret)
        server = WebServer(config.load(), "127.0.0.1", free_port())
        server.start()
        return server

    off = serve(None)
    try:
        status, body, _ = deliver(f"http://127.0.0.1:{off.port}/webhooks/github", "s3cret",
                                  "issues", issue)
        assert status == 404 and "AO_GITHUB_WEBHOOK_SECRET" in str(body["hint"])
    finally:
        off.stop()
    server = serve("s3cret")
    url = f"http://127.0.0.1:{server.port}/webhooks/github"
    try:
        wake.unlink(missing_ok=True)
        for forged in ("not-the-secret", None):
            status, body, headers = deliver(url, None, "issues", issue, signed_with=forged)
            assert status == 401 and not wake.exists(), body
        status, body, headers = deliver(url, "s3cret", "issues", issue)
        assert status == 200 and body["woke"] == ["shop"] and wake.exists(), body
        assert "Set-Cookie" not in headers  # no dashboard session handed out
        assert deliver(url, "s3cret", "ping", {"zen": "hi"})[0] == 200
        other = {**issue, "repository": {"full_name": "someone/else"}}
        wake.unlink()
        assert deliver(url, "s3cret", "issues", other)[0] == 202 and not wake.exists()
        assert deliver(url, "s3cret", "star", issue)[0] == 202 and not wake.exists()
        # the signed path is the only way in without the token
        req = urllib.request.Request(f"http://127.0.0.1:{server.port}/api/projects/shop/pause",
                                     data=b"{}", method="POST",
                                     headers={"X-Hub-Signature-256": "sha256=00"})
        assert plain(req) == 401
    finally:
        server.stop()


def test_the_diff_of_a_session_is_served(env: Env, web: str) -> None:
    """`GET /api/sessions/<ref>/diff`: what its agent changed, as the CLI shows it, for the
    token's holder only."""
    env.write_config(agent={"command": "cat"})
    sid = env.spawn("A-1")
    wt = env.commit_in_worktree(sid, {"done.txt": "committed\n"})
    (wt / "new.txt").write_text("x\n")
    got = get(f"{web}/api/sessions/{sid}/diff")
    assert isinstance(got, dict)
    assert "+committed" in got["diff"] and "done.txt" in got["stat"]
    assert got["untracked"] == ["new.txt"]
    assert plain(f"{web}/api/sessions/{sid}/diff") == 401  # the token, as everywhere
