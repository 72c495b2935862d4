"""git: repositories, branches and worktrees. The only module that runs git."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .errors import BadInput, ExternalError

_GITHUB = re.compile(r"github\.com[:/]([\w.-]+)/([\w.-]+?)(?:\.git)?/?$")


def git(cwd: Path, *args: str, check: bool = True, timeout: float = 120,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, input=input,
                              env=_env())
    except FileNotFoundError:
        raise ExternalError("git is not installed", "install git (apt-get install git)") from None
    except subprocess.TimeoutExpired:
        raise ExternalError(f"git {args[0]} timed out after {timeout:g}s in {cwd}",
                            "check the remote and network") from None
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        why = msg[-1] if msg else f"exit {proc.returncode}"
        raise ExternalError(f"git {' '.join(args[:2])} failed: {why}", f"in {cwd}")
    return proc


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    # never let git stop to ask for credentials or an editor: ao runs unattended
    env.update(GIT_TERMINAL_PROMPT="0", GIT_EDITOR="true", GIT_MERGE_AUTOEDIT="no")
    return env


def repo_root(start: Path) -> Path:
    proc = git(start, "rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0:
        raise BadInput(f"{start} is not inside a git repository", "cd into your project's clone")
    return Path(proc.stdout.strip())


def remote_url(repo: Path, remote: str = "origin") -> str | None:
    proc = git(repo, "remote", "get-url", remote, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def github_slug(url: str | None) -> str | None:
    """`owner/name` from a GitHub remote URL (https or ssh), else None."""
    if not url:
        return None
    m = _GITHUB.search(url)
    return f"{m.group(1)}/{m.group(2)}" if m else None


def default_branch(repo: Path, remote: str = "origin") -> str:
    proc = git(repo, "symbolic-ref", "--short", f"refs/remotes/{remote}/HEAD", check=False)
    if proc.returncode == 0 and "/" in proc.stdout:
        return proc.stdout.strip().split("/", 1)[1]
    for name in ("main", "master"):
        if git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}",
               check=False).returncode == 0:
            return name
    proc = git(repo, "branch", "--show-current", check=False)
    return proc.stdout.strip() or "main"
