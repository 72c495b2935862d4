"""Shared fixtures: every test gets its own AO_HOME and HOME, no TMUX, a plain shell, and a git
identity, so nothing of the developer's machine leaks in or gets touched."""

from __future__ import annotations

import gc
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .fleet_helpers import env
from .helpers import Result, git, run_ao

__all__ = ["env"]


# A shell that starts a job in the background without job control (`cmd &` in a script, a
# nohup'd CI) gives it SIGINT ignored, and every process below inherits that: the tests that
# press Ctrl-C on a real `ao` would then test nothing. A Python handler here is not inherited
# (exec resets it to the default), so each `ao` the tests start takes Ctrl-C as a user's does.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def collected() -> Iterator[None]:
    """Each test's garbage collected at its end, its finalizers run here: one run later, in the
    middle of an `ast.parse` (pytest's own, formatting a failure), trips CPython 3.11.7's "AST
    constructor recursion depth mismatch" SystemError (python/cpython#106905), which crashed
    a whole run as an INTERNALERROR. asyncio's subprocess transports of a closed loop are the
    ones seen doing it."""
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def isolated_tmux(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """tmux sockets in a private folder (short: socket paths are limited to ~100 bytes)."""
    d = tempfile.mkdtemp(prefix="aot-")
    monkeypatch.setenv("TMUX_TMPDIR", d)
    yield
    shutil.rmtree(d, ignore_errors=True)


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
    # tables size themselves to COLUMNS: a test that wants a width says so
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("SHELL", "/bin/sh")
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("TMUX_PANE", raising=False)
    for var in ("AO_TMUX_SOCKET", "AO_POLL_INTERVAL", "GITHUB_TOKEN", "GH_TOKEN",
                "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def ao() -> Callable[..., Result]:
    return run_ao


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


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    """Skipped tests said by what they need, and the one command that runs them all."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    why: dict[str, int] = {}
    for rep in skipped:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        reason = reason.removeprefix("Skipped: ")
        why[reason] = why.get(reason, 0) + 1
    terminalreporter.write_sep("-", f"{len(skipped)} skipped: what they need")
    for reason, n in sorted(why.items(), key=lambda x: -x[1]):
        terminalreporter.write_line(f"{n:4d}  {reason}")
    terminalreporter.write_line("`bash .ci/run` installs all of it and runs every test.")
