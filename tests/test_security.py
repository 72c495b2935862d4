"""Least privilege: what an agent's process and a CI run get of the user's environment, read
from /proc of the real processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ao import tmux

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
    from ao.forge.local import LocalForge
    from ao.store import Store

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
