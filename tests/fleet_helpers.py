"""Fixtures for tests that run real sessions: a repository with a bare remote, a project
configured for it, and a private tmux server per test."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from libtmux import Server

from ao import config, paths
from ao.record.store import Store
from ao.services.fleet import Fleet
from ao.world import tmux

from .helpers import git

PLAN = """\
tasks:
  A-1: {title: First task}
  B-1: {title: Second task, deps: [A-1]}
  C-1: {title: Third task}
  D-1: {title: Fourth task}
"""


@dataclass
class Env:
    repo: Path
    remote: Path
    plan_file: Path
    socket: str

    def write_config(self, **project: object) -> None:
        spec = {"path": str(self.repo), "agent": "demo", "plan": "plans/p.yaml", **project}
        f = paths.config_file()
        paths.home()
        f.write_text(json.dumps({"projects": {"shop": spec}}))

    def fleet(self) -> Fleet:
        return Fleet(config.load(), Store(), tmux.server(self.socket))

    def server(self) -> Server:
        return tmux.server(self.socket)

    def spawn(self, task: str = "A-1") -> str:
        """Spawn `task` of the project as the daemon would; the session's id."""
        fleet = self.fleet()
        r = fleet.spawn("shop", task, fleet.plan_for(fleet.cfg.project("shop")))
        assert r.status == "spawned", r.reason
        assert r.session
        return r.session

    def commit_in_worktree(self, sid: str, files: dict[str, str]) -> Path:
        """Files written and committed in the session's worktree, as its agent would; the
        worktree."""
        from .helpers import git

        wt = Path(Store().session(sid).worktree or "")
        for name, text in files.items():
            (wt / name).write_text(text)
        git(wt, "add", *files)
        git(wt, "commit", "-q", "-m", f"{sid}: done")
        return wt

    def inbox(self, sid: str) -> list[str]:
        f = paths.session_dir("shop", sid) / "demo-inbox.jsonl"
        if not f.exists():
            return []
        return [json.loads(line)["text"] for line in f.read_text().splitlines()]


@pytest.fixture
def env(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    socket = f"ao-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("AO_TMUX_SOCKET", socket)
    (repo / "plans").mkdir()
    (repo / "plans" / "p.yaml").write_text(PLAN)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "plan")
    git(repo, "push", "-q", "origin", "main")
    e = Env(repo=repo, remote=tmp_path / "remote.git", plan_file=repo / "plans" / "p.yaml",
            socket=socket)
    e.write_config()
    yield e
    tmux.server(socket).kill()


def leave_own_paste(fleet: Fleet, sid: str, text: str) -> None:
    """ao's own paste of `text` left in the agent's input, as a delivery that gave up before
    its Enter leaves it (recorded pasted, then failed)."""
    from ao.world import tmux

    from .helpers import retry_until

    mid = fleet.store.queue_message(sid, text, "user")
    tmux.paste(fleet.srv, sid, text)
    fleet.store.set_stage(mid, "pasted")
    fleet.store.set_message(mid, "failed", "the agent did not take the message")
    last = text.splitlines()[-1]
    retry_until(lambda: last in tmux.capture(fleet.srv, sid), message="the leftover")
