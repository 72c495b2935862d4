"""Least privilege: what an agent's process and a CI run get of the user's environment, read
from /proc of the real processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ao.world import tmux

from .fleet_helpers import Env
from .helpers import retry_until


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(x.decode().split("=", 1) for x in raw if b"=" in x)


def test_an_agent_gets_its_profile_and_project_variables_only(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_must_not_leak")
    monkeypatch.setenv("SOME_PRIVATE_THING", "also-not")
    monkeypatch.setenv("SHARED_URL", "http://example.invalid/x")
    env.write_config(env={"FROM_CONFIG": "literal", "PASSED": "${SHARED_URL}"})
    srv = env.server()
    # a tmux server started earlier, by a shell that had the token, must not hand it on either
    tmux.new_session(srv, "earlier", env.repo, "sleep 600")
    fleet = env.fleet()
    r = fleet.spawn("shop", "A-1", fleet.plan_for(fleet.cfg.project("shop")))
    assert r.status == "spawned", r.reason
    p = tmux.pane(srv, r.session or "")
    assert p is not None and p.pid is not None
    agent = environ(p.pid)
    assert "GITHUB_TOKEN" not in agent and "SOME_PRIVATE_THING" not in agent
    assert agent["FROM_CONFIG"] == "literal" and agent["PASSED"] == "http://example.invalid/x"
    assert agent["AO_SESSION"] == r.session and agent["PATH"] == os.environ["PATH"]


def test_ci_runs_with_a_minimal_environment(env: Env, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    from ao import config
    from ao.record.store import Store
    from ao.world.forge.local import LocalForge

    from .helpers import git, push_branch

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_must_not_leak")
    dump = tmp_path / "ci-env.txt"
    env.write_config(ci={"command": f"env > {dump}"}, env={"NODE_ENV": "test"})
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(env.remote), str(clone))
    push_branch(clone, "ao/a-1", {"x.txt": "x"})
    forge = LocalForge(config.load().project("shop"), Store())
    forge.create_pr("ao/a-1", "a", "")
    forge.serve(forge.poll(["ao/a-1"]).prs)
    retry_until(lambda: dump.exists() and "NODE_ENV" in dump.read_text(), timeout=30,
                message="the CI run")
    seen = dump.read_text()
    assert "GITHUB_TOKEN" not in seen and "NODE_ENV=test" in seen and "CI=true" in seen


CANARY = "ghp_canary_d9c1f0"


def cmdlines_with(secret: str) -> list[str]:
    """Every process's command line that holds `secret` (argv is world-readable)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                raw = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if secret.encode() in raw:
                argv = raw.replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{d.name}: {argv}")
    return found


def test_no_secret_on_a_command_line_or_in_tmux_and_commands_get_what_is_named(
        env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """docs/security.md: with a token in ao's environment, `ao start` and `ao spawn` (each
    may start ao's tmux server), a post_create command, an event hook and the notifier: no
    process's argv holds it, ao's tmux server's environment does not, the agent has no handle
    on ao's tmux server, and the commands get what the config names."""
    import json
    import subprocess
    import sys

    from ao import paths

    from .helpers import run_ao

    monkeypatch.setenv("GITHUB_TOKEN", CANARY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY + "_key")
    out = tmp_path / "seen"
    out.mkdir()
    hooks = paths.home() / "hooks"
    hooks.mkdir()
    (hooks / "test-notify").write_text(f"#!/bin/sh\nenv > {out}/hook\n")
    (hooks / "test-notify").chmod(0o755)
    env.write_config(post_create=[f"env > {out}/post_create"], env={"NAMED": "yes"})
    cfg = json.loads(paths.config_file().read_text())
    cfg["notify"] = {"command": f"env > {out}/notify", "desktop": False}
    paths.config_file().write_text(json.dumps(cfg))
    try:
        r = run_ao("spawn", "shop", "A-1")  # this command starts ao's tmux server
        assert r.code == 0, r.err
        assert run_ao("start").code == 0
        assert cmdlines_with(CANARY) == []
        tmux_env = subprocess.run(["tmux", "-L", env.socket, "show-environment", "-g"],
                                  capture_output=True, text=True).stdout
        assert CANARY not in tmux_env, tmux_env
        # the notifier, as the daemon calls it for an escalation
        subprocess.run([sys.executable, "-c", (
            "from ao import config; from ao.services.notify import Notifier;"
            "from ao.record.store import Store; from ao.record.events import Event;"
            "Notifier(config.load(), Store()).notify(Event('test.notify', 'shop'), 't', 'x')")],
            check=True, timeout=60)
        retry_until(lambda: all((out / n).exists() for n in ("post_create", "hook", "notify")),
                    timeout=30, message="the commands ran")
        for name in ("post_create", "hook", "notify"):
            seen = (out / name).read_text()
            assert CANARY not in seen, name
            assert "PATH=" in seen, name
        assert "NAMED=yes" in (out / "post_create").read_text()
        sid = next(ln.split()[0] for ln in r.out.splitlines() if "spawned" in ln)
        p = tmux.pane(env.server(), sid)
        assert p is not None and p.pid is not None
        agent = environ(p.pid)
        assert CANARY not in "".join(agent.values())
        assert not {"TMUX", "TMUX_PANE", "AO_TMUX_SOCKET"} & set(agent), sorted(agent)
        env_files = list((paths.home() / "env").rglob("*.env"))
        assert env_files and all(f.stat().st_mode & 0o077 == 0 for f in env_files)
    finally:
        run_ao("stop")
