"""git against a repository's remote: its branches, fetches that survive
a lost ref-lock race, the fresh base new work starts from, a branch moved aside or deleted
under a lease. Run with workspace.py's `git` (here, or on a host inside `workspace.on`)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from ao.errors import BadInput, ExternalError
from ao.world.workspace import git, has_remote, local_branch_exists


def remote_branch_exists(repo: Path, remote: str, branch: str) -> bool:
    if not has_remote(repo, remote):
        return False
    proc = git(repo, "ls-remote", "--heads", remote, f"refs/heads/{branch}", check=False)
    return bool(proc.stdout.strip())


def remote_heads(repo: Path, remote: str, prefix: str) -> set[str]:
    """Branch names under `prefix` on the remote, in one round trip."""
    return set(remote_head_shas(repo, remote, prefix))


def remote_head_shas(repo: Path, remote: str, prefix: str) -> dict[str, str]:
    """Branches under `prefix` on the remote and the commit each points at, in one round
    trip."""
    if not has_remote(repo, remote):
        return {}
    proc = git(repo, "ls-remote", "--heads", remote, f"refs/heads/{prefix}*", check=False)
    return {line.split("refs/heads/", 1)[1]: line.split()[0] for line in
            proc.stdout.splitlines() if "refs/heads/" in line}


def delete_remote_branch(repo: Path, remote: str, branch: str, expected: str) -> bool:
    """Delete the remote branch if it still points at `expected` (a lease: a push since
    then keeps it); whether it went."""
    proc = git(repo, "push", "-q", f"--force-with-lease=refs/heads/{branch}:{expected}",
               remote, f":refs/heads/{branch}", check=False)
    return proc.returncode == 0


def fetch_retrying(repo: Path, *args: str, timeout: float = 120,
                   tries: int = 3) -> subprocess.CompletedProcess[str]:
    """`git fetch`, tried again when it lost a race for a ref lock (an agent pushing from a
    worktree of the same repository updates its remote-tracking refs at the same moment)."""
    for attempt in range(tries):
        proc = git(repo, "fetch", *args, check=False, timeout=timeout)
        if proc.returncode == 0:
            return proc
        # lost races: a ref lock, and a concurrent fetch into the same repository (seen once
        # right after a batch was SIGKILLed mid-fetch: "did not send all necessary objects")
        raced = ("cannot lock ref", "Unable to create", "did not send all necessary objects")
        if not any(x in proc.stderr for x in raced) or attempt == tries - 1:
            raise ExternalError(f"git fetch failed: {proc.stderr.strip()[-300:]}",
                                "check the remote")
        time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def fresh_base(repo: Path, remote: str, default_branch: str) -> str:
    """Fetch the default branch and return the ref new work starts from."""
    if has_remote(repo, remote):
        fetch_retrying(repo, "-q", remote, f"+refs/heads/{default_branch}:"
                       f"refs/remotes/{remote}/{default_branch}")
        return f"refs/remotes/{remote}/{default_branch}"
    if not local_branch_exists(repo, default_branch):
        raise BadInput(f"{repo} has no branch {default_branch} and no remote {remote}",
                       "set default_branch in the project's config")
    return f"refs/heads/{default_branch}"


def fetch_branch(repo: Path, remote: str, branch: str) -> None:
    if has_remote(repo, remote):
        git(repo, "fetch", "-q", remote, f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}",
            check=False)


def archive_branch(repo: Path, remote: str, branch: str) -> str:
    """Move a branch out of the way without losing it: locally and on the remote it becomes
    `attic/<branch>-<time>` (outside `ao/`, so no forge takes it for a PR). Returns the name."""
    attic = f"attic/{branch}-{time.strftime('%Y%m%d-%H%M%S')}"
    if local_branch_exists(repo, branch):
        git(repo, "branch", "-m", branch, attic)
    if remote_branch_exists(repo, remote, branch):
        fetch_branch(repo, remote, branch)
        git(repo, "push", "-q", remote, f"refs/remotes/{remote}/{branch}:refs/heads/{attic}")
        git(repo, "push", "-q", remote, "--delete", branch)
    return attic
