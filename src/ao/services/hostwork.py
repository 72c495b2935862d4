"""A session's workspace on an SSH host (docs/hosts.md): the host's clone of the project, the
session's worktree and its folder, each step one round trip through the runner (`hosts.run`).

Layout under the host's `workdir` (made absolute once: tmux needs an absolute cwd):
`repos/<project>` (a clone of the project's remote, made on first use and fetched after),
`worktrees/<project>/<session>`, `sessions/<project>/<session>` (prompt, pane log, saved work).
Removing a worktree there is teardown.py's, with workspace's commands run on the host
(`workspace.on`): the same rules for what is at risk and the same saving as here.
"""

from __future__ import annotations

import contextlib
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ao import paths
from ao.errors import ExternalError
from ao.world import hosts

if TYPE_CHECKING:
    from ao.host_config import Host

_ABS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Place:
    """Where a session's files are on its host."""

    repo: PurePosixPath
    worktree: PurePosixPath
    session_dir: PurePosixPath


def workdir(host: Host) -> PurePosixPath:
    """The host's workdir as an absolute path (made if missing): asked once, then kept in
    `AO_HOME/hosts/<name>/workdir`, so naming a session's paths needs no round trip."""
    key = (host.name, host.workdir)
    if key in _ABS:
        return PurePosixPath(_ABS[key])
    cache = paths.home() / "hosts" / host.name / "workdir"
    mine = paths.installation_id()
    with contextlib.suppress(OSError, ValueError):
        # kept with the id it was marked with: a cache from before the marks (or another
        # installation's copy of this AO_HOME) is asked again, so the workdir gets its mark
        configured, absolute, marked = cache.read_text().split("\n")[:3]
        if configured == host.workdir and absolute.startswith("/") and marked == mine:
            _ABS[key] = absolute
            return PurePosixPath(absolute)
    wd = host.workdir
    # `~/x` in the config means the login's home there, as in a shell; a relative path is
    # under that home too (not the folder a login happens to start in)
    # marked with this installation's id on first use: another installation's workdir (the
    # same account's default) is refused, not shared (its sessions' ids would collide with
    # ours, and a cleanup here would take its sessions for orphans)
    script = 'd=$1; case $d in "~"|"~/"*) d="$HOME${d#"~"}";; /*) ;; *) d="$HOME/$d";; ' \
             'esac; mkdir -p "$d" && cd "$d" || exit 1; ' \
             'if [ -s .ao-installation ]; then o=$(cat .ao-installation); ' \
             '[ "$o" = "$2" ] || { echo "other $o"; exit 0; }; ' \
             'else printf "%s\\n" "$2" > .ao-installation || exit 1; fi; pwd -P'
    out = _sh(host, script, "make its workdir", wd, mine).strip().splitlines()[-1]
    if out.startswith("other "):
        raise ExternalError(f"host {host.name}: workdir {wd} is another ao installation's "
                            f"({out.removeprefix('other ')}, not this one's {mine})",
                            f"give host {host.name} a `workdir:` of this installation's own")
    _ABS[key] = out
    paths.ensure_dir(cache.parent)
    paths.write_atomic(cache, f"{host.workdir}\n{_ABS[key]}\n{mine}\n")
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
# kept: a restore), or new; $9 ao's tmux config file there, ${10} its text; ${11} the
# default branch's commit as this machine just fetched it (empty: unknown), ${12} whether
# the branch is on the remote as this machine last saw it (yes, no, or empty: ask); then the
# patterns to exclude from git status
_MAKE = r"""
set -e
url=$1 remote=$2 default=$3 branch=$4 repo=$5 wt=$6 sd=$7 mode=$8 conf=$9 conftext=${10}
base=${11} onremote=${12}
printf '%s' "$conftext" > "$conf"
mkdir -p "$(dirname "$repo")" "$(dirname "$wt")" "$sd"
# one start at a time in the host's clone (starts on a host run side by side)
exec 9>>"$(dirname "$repo")/.$(basename "$repo").lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [ ! -e "$repo/.git" ]; then
  rm -rf "$repo.part"
  git clone -q --no-checkout --origin "$remote" "$url" "$repo.part"
  mv "$repo.part" "$repo"
fi
cd "$repo"
shift 12
git remote set-url "$remote" "$url"
# fetched only when the clone's copy is not the commit this machine just saw (the starts of
# a batch on this host fetch once)
have=$(git rev-parse -q --verify "refs/remotes/$remote/$default^{commit}" 2>/dev/null || :)
if [ -z "$base" ] || [ "$have" != "$base" ]; then
  git fetch -q "$remote" "+refs/heads/$default:refs/remotes/$remote/$default"
fi
# this session's own worktree, left by a restore's kill or a start its host cut short: kept
if [ -e "$wt" ] && git -C "$wt" rev-parse --git-dir >/dev/null 2>&1 && { [ "$mode" = reuse ] \
   || [ "$(git -C "$wt" branch --show-current)" = "$branch" ]; }
then echo "exists"; exit 0; fi
if [ -e "$wt" ]; then echo "$wt already exists" >&2; exit 3; fi
git worktree prune
if [ "$mode" = fresh ] && git show-ref -q --verify "refs/heads/$branch"; then
  git branch -q -m "$branch" "attic/$branch-$(date +%Y%m%d-%H%M%S)"
fi
if git show-ref -q --verify "refs/heads/$branch"; then
  git worktree add -q "$wt" "$branch"; echo "local"
elif [ "$onremote" = yes ] || { [ "$onremote" != no ] && \
     git ls-remote --exit-code -q --heads "$remote" "$branch" >/dev/null 2>&1; }; then
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
                  branch: str, mode: str = "new", excludes: tuple[str, ...] = (),
                  base: str = "", on_remote: bool | None = None) -> str:
    """Clone or fetch the project on the host and add the session's worktree on `branch`
    (the host's own branch, else the remote's, else new from the default branch). Returns
    which of `local`, `remote`, `new` (or `exists`, for `mode` reuse) it was. `base` (the
    default branch's commit) and `on_remote` are what this machine just saw of the remote:
    the host then fetches only what it lacks and asks the remote nothing it was told."""
    from ao.world.tmux_server import CONF

    seen = "" if on_remote is None else ("yes" if on_remote else "no")
    out = _sh(host, _MAKE, "make the worktree", url, remote, default_branch, branch,
              str(where.repo), str(where.worktree), str(where.session_dir), mode,
              str(tmux_conf(host)), CONF, base, seen, *excludes)
    return (out.strip().splitlines() or ["new"])[-1]


def write(host: Host, path: PurePosixPath | Path, text: str) -> None:
    """A private file on the host, replaced whole (written beside it, then renamed: a reader
    never sees half of it); the text travels on standard input, never in argv."""
    _sh(host, 'umask 077 && mkdir -p "$(dirname "$1")" && cat > "$1.ao-tmp" && '
        'mv "$1.ao-tmp" "$1"', f"write {path}", str(path), input=text)


def tmux_conf(host: Host) -> PurePosixPath:
    return workdir(host) / "tmux.conf"


def stage(host: Host, files: dict[PurePosixPath, str], then: list[str] | None = None) -> None:
    """Several private files on the host in one round trip (a tar on standard input: the
    text never in argv), then the command `then`, if any (its failure is not an error)."""
    import base64
    import io
    import tarfile
    import time

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(str(path).lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    script = 'umask 077 && base64 -d | tar -x -f - -C / --no-same-owner'
    if then:
        script += ' && { "$@" >/dev/null 2>&1 || true; }'
    _sh(host, script, "write the session's files", *(then or []),
        input=base64.b64encode(buf.getvalue()).decode())


def env_file(env: dict[str, str]) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


def sourcing(env: PurePosixPath, command: str) -> str:
    """The agent's command on the host, given its environment from a private file it reads
    and removes at start: values (API keys) never appear in a command line here or there.
    The host's own login supplies the rest (HOME, PATH: the host's, not this machine's)."""
    q = shlex.quote(str(env))
    return f". {q} && rm -f {q} && exec sh -c {shlex.quote(command)}"


def run_in(host: Host, cwd: PurePosixPath, command: str, timeout: float = 600) -> None:
    """A project's `post_create` command, in the worktree on the host."""
    _sh(host, 'cd "$1" && eval "$2"', f"run `{command}`", str(cwd), command, timeout=timeout)


# $1 socket  $2 session  $3 tenths of a second of grace. The session's live panes'
# processes and everything under them, found before the kill: tmux's hangup reaches the
# pane's process, helpers in their own process groups outlive it; all get the grace to end
# (an agent writes its state on the way out), then SIGTERM, then SIGKILL
_END = r"""
sock=$1 name=$2 tenths=$3
# the live panes whose process is this tmux server's child (a pid the system gave to another
# process is not ours), then everything under them; without ps, the panes' own processes
tree=$({ tmux -L "$sock" list-panes -s -t "=$name:" -F 'P #{pane_dead} #{pane_pid} #{pid}' \
         2>/dev/null; ps -e -o pid= -o ppid= 2>/dev/null | sed 's/^ */T /'; } | awk '
  $1 == "P" && $2 == 0 { pane[$3] = $4 }
  $1 == "T" { up[$2] = $3; kids[$3] = kids[$3] " " $2; ps = 1 }
  END {
    n = 0
    for (p in pane) if (!ps || up[p] == pane[p]) q[n++] = p
    for (i = 0; i < n; i++) {
      print q[i]; k = split(kids[q[i]], c, " "); for (j = 1; j <= k; j++) q[n++] = c[j]
    }
  }')
tmux -L "$sock" kill-session -t "=$name" 2>/dev/null; rc=$?
alive() { for p in $tree; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
n=0
while [ "$n" -lt "$tenths" ] && alive; do sleep 0.1; n=$((n + 1)); done
if alive; then kill -TERM $tree 2>/dev/null; sleep 0.5; kill -KILL $tree 2>/dev/null; fi
exit $rc
"""


def end_session(host: Host, socket: str, name: str, grace: float = 2.0) -> bool:
    """tmux.kill_session for a session on the host, in one round trip: the session ended,
    and its processes given `grace` seconds to exit before they are made to. Raises
    hosts.Unreachable when the host does not answer."""
    r = hosts.run(host, ["sh", "-c", _END, "ao", socket, name, str(round(grace * 10))],
                  timeout=grace + 30)
    return r.returncode == 0


def remove_dir(host: Host, path: PurePosixPath) -> None:
    hosts.run(host, ["rm", "-rf", "--", str(path)], timeout=60)


def read_tail(host: Host, path: PurePosixPath, lines: int) -> str:
    r = hosts.run(host, ["tail", "-n", str(lines), str(path)], timeout=30)
    return r.stdout if r.returncode == 0 else ""


# $1 socket  $2 the list-panes format  $3 marker; then (session, hook file, offset) triples
_POLL = r"""
sock=$1 fmt=$2 mark=$3; shift 3
tmux -u -L "$sock" list-panes -a -F "$fmt" 2>/dev/null
echo "$mark panes $?"
while [ $# -ge 3 ]; do
  sid=$1 f=$2 off=$3; shift 3
  [ -f "$f" ] || continue
  n=$(( $(wc -c < "$f") - off ))
  [ "$n" -gt 0 ] || continue
  printf '%s hooks %s ' "$mark" "$sid"
  tail -c +$((off + 1)) "$f" | head -c "$n" | base64 | tr -d '\n'; echo
done
"""


def poll(host: Host, socket: str, reads: list[tuple[str, PurePosixPath, int]],
         timeout: float | None = None) -> tuple[list[str] | None, dict[str, bytes]]:
    """One round trip for a poll of the host: `list-panes -a` of its tmux server (None when
    no server runs) and the new bytes of each session's hook file from its offset. Raises
    hosts.Unreachable when the host does not answer, ExternalError when its answer is not
    whole."""
    import base64
    import secrets

    from ao.world.tmux_server import PANES_FORMAT

    mark = f"@@ao-{secrets.token_hex(8)}"  # the panes' titles are the agents': unguessable
    args = [socket, PANES_FORMAT, mark]
    for sid, path, offset in reads:
        args += [sid, str(path), str(offset)]
    # a poll's question: unanswered in a moment means the host (or the link) is gone
    r = hosts.run(host, ["sh", "-c", _POLL, "ao", *args],
                  timeout=timeout or hosts.CONNECT_TIMEOUT + 5, silence_is_down=True)
    lines: list[str] = []
    panes: list[str] | None = None
    answered = False
    chunks: dict[str, bytes] = {}
    for line in r.stdout.splitlines():
        if not line.startswith(mark + " "):
            lines.append(line)
            continue
        _, what, *rest = line.split(" ")
        if what == "panes":
            answered = True
            panes = lines if rest == ["0"] else None
        elif what == "hooks" and len(rest) == 2:
            chunks[rest[0]] = base64.b64decode(rest[1])
    if not answered:  # cut short: no tmux server would read as every agent there gone
        err = (r.stderr or "").strip().splitlines()
        raise ExternalError(f"host {host.name}: the poll's answer was cut short"
                            + (f" ({err[-1][:120]})" if err else ""), "run `ao hosts check`")
    return panes, chunks


def read_from(host: Host, path: PurePosixPath, offset: int) -> bytes:
    """A file's bytes from `offset` on the host (empty if it is not there)."""
    return _tail(host, path, f"+{offset + 1}") or b""


def read_end(host: Host, path: PurePosixPath, size: int) -> bytes | None:
    """A file's last `size` bytes on the host; None when it is not there."""
    return _tail(host, path, str(size))


def _tail(host: Host, path: PurePosixPath, count: str) -> bytes | None:
    """`tail -c COUNT` of a file on the host, as bytes (base64 on the way: the channel's
    answer is text); None when the file is not there. Raises hosts.Unreachable when the
    host does not answer in a moment."""
    import base64

    r = hosts.run(host, ["sh", "-c", '[ -f "$1" ] && tail -c "$2" "$1" | base64',
                         "ao", str(path), count], timeout=hosts.CONNECT_TIMEOUT + 5,
                  silence_is_down=True)
    return base64.b64decode("".join(r.stdout.split())) if r.returncode == 0 else None


class HostMachine:
    """A host's files for an agent profile's `prepare` (agents.base.Machine): its home, and
    files read and replaced over the connection under a lock of this machine's."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.name = host.name

    def home(self) -> Path:
        cache = paths.home() / "hosts" / self.name / "home"
        with contextlib.suppress(OSError):
            known = cache.read_text().strip()
            if known.startswith("/"):
                return Path(known)
        home = _sh(self.host, 'printf "%s\\n" "$HOME"', "find its home").strip()
        paths.ensure_dir(cache.parent)
        paths.write_atomic(cache, home + "\n")
        return Path(home)

    def read(self, path: Path) -> str | None:
        r = hosts.run(self.host, ["sh", "-c", '[ -f "$1" ] && cat "$1"', "ao", str(path)])
        return r.stdout if r.returncode == 0 else None

    def write(self, path: Path, text: str) -> None:
        write(self.host, path, text)

    def main_root(self, worktree: Path) -> Path:
        from ao.world import workspace

        with workspace.on(self.host):
            common = workspace.common_dir(worktree)
        return common.parent if common.name == ".git" else worktree

    def lock(self, path: Path) -> contextlib.AbstractContextManager[None]:
        import hashlib

        key = hashlib.sha1(f"{self.name}:{path}".encode()).hexdigest()[:16]
        return paths.locked(paths.home() / "locks" / f"host-{key}.lock")
