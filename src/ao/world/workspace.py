"""git: repositories, branches and worktrees. The only module that runs git.

Its commands run here, or on an SSH host inside `on(host)` (the runner seam, hosts.run): the
same rules for what a worktree holds at risk, the same saving, wherever the worktree is.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

from ao import paths
from ao.errors import BadInput, ExternalError
from ao.world import hosts

if TYPE_CHECKING:
    from ao.host_config import Host

_GITHUB = re.compile(r"github\.com[:/]([\w.-]+)/([\w.-]+?)(?:\.git)?/?$")


_HOST: ContextVar[Host | None] = ContextVar("ao_workspace_host", default=None)
# never let git stop to ask for credentials or an editor: ao runs unattended
_QUIET = {"GIT_TERMINAL_PROMPT": "0", "GIT_EDITOR": "true", "GIT_MERGE_AUTOEDIT": "no"}


@contextmanager
def on(host: Host | None) -> Iterator[None]:
    """This module's commands and file checks run on `host` (None, or local: here)."""
    token = _HOST.set(None if host is None or host.local else host)
    try:
        yield
    finally:
        _HOST.reset(token)


def current_host() -> Host | None:
    """The SSH host `on()` set for this thread's work; None: this machine."""
    return _HOST.get()


def run_there(script: str, *args: str, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    host = _HOST.get()
    assert host is not None
    return hosts.run(host, ["sh", "-c", script, "ao", *args], input=input, timeout=timeout)


def exists(path: Path) -> bool:
    if _HOST.get() is None:
        return path.exists()
    return run_there('[ -e "$1" ] || [ -L "$1" ]', str(path)).returncode == 0


def has_files(path: Path) -> bool:
    if _HOST.get() is None:
        return any(path.iterdir())
    return run_there('[ -n "$(ls -A "$1")" ]', str(path)).returncode == 0


def folders(path: Path) -> list[Path]:
    """The folders directly in `path` (none when it is missing), sorted."""
    if _HOST.get() is None:
        return sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    out = run_there('for d in "$1"/*/; do [ -d "$d" ] && printf "%s\\n" "${d%/}"; done; :',
                    str(path))
    if out.returncode != 0:
        raise ExternalError(f"cannot list {path}: {out.stderr.strip()[-200:]}",
                            "run `ao hosts check`")
    return sorted(Path(line) for line in out.stdout.splitlines() if line)


def disk_usage(path: Path) -> int:
    """Bytes in the files under `path` (0 when it is missing or cannot be read)."""
    if _HOST.get() is None:
        total = 0
        for root, _dirs, files in os.walk(path):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, f)).st_size
        return total
    out = run_there('du -sk -- "$1" 2>/dev/null | cut -f1', str(path))
    return int(out.stdout.strip()) * 1024 if out.stdout.strip().isdigit() else 0


def _rmtree(path: Path) -> None:
    if _HOST.get() is None:
        shutil.rmtree(path, ignore_errors=True)
    else:
        run_there('rm -rf -- "$1"', str(path))


def git(cwd: Path, *args: str, check: bool = True, timeout: float = 120,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    host = _HOST.get()
    try:
        if host is not None:
            proc = hosts.run(host, ["env", *(f"{k}={v}" for k, v in _QUIET.items()), "git",
                                    "-C", str(cwd), *args], input=input, timeout=timeout)
        else:
            proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                  timeout=timeout, input=input, env=git_env())
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


def uncommitted_diff(worktree: Path, ignored: list[str]) -> bytes:
    """Every uncommitted change of `worktree` (untracked files, and the ignored ones named)
    as a binary diff against HEAD, staged in a throwaway index: the worktree's own index is
    left as it was. Raises CalledProcessError when git fails."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**git_env(), "GIT_INDEX_FILE": os.path.join(tmp, "index")}

        def run(*args: str) -> bytes:
            return subprocess.run(["git", *args], cwd=worktree, env=env, check=True,
                                  capture_output=True).stdout

        run("read-tree", "HEAD")
        run("add", "-A")
        if ignored:
            run("add", "-f", "--", *ignored)
        return run("diff", "--cached", "--binary", "HEAD")


def detached_copy(repo: Path, sha: str, dest: Path, timeout: float = 300) -> None:
    """A clone of `repo` at `dest` that shares its objects, checked out at `sha` (detached)."""
    git(dest.parent, "clone", "-q", "--shared", "--no-checkout", str(repo), str(dest),
        timeout=timeout)
    git(dest, "checkout", "-q", "--detach", sha, timeout=timeout)


def tracked_files(repo: Path) -> list[str] | None:
    """The files git tracks in `repo`; None when it is no git repository."""
    proc = git(repo, "ls-files", check=False)
    return proc.stdout.splitlines() if proc.returncode == 0 else None


def git_env() -> dict[str, str]:
    return {**os.environ, **_QUIET}


def repo_root(start: Path) -> Path:
    proc = git(start, "rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0:
        raise BadInput(f"{start} is not inside a git repository", "cd into your project's clone")
    return Path(proc.stdout.strip())


def remote_url(repo: Path, remote: str = "origin") -> str | None:
    proc = git(repo, "remote", "get-url", remote, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def has_remote(repo: Path, remote: str) -> bool:
    return remote_url(repo, remote) is not None


def diff_from_base(worktree: Path, remote: str, default_branch: str, *args: str,
                   or_head: bool = True) -> str:
    """`git diff ARGS` of the worktree (commits and uncommitted changes) against where its
    branch left the default branch (their merge base). With no merge base: against HEAD, or
    nothing when not `or_head`."""
    base = git(worktree, "merge-base", f"refs/remotes/{remote}/{default_branch}", "HEAD",
               check=False).stdout.strip()
    if not base and not or_head:
        return ""
    return git(worktree, "diff", *args, base or "HEAD", check=False).stdout


def git_identity(repo: Path) -> dict[str, str]:
    """GIT_AUTHOR_* and GIT_COMMITTER_* from the repository's git config (user.name and
    user.email, wherever git finds them); empty where it has none."""
    out: dict[str, str] = {}
    for key, role in (("user.name", "NAME"), ("user.email", "EMAIL")):
        value = git(repo, "config", "--get", key, check=False).stdout.strip()
        if value:
            out[f"GIT_AUTHOR_{role}"] = out[f"GIT_COMMITTER_{role}"] = value
    return out


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
        if local_branch_exists(repo, name):
            return name
    proc = git(repo, "branch", "--show-current", check=False)
    return proc.stdout.strip() or "main"


# ---- branches and worktrees ------------------------------------------------------------------


@contextmanager
def locked(repo: Path) -> Iterator[None]:
    """Serialise ref-changing git commands (fetch, worktree add) on one repository across
    processes: concurrent fetches into the same remote-tracking ref fail with "cannot lock ref"."""
    key = hashlib.sha1(str(repo.resolve()).encode()).hexdigest()[:16]
    with paths.locked(paths.home() / "locks" / f"repo-{key}.lock"):
        yield


def branch_name(task: str) -> str:
    """`ao/<key>`, lower-cased, with only what a branch name and a shell take safely (a
    GitHub issue's `#12` is `ao/12`)."""
    return "ao/" + re.sub(r"[^a-z0-9._/-]", "", task.lower())


def ref_exists(repo: Path, ref: str) -> bool:
    return git(repo, "rev-parse", "--verify", "--quiet", ref, check=False).returncode == 0


def local_branch_exists(repo: Path, branch: str) -> bool:
    return ref_exists(repo, f"refs/heads/{branch}")


def require_free(path: Path) -> None:
    """A worktree's path that nothing occupies yet (a folder there is someone's work)."""
    if exists(path):
        raise ExternalError(f"{path} already exists", "remove it, or run `ao session cleanup`")


def add_worktree(repo: Path, path: Path, branch: str, base: str, reuse: bool = False) -> None:
    require_free(path)
    if reuse:
        if local_branch_exists(repo, branch):
            git(repo, "worktree", "add", "-q", str(path), branch)
        else:  # continue from the remote copy of the branch
            git(repo, "worktree", "add", "-q", "--track", "-b", branch, str(path),
                base.rsplit("/", 1)[0] + "/" + branch if base.startswith("refs/remotes/")
                else branch)
    else:
        git(repo, "worktree", "add", "-q", "--no-track", "-b", branch, str(path), base)


def remove_worktree(repo: Path, path: Path) -> None:
    if exists(path):
        git(repo, "worktree", "remove", "--force", "--force", str(path), check=False)
    if exists(path):  # not a registered worktree (half made): remove the folder itself
        _rmtree(path)
    if registered(repo, path):
        # a `git worktree add` killed outright leaves its registration "locked
        # initializing": prune keeps it, and the branch reads as checked out there for ever
        git(repo, "worktree", "remove", "--force", "--force", str(path), check=False)
    git(repo, "worktree", "prune", check=False)


def _worktree_entry(repo: Path, path: Path) -> list[str] | None:
    """`path`'s lines in `git worktree list --porcelain`, or None when git does not list it."""
    listed = git(repo, "worktree", "list", "--porcelain", check=False).stdout
    for entry in listed.split("\n\n"):
        lines = entry.splitlines()
        if lines and lines[0] == f"worktree {path}":
            return lines
    return None


def half_made(repo: Path, path: Path) -> bool:
    """A worktree git never finished making (`git worktree add` killed outright): still
    "locked initializing". Nobody has worked in it; it is not work to keep."""
    return "locked initializing" in (_worktree_entry(repo, path) or [])


def registered(repo: Path, path: Path) -> bool:
    """Whether git still lists `path` among the repository's worktrees."""
    return _worktree_entry(repo, path) is not None


def checked_out_at(repo: Path, branch: str) -> Path | None:
    """The worktree that has `branch` checked out, if any."""
    proc = git(repo, "worktree", "list", "--porcelain", check=False)
    here: Path | None = None
    for line in proc.stdout.splitlines():
        if line.startswith("worktree "):
            here = Path(line.removeprefix("worktree "))
        elif line == f"branch refs/heads/{branch}":
            return here
    return None


def delete_branch(repo: Path, branch: str) -> None:
    if local_branch_exists(repo, branch):
        git(repo, "branch", "-D", branch)


def commits_ahead(repo: Path, remote: str, branch: str, base: str) -> int:
    """Commits on the branch (local, else the remote's copy) that `base` does not have."""
    ref = f"refs/heads/{branch}" if local_branch_exists(repo, branch) else \
        f"refs/remotes/{remote}/{branch}"
    proc = git(repo, "rev-list", "--count", f"{base}..{ref}", check=False)
    return int(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else 0


def common_dir(path: Path) -> Path:
    """The .git folder a repository shares with all its worktrees."""
    return Path(git(path, "rev-parse", "--path-format=absolute", "--git-common-dir")
                .stdout.strip())


def exclude(repo: Path, pattern: str) -> None:
    """Add `pattern` to the repository's info/exclude (shared by all worktrees)."""
    common = common_dir(repo)
    f = common / "info" / "exclude"
    if _HOST.get() is not None:
        run_there('mkdir -p "$(dirname "$1")"; touch "$1"; grep -qxF -- "$2" "$1" || '
                'printf "%s\\n" "$2" >> "$1"', str(f), pattern)
        return
    f.parent.mkdir(parents=True, exist_ok=True)
    lines = f.read_text().splitlines() if f.exists() else []
    if pattern not in lines:
        with f.open("a") as fh:
            fh.write(("\n" if lines and lines[-1] else "") + pattern + "\n")


def link_into(repo: Path, worktree: Path, rel: str) -> None:
    src = (repo / rel).resolve()
    if not src.is_relative_to(repo.resolve()) or not src.exists():
        raise BadInput(f"symlink {rel!r}: no such path inside {repo}",
                       "fix `symlinks` in the project's config")
    dst = worktree / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.is_file():
        dst.unlink()
    elif dst.exists():
        raise BadInput(f"symlink {rel!r}: the worktree already has a folder there",
                       "remove it from `symlinks` or from the repository")
    dst.symlink_to(src)


def make_private_dir(path: Path) -> None:
    if _HOST.get() is None:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    elif run_there('mkdir -p -m 700 "$1"', str(path)).returncode != 0:
        raise ExternalError(f"cannot make {path} on its host", "see `ao hosts check`")


def head(worktree: Path) -> str:
    return git(worktree, "rev-parse", "HEAD").stdout.strip()
