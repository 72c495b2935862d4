"""Bad input, table-driven: one line on stderr naming the problem and the way out, exit 2, no
traceback, and nothing written (no state.db row, no tmux.conf, no worktree)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from ao import paths

from .helpers import run_ao

BOMB = ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n")

PLANS = {
    "non-scalar key": ("tasks:\n  ? [a, b]\n  : {title: x}\n", "a key must be a plain value"),
    "alias bomb in a body": ("x: &x aaaaaaaa\ntasks:\n  A-1: {title: t, body: *x}\n",
                             "aliases"),
    "alias bomb": (BOMB + "tasks:\n  A-1: {title: t}\n", "aliases"),
    "1 and #1": ("tasks:\n  '1': {title: a}\n  '#1': {title: b}\n", "the same task as 1"),
    "case twins": ("tasks:\n  X-1: {title: a}\n  x-1: {title: b}\n", "the same task as X-1"),
    "too big": ("tasks:\n" + "".join(f"  T-{i}: {{title: t}}\n" for i in range(1001)),
                "at most 1000"),
    "not utf-8": (b"tasks:\n  A-1: {title: \xff\xfe}\n", "not a readable plan"),
    "5,000 deep": ("tasks: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 100 levels"),
}


@pytest.mark.parametrize("case", sorted(PLANS))
def test_bad_plans(case: str, tmp_path: Path) -> None:
    text, needle = PLANS[case]
    f = tmp_path / "p.yaml"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    for argv in (["plan", "check", str(f)], ["plan", "show", str(f)]):
        r = run_ao(*argv)
        assert r.code == 2, (case, argv, r.out, r.err)
        lines = [ln for ln in (r.err + r.out).splitlines() if ln.strip()]
        assert any(needle in ln for ln in lines), (case, r.err, r.out)
        assert "Traceback" not in r.err and len(r.err) < 2000
    assert not (paths.ao_home() / "state.db").exists()


CONFIGS = {
    "ci.command: 5": ({"ci": {"command": 5}}, "ci.command` must be str"),
    "default_branch list": ({"default_branch": ["main"]}, "default_branch` must be str"),
    "remote mapping": ({"remote": {"x": 1}}, "remote` must be str"),
    "plan list": ({"plan": ["a"]}, "plan` must be str"),
    "permission_mode list": ({"agent": {"permission_mode": ["x"]}},
                             "permission_mode` must be str"),
    "reaction message": ({"reactions": {"ci-failed": {"message": 5}}}, "message` must be str"),
    "path missing": ({"path": "/nonexistent/place"}, "does not exist"),
    "path not git": ({"path": "/tmp"}, "is not a git work tree"),
    "env not a string": ({"env": {"X": ["a"]}}, "must be a string"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_bad_configs(case: str, repo: Path) -> None:
    extra, needle = CONFIGS[case]
    spec = {"path": str(repo), **extra}
    paths.home()
    paths.config_file().write_text(json.dumps({"projects": {"shop": spec}}))
    for argv in (["config", "show"], ["batch-spawn", "shop", "A-1"], ["status"]):
        r = run_ao(*argv)
        assert r.code == 2, (case, argv, r.out, r.err)
        assert needle in r.err and r.err.count("\n") == 1, (case, r.err)
    assert not (paths.ao_home() / "tmux.conf").exists()
    assert not (paths.ao_home() / "state.db").exists()


def test_config_that_is_not_utf8_or_a_bomb(repo: Path) -> None:
    paths.home()
    for raw, needle in ((b"projects: {shop: {path: \xff}}\n", "not UTF-8"),
                        (BOMB.encode() + b"projects: {}\n", "aliases")):
        paths.config_file().write_bytes(raw)
        r = run_ao("config", "show")
        assert r.code == 2 and needle in r.err and r.err.count("\n") == 1, r.err


def test_commands_with_bad_arguments(repo: Path) -> None:
    for argv, needle in ((["events", "-n", "0"], "--limit"), (["spawn"], "Missing argument"),
                         (["nosuch"], "No such command"), (["send", "NOPE-1", "x"], "no session")):
        r = run_ao(*argv)
        assert r.code == 2 and needle in r.err and r.err.count("\n") == 1, (argv, r.err)



def test_ao_start_says_what_really_happened(env: object, tmp_path: Path) -> None:
    """A port out of range, a busy port, a dashboard asked of a daemon running without one,
    and a repository whose config is bad: one line each, exit 2, and no daemon left running
    and no repository registered (a bad config registered first broke every later command)."""
    import socket

    from ao.config_files import registered_repos
    from ao.loop.daemon import read_state

    r = run_ao("start", "--port", "99999")
    assert r.code == 2 and "65535" in r.err and read_state() is None, r.err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_ao("start", "--port", str(port))
        assert r.code == 2 and "Address already in use" in r.err and read_state() is None, \
            r.out + r.err
        assert "Traceback" not in r.err and "Pane is dead" not in r.err
    try:
        r = run_ao("start", env={"DISPLAY": "", "WAYLAND_DISPLAY": "",
                                 "DBUS_SESSION_BUS_ADDRESS": ""})
        assert r.code == 0, r.err
        # nothing configured and no desktop: an escalation at night would reach no one
        assert "notifications reach no one" in r.err and "notify.webhook" in r.err, r.err
        r = run_ao("start", "--port", "3999")
        assert r.code == 2 and "without a dashboard" in r.err and "ao stop" in r.err, r.err
    finally:
        assert run_ao("stop").code == 0
    repo = tmp_path / "badrepo"
    repo.mkdir()
    (repo / "agent-orchestrator.yaml").write_text(
        "projects:\n  bad:\n    path: .\n    max_concurrent: zero\n")
    before = registered_repos()
    r = run_ao("start", cwd=repo)
    assert r.code == 2 and "max_concurrent" in r.err, r.err
    assert registered_repos() == before and read_state() is None
    assert run_ao("status", cwd=tmp_path).code == 0  # every later command still works


def test_a_full_disk_never_kills_the_daemon(env: object, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """ao's home on a disk that fills up: the daemon died ("the disk is full") and `ao status`
    said it was not running. It waits and tries again each poll, `ao status` says why, and
    once space is freed it goes on (a `daemon.recovered` event)."""
    import subprocess
    import time

    from .fleet_helpers import Env
    from .helpers import retry_until

    assert isinstance(env, Env)
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (`.ci/run` on this machine has it)")
    try:
        monkeypatch.setenv("AO_HOME", str(small / "ao"))
        env.write_config()
        assert run_ao("start", env={"AO_POLL_INTERVAL": "1"}).code == 0
        time.sleep(2)
        with (small / "ao" / "fill").open("wb") as f:  # the disk fills up
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        time.sleep(3)  # three polls against a full disk
        r = run_ao("status")
        assert r.code == 0 and "daemon: running" in r.out, r.out + r.err
        assert "is full" in r.out and "tries again" in r.out, r.out
        (small / "ao" / "fill").unlink()
        retry_until(lambda: "daemon.recovered" in run_ao("events").out, timeout=15,
                    message="the daemon going on")
        assert "is full" not in run_ao("status").out
    finally:
        run_ao("stop")
        subprocess.run(["umount", "-l", str(small)], capture_output=True)


def test_a_registered_repository_gone_bad_is_named_and_stop_still_stops(
        env: object, tmp_path: Path) -> None:
    """A registered repository whose config turned bad broke every command from anywhere with
    a line that named neither the file nor the way out; `ao stop` stopped the daemon and still
    answered that error (exit 2), leaving its dead pane. A dashboard asked on another port
    than the running one's is refused, not answered "already running" with exit 0."""
    from ao.loop.daemon import read_state
    from ao.world import tmux

    repo = tmp_path / "gone-bad"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    r = run_ao("init", cwd=repo)
    assert r.code == 0, r.err
    try:
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        r = run_ao("start", "--port", str(port))
        assert r.code == 0, r.out + r.err
        web = (read_state() or {}).get("web")
        assert web and str(port) in web
        r = run_ao("start", "--port", str(port + 1))
        assert r.code == 2 and f"dashboard at {web}" in r.err, r.err
        cfg_file = repo / "agent-orchestrator.yaml"
        cfg_file.write_text(cfg_file.read_text() + "    max_concurrent: -3\n")
        r = run_ao("status", cwd=tmp_path)
        assert r.code == 2 and str(cfg_file.name) in r.err and "max_concurrent" in r.err
        assert "ao init --forget" in r.err, r.err
    finally:
        r = run_ao("stop", cwd=tmp_path)
    assert r.code == 0 and "daemon stopped" in r.out, r.out + r.err
    assert read_state() is None
    assert "ao-daemon" not in tmux.sessions(tmux.server(os.environ["AO_TMUX_SOCKET"]))


def test_the_demo_without_tmux_says_so_at_once(isolated_home: Path, tmp_path: Path) -> None:
    """Without tmux, `ao demo` went on "starting" for 4 minutes before saying why."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "python3"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    r = run_ao("demo", env={"PATH": str(bin_dir)}, timeout=30)
    assert r.code != 0 and "tmux is not installed" in r.err, r.out + r.err
    assert "starting" not in r.out
