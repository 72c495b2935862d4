"""Shared fixtures: every test gets its own AO_HOME and HOME, no TMUX, a plain shell, and a git
identity, so nothing of the developer's machine leaks in or gets touched."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = ao test\n\temail = ao@example.invalid\n"
        "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AO_HOME", str(home / ".agent-orchestrator"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("SHELL", "/bin/sh")
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("TMUX_PANE", raising=False)
    for var in ("AO_TMUX_SOCKET", "AO_POLL_INTERVAL", "GITHUB_TOKEN", "GH_TOKEN",
                "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return home


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_ao(*args: str, cwd: Path | None = None, input: str | None = None,
           env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    """Run the real `ao` command in a subprocess (exit codes and stderr as a user sees them)."""
    proc = subprocess.run(
        [sys.executable, "-m", "ao", *args], cwd=cwd, capture_output=True, text=True,
        input=input, timeout=timeout, env={**os.environ, **(env or {})},
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def ao() -> Callable[..., Result]:
    return run_ao


def retry_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
                message: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail with `message` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last: {last!r}")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A real repository with one commit on main and a bare `origin` remote."""
    bare = tmp_path / "remote.git"
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "README.md").write_text("# demo project\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "initial")
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "-q", "-u", "origin", "main")
    return work
