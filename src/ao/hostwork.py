"""A session's workspace on an SSH host (docs/hosts.md): the host's clone of the project, the
session's worktree and its folder, each step one round trip through the runner (`hosts.run`).

Layout under the host's `workdir` (made absolute once: tmux needs an absolute cwd):
`repos/<project>` (a clone of the project's remote, made on first use and fetched after),
`worktrees/<project>/<session>`, `sessions/<project>/<session>` (prompt, pane log, saved work).
The same rules as a local worktree (workspace.py): a branch on the remote is continued, a
worktree is removed only when nothing in it would be lost, and a removed worktree takes its
local branch with it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

from . import hosts
from .errors import ExternalError
from .hosts import Host

_ABS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Place:
    """Where a session's files are on its host."""

    repo: PurePosixPath
    worktree: PurePosixPath
    session_dir: PurePosixPath


def workdir(host: Host) -> PurePosixPath:
    """The host's workdir as an absolute path (made if missing)."""
    key = (host.name, host.workdir)
    if key not in _ABS:
        wd = shlex.quote(host.workdir)
        r = _sh(host, f"mkdir -p {wd} && cd {wd} && pwd -P", "make its workdir")
        _ABS[key] = r.strip().splitlines()[-1]
    return PurePosixPath(_ABS[key])


def place(host: Host, project: str, sid: str) -> Place:
    wd = workdir(host)
    return Place(wd / "repos" / project, wd / "worktrees" / project / sid,
                 wd / "sessions" / project / sid)


def _sh(host: Host, script: str, what: str, *args: str, input: str | None = None,
        timeout: float = 300) -> str:
    r = hosts.run(host, ["sh", "-c", script, "ao", *args], input=input, timeout=timeout)
    if r.returncode != 0:
        err = (r.stderr or r.stdout or "").strip().splitlines()
        raise ExternalError(f"host {host.name}: could not {what}: "
                            f"{err[-1] if err else f'exit {r.returncode}'}",
                            "run `ao hosts check`")
    return r.stdout


# $1 url  $2 remote  $3 default branch  $4 branch  $5 repo  $6 worktree  $7 session dir
# $8 mode: fresh (an earlier branch here goes to the attic), reuse (an existing worktree is
# kept: a restore), or new; then the patterns to exclude from git status
_MAKE = r"""
set -e
url=$1 remote=$2 default=$3 branch=$4 repo=$5 wt=$6 sd=$7 mode=$8
mkdir -p "$(dirname "$repo")" "$(dirname "$wt")" "$sd"
if [ ! -e "$repo/.git" ]; then
  rm -rf "$repo.part"
  git clone -q --no-checkout --origin "$remote" "$url" "$repo.part"
  mv "$repo.part" "$repo"
fi
cd "$repo"
shift 8
git remote set-url "$remote" "$url"
git fetch -q "$remote" "+refs/heads/$default:refs/remotes/$remote/$default"
if [ -e "$wt" ] && [ "$mode" = reuse ] && git -C "$wt" rev-parse --git-dir >/dev/null 2>&1
then echo "exists"; exit 0; fi
if [ -e "$wt" ]; then echo "$wt already exists" >&2; exit 3; fi
git worktree prune
if [ "$mode" = fresh ] && git show-ref -q --verify "refs/heads/$branch"; then
  git branch -q -m "$branch" "attic/$branch-$(date +%Y%m%d-%H%M%S)"
fi
if git show-ref -q --verify "refs/heads/$branch"; then
  git worktree add -q "$wt" "$branch"; echo "local"
elif git ls-remote --exit-code -q --heads "$remote" "$branch" >/dev/null 2>&1; then
  git fetch -q "$remote" "+refs/heads/$branch:refs/remotes/$remote/$branch"
  git worktree add -q --track -b "$branch" "$wt" "refs/remotes/$remote/$branch"; echo "remote"
else
  git worktree add -q --no-track -b "$branch" "$wt" "refs/remotes/$remote/$default"; echo "new"
fi
ex="$(git rev-parse --path-format=absolute --git-common-dir)/info/exclude"
mkdir -p "$(dirname "$ex")"; touch "$ex"
for pattern in .ao/ "$@"; do grep -qxF "$pattern" "$ex" || echo "$pattern" >> "$ex"; done
"""


def make_worktree(host: Host, where: Place, url: str, remote: str, default_branch: str,
                  branch: str, mode: str = "new", excludes: tuple[str, ...] = ()) -> str:
    """Clone or fetch the project on the host and add the session's worktree on `branch`
    (the host's own branch, else the remote's, else new from the default branch). Returns
    which of `local`, `remote`, `new` (or `exists`, for `mode` reuse) it was."""
    out = _sh(host, _MAKE, "make the worktree", url, remote, default_branch, branch,
              str(where.repo), str(where.worktree), str(where.session_dir), mode, *excludes)
    return (out.strip().splitlines() or ["new"])[-1]


def write(host: Host, path: PurePosixPath, text: str) -> None:
    _sh(host, 'mkdir -p "$(dirname "$1")" && cat > "$1"', f"write {path}", str(path),
        input=text)


def run_in(host: Host, cwd: PurePosixPath, command: str, timeout: float = 600) -> None:
    """A project's `post_create` command, in the worktree on the host."""
    _sh(host, 'cd "$1" && eval "$2"', f"run `{command}`", str(cwd), command, timeout=timeout)


def remove_dir(host: Host, path: PurePosixPath) -> None:
    hosts.run(host, ["rm", "-rf", "--", str(path)], timeout=60)


def read_tail(host: Host, path: PurePosixPath, lines: int) -> str:
    r = hosts.run(host, ["tail", "-n", str(lines), str(path)], timeout=30)
    return r.stdout if r.returncode == 0 else ""


# $1 repo  $2 worktree  $3 remote  $4 default  $5 branch  $6 force (1/0)  $7 saved dir
_REMOVE = r"""
repo=$1 wt=$2 remote=$3 default=$4 branch=$5 force=$6 saved=$7
cd "$repo" 2>/dev/null || { echo "worktree none"; exit 0; }
git fetch -q "$remote" "+refs/heads/$default:refs/remotes/$remote/$default" 2>/dev/null
why=""
if [ -e "$wt" ]; then
  if ! git -C "$wt" rev-parse --git-dir >/dev/null 2>&1; then
    [ -n "$(ls -A "$wt")" ] && why="no usable .git, so its files cannot be checked"
  else
    n=$(git -C "$wt" status --porcelain --untracked-files=all | grep -cv '^.. \.ao/' || true)
    [ "$n" != 0 ] && why="$n uncommitted or untracked file(s)"
    c=$(git -C "$wt" rev-list --count HEAD --not --remotes="$remote" 2>/dev/null || echo 1)
    [ "$c" != 0 ] && why="${why:+$why; }$c commit(s) not on the remote"
  fi
fi
if [ -n "$why" ] && [ "$force" = 1 ]; then
  mkdir -p "$saved"; stamp=$(date +%Y%m%d-%H%M%S)
  git -C "$wt" add -A && git -C "$wt" diff --cached --binary HEAD > "$saved/work-$stamp.patch"
  git -C "$wt" bundle create -q "$saved/commits-$stamp.bundle" HEAD --not \
    --remotes="$remote" 2>/dev/null || true
  echo "saved $saved/work-$stamp.patch"; why=""
fi
if [ -n "$why" ]; then echo "worktree kept"; echo "why $why"; echo "branch kept"; exit 0; fi
[ -e "$wt" ] && git worktree remove --force --force "$wt" 2>/dev/null; rm -rf "$wt"
git worktree prune
echo "worktree removed"
if [ -n "$branch" ] && git show-ref -q --verify "refs/heads/$branch"; then
  c=$(git rev-list --count "refs/heads/$branch" --not --remotes="$remote" 2>/dev/null || echo 1)
  if [ "$c" = 0 ] || [ "$force" = 1 ]; then
    git branch -q -D "$branch" && echo "branch deleted"
  else
    echo "branch kept"; echo "why branch $branch has $c commit(s) not on the remote"
  fi
fi
"""


@dataclass
class Removal:
    worktree: str = "none"  # none | kept | removed
    branch: str = "none"  # none | kept | deleted
    why: list[str] | None = None
    saved: list[str] | None = None


def remove_worktree(host: Host, where: Place, remote: str, default_branch: str,
                    branch: str | None, force: bool) -> Removal:
    """Remove the session's worktree on the host unless that would lose work (uncommitted
    files, commits not on the remote); `force` saves that work in the session's folder on the
    host first. The branch goes with the worktree when all it holds is on the remote."""
    out = _sh(host, _REMOVE, "check the worktree", str(where.repo), str(where.worktree),
              remote, default_branch, branch or "", "1" if force else "0",
              str(where.session_dir / "saved"), timeout=120)
    r = Removal(why=[], saved=[])
    for line in out.splitlines():
        key, _, rest = line.partition(" ")
        if key == "worktree":
            r.worktree = rest
        elif key == "branch":
            r.branch = rest
        elif key == "why" and r.why is not None:
            r.why.append(rest)
        elif key == "saved" and r.saved is not None:
            r.saved.append(f"{host.name}:{rest}")
    return r
