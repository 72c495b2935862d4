"""What a worktree holds that removing it would lose, and saving it first: the one rule of
teardown and cleanup, here or on a host (inside `workspace.on(host)` every command and check
below runs there)."""

from __future__ import annotations

import fnmatch
import time
from pathlib import Path

from ao.errors import ExternalError
from ao.world import workspace

UNKNOWN_COMMITS = "(could not be checked)"


def _elsewhere(repo: Path, remote: str, default_branch: str) -> list[str]:
    """`rev-list` arguments for what is safe elsewhere: every remote branch, and the default
    branch (local or remote-tracking, whichever exists)."""
    refs = [f"--remotes={remote}"] if workspace.has_remote(repo, remote) else []
    return refs + [b for b in (f"refs/heads/{default_branch}",
                               f"refs/remotes/{remote}/{default_branch}")
                   if workspace.ref_exists(repo, b)]


def unpushed(worktree: Path, remote: str, default_branch: str,
             tips: tuple[str, ...] = ("HEAD",)) -> list[str]:
    """Commits on `tips` (HEAD, and the session's branch) that no remote branch and no
    default branch has. When git cannot tell, that is a risk, not a clean bill."""
    present = [t for t in tips if t == "HEAD" or workspace.ref_exists(worktree, t)]
    proc = workspace.git(worktree, "rev-list", *present, "--not",
               *_elsewhere(worktree, remote, default_branch), check=False)
    if proc.returncode != 0:
        return [UNKNOWN_COMMITS]
    return proc.stdout.split()


def branch_unpushed(repo: Path, remote: str, default_branch: str, branch: str) -> list[str]:
    """Commits on a local branch that are nowhere else (for a branch whose worktree is gone)."""
    if not workspace.local_branch_exists(repo, branch):
        return []
    return unpushed(repo, remote, default_branch, tips=(f"refs/heads/{branch}",))


def dirty(worktree: Path) -> list[str]:
    """Uncommitted changes and untracked files that are not ignored."""
    proc = workspace.git(worktree, "status", "--porcelain", "--untracked-files=all", check=False)
    return [ln[3:] for ln in proc.stdout.splitlines() if ln.strip()]


# ignored paths that are rebuilt, not written: losing them loses nothing (a project can say
# more with `disposable:`); any other ignored file (a local.env, notes) is work at risk
DISPOSABLE = ("node_modules/", ".venv/", "venv/", "__pycache__/", "*.pyc", ".pytest_cache/",
              ".mypy_cache/", ".ruff_cache/", ".tox/", "dist/", "build/", "target/", ".next/",
              ".cache/", "*.egg-info/", ".coverage", ".claude/settings.local.json", ".ao/",
              ".aider*")


def ignored_at_risk(worktree: Path, disposable: tuple[str, ...] = DISPOSABLE) -> list[str]:
    """Ignored files and folders that are not disposable (folders collapsed, so a
    node_modules costs one line). A collapsed folder that a disposable pattern reaches into
    (`.claude/` for `.claude/settings.local.json`) is looked into: only what is in it and not
    disposable counts."""
    out = []
    for path in _ignored(worktree, "--ignored=traditional", "--untracked-files=normal"):
        if _disposable(path, disposable):
            continue
        if path.endswith("/") and any(p.startswith(path) for p in disposable):
            out += [f for f in _ignored(worktree, "--ignored=matching",
                                        "--untracked-files=all", "--", path)
                    if not _disposable(f, disposable)]
        else:
            out.append(path)
    return out


def _ignored(worktree: Path, *args: str) -> list[str]:
    proc = workspace.git(worktree, "status", "--porcelain", *args, check=False)
    return [ln[3:].strip('"') for ln in proc.stdout.splitlines() if ln.startswith("!! ")]


def _disposable(path: str, disposable: tuple[str, ...]) -> bool:
    name = path.rstrip("/").rsplit("/", 1)[-1] + ("/" if path.endswith("/") else "")
    return any(fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(name, pat) or path.startswith(pat)
               for pat in disposable)


def work_at_risk(worktree: Path, remote: str, default_branch: str,
                 disposable: tuple[str, ...] = DISPOSABLE, branch: str | None = None
                 ) -> list[str]:
    """Why removing this worktree would lose work; empty when it is safe."""
    if not workspace.exists(worktree):
        return []
    if not workspace.exists(worktree / ".git") or \
            workspace.git(worktree, "rev-parse", "--git-dir", check=False).returncode != 0:
        # without git we cannot tell new files from old: whatever is there stays
        return ["no usable .git, so its files cannot be checked"] \
            if workspace.has_files(worktree) else []
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
    stashes = workspace.git(worktree, "stash", "list", check=False).stdout.splitlines()
    mine = [ln for ln in stashes if f"On {current_branch(worktree)}:" in ln
            or f"WIP on {current_branch(worktree)}:" in ln]
    if mine:
        reasons.append(f"{len(mine)} stash(es) made on its branch (kept in the main clone)")
    return reasons


def current_branch(worktree: Path) -> str:
    return workspace.git(worktree, "branch", "--show-current", check=False).stdout.strip() or "HEAD"


def save_work(worktree: Path, dest: Path, remote: str, default_branch: str,
              disposable: tuple[str, ...] = DISPOSABLE, branch: str | None = None
              ) -> list[Path]:
    """Save uncommitted work (ignored files that are not disposable included) as a patch and
    unpushed commits as a bundle under `dest`."""
    saved: list[Path] = []
    workspace.make_private_dir(dest)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ignored = ignored_at_risk(worktree, disposable)
    if (dirty(worktree) or ignored) and workspace.current_host() is not None:
        patch = dest / f"uncommitted-{stamp}.patch"
        r = workspace.run_there(_SAVE, str(worktree), str(patch), *ignored, timeout=300)
        if r.returncode != 0:
            raise ExternalError(f"could not save the work in {worktree}: "
                                f"{(r.stderr or '').strip()[-200:]}", "nothing was removed")
        saved.append(patch)
    elif dirty(worktree) or ignored:
        patch = dest / f"uncommitted-{stamp}.patch"
        patch.write_bytes(workspace.uncommitted_diff(worktree, ignored))
        saved.append(patch)
    tips = ["HEAD"]
    if branch and workspace.local_branch_exists(worktree, branch):
        tips.append(f"refs/heads/{branch}")
    if unpushed(worktree, remote, default_branch, tuple(tips)):
        saved.append(bundle_commits(worktree, dest / f"unpushed-{stamp}.bundle", remote,
                                    default_branch, tips))
    return saved


def bundle_commits(repo: Path, bundle: Path, remote: str, default_branch: str,
                   tips: list[str]) -> Path:
    """A bundle of what `tips` have that the remote and the default branch do not (all of
    `tips` when those cannot be told apart)."""
    workspace.make_private_dir(bundle.parent)
    proc = workspace.git(repo, "bundle", "create", str(bundle), *tips, "--not",
               *_elsewhere(repo, remote, default_branch), check=False)
    if proc.returncode != 0:
        workspace.git(repo, "bundle", "create", str(bundle), *tips)
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
