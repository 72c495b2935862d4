"""git: repositories, branches and worktrees. The only module that runs git.

Its commands run here, or on an SSH host inside `on(host)` (the runner seam, hosts.run): the
same rules for what a worktree holds at risk, the same saving, wherever the worktree is.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from . import hosts, paths
from .errors import BadInput, ExternalError
from .hosts import Host

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


def _remote(script: str, *args: str, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    host = _HOST.get()
    assert host is not None
    return hosts.run(host, ["sh", "-c", script, "ao", *args], input=input, timeout=timeout)


def exists(path: Path) -> bool:
    if _HOST.get() is None:
        return path.exists()
    return _remote('[ -e "$1" ] || [ -L "$1" ]', str(path)).returncode == 0


def _has_files(path: Path) -> bool:
    if _HOST.get() is None:
        return any(path.iterdir())
    return _remote('[ -n "$(ls -A "$1")" ]', str(path)).returncode == 0


def _rmtree(path: Path) -> None:
    if _HOST.get() is None:
        shutil.rmtree(path, ignore_errors=True)
    else:
        _remote('rm -rf -- "$1"', str(path))


def git(cwd: Path, *args: str, check: bool = True, timeout: float = 120,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    host = _HOST.get()
    try:
        if host is not None:
            proc = hosts.run(host, ["env", *(f"{k}={v}" for k, v in _QUIET.items()), "git",
                                    "-C", str(cwd), *args], input=input, timeout=timeout)
        else:
            proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                  timeout=timeout, input=input, env=_env())
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
    return {**os.environ, **_QUIET}


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
    return f"ao/{task.lower()}"


def has_remote(repo: Path, remote: str) -> bool:
    return remote_url(repo, remote) is not None


def ref_exists(repo: Path, ref: str) -> bool:
    return git(repo, "rev-parse", "--verify", "--quiet", ref, check=False).returncode == 0


def local_branch_exists(repo: Path, branch: str) -> bool:
    return ref_exists(repo, f"refs/heads/{branch}")


def remote_branch_exists(repo: Path, remote: str, branch: str) -> bool:
    if not has_remote(repo, remote):
        return False
    proc = git(repo, "ls-remote", "--heads", remote, f"refs/heads/{branch}", check=False)
    return bool(proc.stdout.strip())


def remote_heads(repo: Path, remote: str, prefix: str) -> set[str]:
    """Branch names under `prefix` on the remote, in one round trip."""
    if not has_remote(repo, remote):
        return set()
    proc = git(repo, "ls-remote", "--heads", remote, f"refs/heads/{prefix}*", check=False)
    return {line.split("refs/heads/", 1)[1] for line in proc.stdout.splitlines()
            if "refs/heads/" in line}


def fetch_retrying(repo: Path, *args: str, timeout: float = 120,
                   tries: int = 3) -> subprocess.CompletedProcess[str]:
    """`git fetch`, tried again when it lost a race for a ref lock (an agent pushing from a
    worktree of the same repository updates its remote-tracking refs at the same moment)."""
    for attempt in range(tries):
        proc = git(repo, "fetch", *args, check=False, timeout=timeout)
        if proc.returncode == 0:
            return proc
        if ("cannot lock ref" not in proc.stderr and "Unable to create" not in proc.stderr) \
                or attempt == tries - 1:
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


def add_worktree(repo: Path, path: Path, branch: str, base: str, reuse: bool = False) -> None:
    if exists(path):
        raise ExternalError(f"{path} already exists", "remove it, or run `ao session cleanup`")
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
    git(repo, "worktree", "prune", check=False)


def delete_branch(repo: Path, branch: str) -> None:
    if local_branch_exists(repo, branch):
        git(repo, "branch", "-D", branch)


def commits_ahead(repo: Path, remote: str, branch: str, base: str) -> int:
    """Commits on the branch (local, else the remote's copy) that `base` does not have."""
    ref = f"refs/heads/{branch}" if local_branch_exists(repo, branch) else \
        f"refs/remotes/{remote}/{branch}"
    proc = git(repo, "rev-list", "--count", f"{base}..{ref}", check=False)
    return int(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else 0


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


def common_dir(path: Path) -> Path:
    """The .git folder a repository shares with all its worktrees."""
    return Path(git(path, "rev-parse", "--path-format=absolute", "--git-common-dir")
                .stdout.strip())


def exclude(repo: Path, pattern: str) -> None:
    """Add `pattern` to the repository's info/exclude (shared by all worktrees)."""
    common = common_dir(repo)
    f = common / "info" / "exclude"
    if _HOST.get() is not None:
        _remote('mkdir -p "$(dirname "$1")"; touch "$1"; grep -qxF -- "$2" "$1" || '
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


UNKNOWN_COMMITS = "(could not be checked)"


def _elsewhere(repo: Path, remote: str, default_branch: str) -> list[str]:
    """`rev-list` arguments for what is safe elsewhere: every remote branch, and the default
    branch (local or remote-tracking, whichever exists)."""
    refs = [f"--remotes={remote}"] if has_remote(repo, remote) else []
    return refs + [b for b in (f"refs/heads/{default_branch}",
                               f"refs/remotes/{remote}/{default_branch}") if ref_exists(repo, b)]


def unpushed(worktree: Path, remote: str, default_branch: str,
             tips: tuple[str, ...] = ("HEAD",)) -> list[str]:
    """Commits on `tips` (HEAD, and the session's branch) that no remote branch and no
    default branch has. When git cannot tell, that is a risk, not a clean bill."""
    present = [t for t in tips if t == "HEAD" or ref_exists(worktree, t)]
    proc = git(worktree, "rev-list", *present, "--not",
               *_elsewhere(worktree, remote, default_branch), check=False)
    if proc.returncode != 0:
        return [UNKNOWN_COMMITS]
    return proc.stdout.split()


def branch_unpushed(repo: Path, remote: str, default_branch: str, branch: str) -> list[str]:
    """Commits on a local branch that are nowhere else (for a branch whose worktree is gone)."""
    if not local_branch_exists(repo, branch):
        return []
    return unpushed(repo, remote, default_branch, tips=(f"refs/heads/{branch}",))


def dirty(worktree: Path) -> list[str]:
    """Uncommitted changes and untracked files that are not ignored."""
    proc = git(worktree, "status", "--porcelain", "--untracked-files=all", check=False)
    return [ln[3:] for ln in proc.stdout.splitlines() if ln.strip()]


# ignored paths that are rebuilt, not written: losing them loses nothing (a project can say
# more with `disposable:`); any other ignored file (a local.env, notes) is work at risk
DISPOSABLE = ("node_modules/", ".venv/", "venv/", "__pycache__/", "*.pyc", ".pytest_cache/",
              ".mypy_cache/", ".ruff_cache/", ".tox/", "dist/", "build/", "target/", ".next/",
              ".cache/", "*.egg-info/", ".coverage", ".claude/settings.local.json", ".ao/",
              ".aider*")


def ignored_at_risk(worktree: Path, disposable: tuple[str, ...] = DISPOSABLE) -> list[str]:
    """Ignored files and folders that are not disposable (folders collapsed, so a
    node_modules costs one line)."""
    proc = git(worktree, "status", "--porcelain", "--ignored=traditional",
               "--untracked-files=normal", check=False)
    out = []
    for ln in proc.stdout.splitlines():
        if not ln.startswith("!! "):
            continue
        path = ln[3:].strip('"')
        name = path.rstrip("/").rsplit("/", 1)[-1] + ("/" if path.endswith("/") else "")
        if not any(fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(name, pat)
                   or path.startswith(pat) for pat in disposable):
            out.append(path)
    return out


def work_at_risk(worktree: Path, remote: str, default_branch: str,
                 disposable: tuple[str, ...] = DISPOSABLE, branch: str | None = None
                 ) -> list[str]:
    """Why removing this worktree would lose work; empty when it is safe."""
    if not exists(worktree):
        return []
    if not exists(worktree / ".git") or \
            git(worktree, "rev-parse", "--git-dir", check=False).returncode != 0:
        # without git we cannot tell new files from old: whatever is there stays
        return ["no usable .git, so its files cannot be checked"] if _has_files(worktree) \
            else []
    reasons = []
    changed = dirty(worktree)
    if changed:
        reasons.append(f"{len(changed)} uncommitted or untracked file(s)")
    tips = ("HEAD", f"refs/heads/{branch}") if branch else ("HEAD",)
    commits = unpushed(worktree, remote, default_branch, tips)
    if commits:
        reasons.append(f"{len(commits)} commit(s) not on the remote")
    ignored = ignored_at_risk(worktree, disposable)
    if ignored:
        reasons.append(f"{len(ignored)} ignored file(s) that are not disposable "
                       f"({', '.join(ignored[:3])}{', ...' if len(ignored) > 3 else ''})")
    stashes = git(worktree, "stash", "list", check=False).stdout.splitlines()
    mine = [ln for ln in stashes if f"On {current_branch(worktree)}:" in ln
            or f"WIP on {current_branch(worktree)}:" in ln]
    if mine:
        reasons.append(f"{len(mine)} stash(es) made on its branch (kept in the main clone)")
    return reasons


def current_branch(worktree: Path) -> str:
    return git(worktree, "branch", "--show-current", check=False).stdout.strip() or "HEAD"


def save_work(worktree: Path, dest: Path, remote: str, default_branch: str,
              disposable: tuple[str, ...] = DISPOSABLE, branch: str | None = None
              ) -> list[Path]:
    """Save uncommitted work (ignored files that are not disposable included) as a patch and
    unpushed commits as a bundle under `dest`."""
    saved: list[Path] = []
    _mkdir(dest)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ignored = ignored_at_risk(worktree, disposable)
    if (dirty(worktree) or ignored) and _HOST.get() is not None:
        patch = dest / f"uncommitted-{stamp}.patch"
        r = _remote(_SAVE, str(worktree), str(patch), *ignored, timeout=300)
        if r.returncode != 0:
            raise ExternalError(f"could not save the work in {worktree}: "
                                f"{(r.stderr or '').strip()[-200:]}", "nothing was removed")
        saved.append(patch)
    elif dirty(worktree) or ignored:
        with tempfile.TemporaryDirectory() as tmp:
            env_index = os.path.join(tmp, "index")
            env = {**_env(), "GIT_INDEX_FILE": env_index}
            subprocess.run(["git", "read-tree", "HEAD"], cwd=worktree, env=env, check=True)
            subprocess.run(["git", "add", "-A"], cwd=worktree, env=env, check=True)
            if ignored:
                subprocess.run(["git", "add", "-f", "--", *ignored], cwd=worktree, env=env,
                               check=True)
            diff = subprocess.run(["git", "diff", "--cached", "--binary", "HEAD"], cwd=worktree,
                                  env=env, check=True, capture_output=True).stdout
        patch = dest / f"uncommitted-{stamp}.patch"
        patch.write_bytes(diff)
        saved.append(patch)
    tips = ["HEAD"]
    if branch and local_branch_exists(worktree, branch):
        tips.append(f"refs/heads/{branch}")
    if unpushed(worktree, remote, default_branch, tuple(tips)):
        saved.append(bundle_commits(worktree, dest / f"unpushed-{stamp}.bundle", remote,
                                    default_branch, tips))
    return saved


def bundle_commits(repo: Path, bundle: Path, remote: str, default_branch: str,
                   tips: list[str]) -> Path:
    """A bundle of what `tips` have that the remote and the default branch do not (all of
    `tips` when those cannot be told apart)."""
    _mkdir(bundle.parent)
    proc = git(repo, "bundle", "create", str(bundle), *tips, "--not",
               *_elsewhere(repo, remote, default_branch), check=False)
    if proc.returncode != 0:
        git(repo, "bundle", "create", str(bundle), *tips)
    return bundle


# the uncommitted work of a worktree on a host as a patch: a private index, so the worktree's
# own is untouched; any failure fails the save (and nothing is removed)
_SAVE = r"""
set -e
wt=$1 patch=$2; shift 2
idx=$(mktemp); trap 'rm -f "$idx"' EXIT
export GIT_INDEX_FILE="$idx"
git -C "$wt" read-tree HEAD
git -C "$wt" add -A
[ $# -eq 0 ] || git -C "$wt" add -f -- "$@"
umask 077
git -C "$wt" diff --cached --binary HEAD > "$patch.part"
mv "$patch.part" "$patch"
"""


def _mkdir(path: Path) -> None:
    if _HOST.get() is None:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    elif _remote('mkdir -p -m 700 "$1"', str(path)).returncode != 0:
        raise ExternalError(f"cannot make {path} on its host", "see `ao hosts check`")


def head(worktree: Path) -> str:
    return git(worktree, "rev-parse", "HEAD").stdout.strip()
