"""Notifiers and event hooks, and the daemon's start/stop round trip."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from ao import config, paths
from ao.record.events import Event
from ao.record.store import Store
from ao.services.notify import Notifier

from .fleet_helpers import Env
from .helpers import REPO, retry_until, run_ao


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    got: list[dict[str, object]] = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    srv = HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", got
    srv.shutdown()


def hook(dir_: Path, name: str, script: str) -> Path:
    dir_.mkdir(parents=True, exist_ok=True)
    f = dir_ / name
    f.write_text("#!/bin/sh\n" + script)
    f.chmod(0o755)
    return f


def test_webhook_command_and_hooks(env: Env, webhook: tuple[str, list[dict[str, object]]],
                                   tmp_path: Path) -> None:
    url, got = webhook
    out = tmp_path / "cmd.json"
    cfg_file = paths.config_file()
    data = json.loads(cfg_file.read_text())
    data["notify"] = {"webhook": url, "command": f"cat > {out}"}
    cfg_file.write_text(json.dumps(data))
    seen = tmp_path / "hook.json"
    hook(paths.ao_home() / "hooks", "escalated", f"cat > {seen}\n")
    hook(env.repo / "hooks", "escalated", "echo broken >&2; exit 3\n")
    store = Store()
    ev = Event("escalated", "shop", "sho-1", "A-1", {"reason": "CI failed after 3 fix rounds"})
    Notifier(config.load(), store).notify(ev, "sho-1 A-1 needs a human", "CI failed")
    assert got == [{"text": "*sho-1 A-1 needs a human*\nCI failed"}]
    assert json.loads(out.read_text())["title"] == "sho-1 A-1 needs a human"
    assert json.loads(seen.read_text())["data"]["reason"] == "CI failed after 3 fix rounds"
    failed = list(store.db.query("SELECT data FROM events WHERE type = 'notify.failed'"))
    assert len(failed) == 1 and "exit 3: broken" in json.loads(failed[0]["data"])["why"]


def test_unreachable_webhook_is_recorded_not_raised(env: Env) -> None:
    cfg_file = paths.config_file()
    data = json.loads(cfg_file.read_text())
    data["notify"] = {"webhook": "http://127.0.0.1:9/nothing"}
    cfg_file.write_text(json.dumps(data))
    store = Store()
    Notifier(config.load(), store).notify(Event("merged", "shop"), "t", "x")
    assert [r["type"] for r in store.db.query("SELECT type FROM events")] == ["notify.failed"]


def test_post_create_hook_runs_and_a_failing_one_rolls_back(env: Env, tmp_path: Path) -> None:
    marker = tmp_path / "installed"
    hook(paths.ao_home() / "hooks", "post-create",
         f"python3 -c 'import json,sys; print(json.load(sys.stdin)[\"data\"][\"worktree\"])' "
         f"> {marker}\n")
    fleet = env.fleet()
    plan = fleet.plan_for(fleet.cfg.project("shop"))
    r = fleet.spawn("shop", "A-1", plan)
    assert r.status == "spawned", r.reason
    assert marker.read_text().strip() == str(paths.worktree_path("shop", "sho-1"))
    hook(paths.ao_home() / "hooks", "post-create", "exit 1\n")
    r = fleet.spawn("shop", "C-1", plan)
    assert r.status == "failed" and "post-create hook failed" in r.reason
    assert [s.task for s in fleet.store.sessions("shop")] == ["A-1"]


def test_shipped_hooks_are_executable_and_parse() -> None:
    for name in ("escalated", "post-create"):
        f = REPO / "hooks" / name
        assert f.stat().st_mode & 0o111, name
    import subprocess

    r = subprocess.run(["python3", str(REPO / "hooks" / "escalated")], input=json.dumps(
        {"type": "escalated", "project": "p", "data": {"reason": "x"}}), text=True,
        capture_output=True, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and "SLACK_WEBHOOK_URL is not set" in r.stderr


def test_start_status_stop(env: Env) -> None:
    r = run_ao("start")
    assert r.code == 0 and "daemon started" in r.out, r.err
    again = run_ao("start")
    assert "already running" in again.out
    retry_until(lambda: "last poll" in run_ao("status").out and "pending" not in
                run_ao("status").out, timeout=20, message="a first poll")
    st = run_ao("status", "--json")
    assert json.loads(st.out)["daemon"].startswith("running")
    r = run_ao("stop")
    assert r.code == 0 and "daemon stopped" in r.out, r.err
    assert "not running" in run_ao("status").out
