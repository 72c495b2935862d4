"""Pushes that fail are seen (docs/sessions.md "Why is it waiting?"): a remote ao cannot use is
named when a project starts, and a session whose commits never reached the remote says so,
with git's own error from its terminal, instead of sitting idle with no pull request."""

from __future__ import annotations

import re
from pathlib import Path

from ao import paths, sanitize
from ao.errors import BadInput
from ao.world import workspace

# the lines git (and ssh under it) prints when a push fails
_FAILED = re.compile(r"(fatal: .*|error: .*push.*|! \[(rejected|remote rejected)\].*|"
                     r"Permission denied.*|Could not read from remote repository.*|"
                     r"does not appear to be a git repository.*|Authentication failed.*)")
_URL_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
_SCP_LIKE = re.compile(r"^[^/:]+:")  # user@host:path, host:path


def relative_remote(repo: Path, remote: str) -> str | None:
    """The remote's URL when it is a relative path: every agent pushes from its own worktree
    elsewhere on disk, where the same path names nothing."""
    url = workspace.remote_url(repo, remote)
    if not url or _URL_SCHEME.match(url) or url.startswith(("/", "~")) or \
            (_SCP_LIKE.match(url) and not url.startswith(".")):
        return None
    return url


def check_remote(repo: Path, remote: str) -> None:
    """Refuse a remote that cannot work from a worktree, before anything is started."""
    url = relative_remote(repo, remote)
    if url is not None:
        absolute = (repo / url).resolve()
        raise BadInput(f"remote {remote!r} of {repo} is a relative path ({url}): every agent "
                       "pushes from its own worktree, where it names nothing",
                       f"git -C {repo} remote set-url {remote} {absolute}")


def unreachable(repo: Path, remote: str, timeout: float = 10.0) -> str | None:
    """git's reason when the remote does not answer `ls-remote`, else None (no remote: None)."""
    if not workspace.has_remote(repo, remote):
        return None
    try:
        proc = workspace.git(repo, "ls-remote", "-q", "--heads", remote, "HEAD", check=False,
                             timeout=timeout)
    except Exception as e:  # a timeout
        return str(e)
    if proc.returncode == 0:
        return None
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return sanitize.for_terminal(lines[0] if lines else f"exit {proc.returncode}")[:200]


def unpushed(repo: Path, remote: str, branch: str, base: str) -> int:
    """Commits on `branch` that are neither on the base nor on the remote's copy of the branch
    as git last pushed or fetched it (a successful push moves `refs/remotes/<remote>/<branch>`;
    a failed one does not). Local refs only: no network."""
    proc = workspace.git(repo, "rev-list", "--count", "--ignore-missing", branch,
                         f"^refs/remotes/{remote}/{base}", f"^refs/remotes/{remote}/{branch}",
                         check=False, timeout=20)
    try:
        return int(proc.stdout.strip() or 0) if proc.returncode == 0 else 0
    except ValueError:
        return 0


def last_error(project: str, sid: str, tail: int = 32_768) -> str | None:
    """The last push error git printed in the session's terminal (its pane log), sanitized."""
    log = paths.session_dir(project, sid) / "pane.log"
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - tail))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    found = None
    for line in sanitize.strip_escapes(text).replace("\r", "\n").splitlines():
        m = _FAILED.search(line.strip())
        if m:
            found = m.group(0)
    return sanitize.for_terminal(found)[:160] if found else None


def reason(project: str, sid: str, n: int, remote: str, error: str | None = None) -> str:
    """What `ao status` says about a session whose `n` commits are not on the remote: with
    `error` (a push of ao's that was refused), that; else git's last error in its terminal."""
    error = error or last_error(project, sid)
    what = f"{n} commit{'s' * (n != 1)} not on {remote}"
    return f"{what}: {error}" if error else f"{what} (the agent has not pushed, or its push " \
        "failed: `ao logs " + sid + "`)"


def push_for_agent(worktree: Path, remote: str, branch: str) -> str | None:
    """Push the session's branch from its worktree, for an agent that cannot push by itself;
    git's reason when the push is refused, else None. Never forced: a branch that moved on
    the remote is the agent's to reconcile."""
    proc = workspace.git(worktree, "push", "-q", "-u", remote, f"HEAD:refs/heads/{branch}",
                         check=False, timeout=120)
    if proc.returncode == 0:
        return None
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return sanitize.for_terminal(lines[-1] if lines else f"exit {proc.returncode}")[:200]
