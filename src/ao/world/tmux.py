"""tmux: sessions, paste, keys, capture, pipe-pane, pane liveness. The only module that talks to
tmux. Callers pass a libtmux `Server` in; `server()` builds the one `ao` uses by default: its own
socket (`tmux -L ao`) and its own config file, so the user's tmux setup cannot leak in.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
from libtmux import Server
from libtmux.common import tmux_cmd

from ao import paths
from ao.errors import ExternalError
from ao.world.hosts import SSH_FAILED, Unreachable, ssh_argv

# the servers (tmux_server.py), re-exported: callers keep `tmux.server`
from ao.world.tmux_server import CONF as CONF
from ao.world.tmux_server import PANES_FORMAT
from ao.world.tmux_server import AoServer as AoServer
from ao.world.tmux_server import HostServer as HostServer
from ao.world.tmux_server import SshCmd as SshCmd
from ao.world.tmux_server import host_of as host_of
from ao.world.tmux_server import host_server as host_server
from ao.world.tmux_server import remote as remote
from ao.world.tmux_server import server as server

WIDTH, HEIGHT = 200, 50


def require_tmux() -> None:
    if shutil.which("tmux") is None:
        raise ExternalError("tmux is not installed", "install it: apt-get install tmux")


def _run(srv: Server, *args: str) -> list[str]:
    r = srv.cmd(*args)
    if r.returncode != 0:
        err = " ".join(r.stderr).strip() or f"exit {r.returncode}"
        raise ExternalError(f"tmux {args[0]} failed: {err}", "is tmux working? `tmux -V`")
    return list(r.stdout)


def has_server(srv: Server) -> bool:
    return srv.cmd("list-sessions", "-F", "x").returncode == 0


def has_session(srv: Server, name: str) -> bool:
    return srv.cmd("has-session", "-t", f"={name}").returncode == 0


def sessions(srv: Server, under: str | None = None) -> list[str]:
    """The server's session names; with `under`, those started in a folder below it."""
    r = srv.cmd("list-sessions", "-F", "#{session_name}\t#{session_path}")
    root = None if under is None else under.rstrip("/")
    return [name for name, _, path in (line.partition("\t") for line in r.stdout)
            if root is None or (path + "/").startswith(root + "/")] if r.returncode == 0 else []


def _only(srv: Server, name: str, command: str, env: Mapping[str, str] | None) -> str:
    """The command, run with `env` alone. The values go in a private file (0600, AO_HOME/env/)
    that the pane's shell reads before it runs the command: never `-e NAME=value`, which sits
    in the tmux client's argv (and, for the client that starts the server, in the server's
    for its whole life) where every local user reads it with `ps`. `env -i` first: nothing
    of the tmux server's environment (TMUX, its socket) reaches the agent."""
    if env is None:
        return command
    if remote(srv):  # ao's launches on a host put their environment in a file there
        # (hostwork.py) and pass none here; a caller that does gets `-e` (_remote_env)
        return command
    f = env_file(srv, name)
    body = "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items() if _NAME.fullmatch(k))
    paths.ensure_dir(f.parent)
    paths.write_atomic(f, body, mode=0o600)
    # the pane's TERM as CONF sets it, unless the environment names one; nothing here the
    # user's default shell must expand (fish and tcsh run this line too)
    return (f"exec env -i TERM=tmux-256color /bin/sh -c {shlex.quote(_SOURCE)} "
            f"{shlex.quote(str(f))} {shlex.quote(command)}")


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# the file's variables exported, then the command run by a shell that has them
_SOURCE = 'set -a; . "$0" || exit 126; set +a; exec /bin/sh -c "$1"'


def env_file(srv: Server, name: str) -> Path:
    """Where a session's environment waits for its pane (and a respawn): private to the user."""
    return paths.home() / "env" / (srv.socket_name or "default") / f"{name}.env"


def new_session(srv: Server, name: str, cwd: Path, command: str,
                env: Mapping[str, str] | None = None, log: Path | None = None) -> None:
    """A detached session running `command` in `cwd`; with `log`, its output is appended
    there (`pipe-pane`) by the same tmux command, so nothing it prints is missed."""
    args = ["new-session", "-d", "-s", name, "-c", str(cwd), "-x", str(WIDTH), "-y", str(HEIGHT),
            *_remote_env(srv, env)]
    command = _only(srv, name, command, env)
    # remain-on-exit is in our config, but a session started before it was written (or a user's
    # older server on the same socket) still gets it set explicitly
    piped = [";", "pipe-pane", "-o", "-t", f"={name}:", f"cat >> {shlex.quote(str(log))}"] \
        if log is not None else []
    _run(srv, *args, command, ";", "set-option", "-w", "-t", f"={name}:", "remain-on-exit", "on",
         *piped)


def respawn(srv: Server, name: str, cwd: Path, command: str,
            env: Mapping[str, str] | None = None) -> None:
    _run(srv, "respawn-pane", "-k", "-t", f"={name}:", "-c", str(cwd), *_remote_env(srv, env),
         _only(srv, name, command, env))


def _remote_env(srv: Server, env: Mapping[str, str] | None) -> list[str]:
    """`-e NAME=value` for a server on a host (a value ending in `;` written `\\;`, which
    tmux reads back as `;`); none here, where the environment goes through a private file."""
    if env is None or not remote(srv):
        return []
    return [x for k, v in env.items()
            for x in ("-e", f"{k}={v[:-1]}\\;" if v.endswith(";") else f"{k}={v}")]


def pipe_to(srv: Server, name: str, logfile: Path) -> None:
    _run(srv, "pipe-pane", "-o", "-t", f"={name}:", f"cat >> {shlex.quote(str(logfile))}")


def kill_session(srv: Server, name: str, grace: float = 2.0) -> bool:
    """End a session and every process its panes started. tmux's hangup reaches the pane's
    process, and an agent's helpers in their own process groups outlive it (a gemini left on
    its trust dialog, a codex app-server, a dev server the agent started): those found under
    the pane before the kill get `grace` seconds to exit, then SIGTERM, then SIGKILL."""
    procs: list[psutil.Process] = []
    if not remote(srv):  # a host's pids are not this machine's: never signal them here
        # a dead pane's pid is not looked at (the system may have given it to another
        # process), nor a live one whose parent is not this tmux server
        r = srv.cmd("list-panes", "-s", "-t", f"={name}:", "-F",
                    "#{pane_dead} #{pane_pid} #{pid}")
        live = [int(f[1]) for f in (ln.split() for ln in r.stdout)
                if len(f) == 3 and f[0] == "0" and f[1].isdigit() and f[2].isdigit()
                and _child_of(int(f[1]), int(f[2]))]
        procs = paths.process_tree(live) if r.returncode == 0 else []
    ok = srv.cmd("kill-session", "-t", f"={name}").returncode == 0
    if not remote(srv):
        with contextlib.suppress(OSError):
            env_file(srv, name).unlink()
    paths.end_processes(procs, grace)
    return ok


def _child_of(pid: int, parent: int) -> bool:
    try:
        return psutil.Process(pid).ppid() == parent
    except psutil.Error:
        return False


@dataclass(frozen=True)
class Pane:
    dead: bool
    pid: int | None
    exit_status: int | None
    command: str
    title: str


def pane(srv: Server, name: str) -> Pane | None:
    r = srv.cmd("display-message", "-p", "-t", f"={name}:",
                "#{pane_dead}\t#{pane_pid}\t#{pane_dead_status}\t#{pane_current_command}\t"
                "#{pane_title}")
    if r.returncode != 0 or not r.stdout:
        return None
    dead, pid, status, cmd, title = (r.stdout[0].split("\t") + [""] * 5)[:5]
    if not pid.isdigit():
        return None  # tmux may answer for a target that no longer exists with empty fields
    return Pane(dead == "1", int(pid) if pid.isdigit() else None,
                int(status) if status.lstrip("-").isdigit() else None, cmd, title)


@dataclass(frozen=True)
class PaneState:
    """One line of `list-panes -a`: what a tick needs to know of every session at once."""

    dead: bool
    pid: int | None
    exit_status: int | None
    activity: int  # the window's last output, epoch seconds
    title: str = ""  # the pane title (a CLI that sets its run state there)


def panes(srv: Server) -> dict[str, PaneState]:
    """Every session's first pane in one tmux round trip (liveness, exit status, last output),
    so a tick costs one command however many sessions there are. Raises Unreachable when a
    host's server could not be reached (its sessions are then not known dead)."""
    r = srv.cmd("list-panes", "-a", "-F", PANES_FORMAT)
    if r.returncode == SSH_FAILED and remote(srv):  # the connection failed, not tmux
        raise Unreachable(" ".join(r.stderr).strip()[-300:] or "ssh failed",
                          "see `ao hosts check`")
    return parse_panes(r.stdout) if r.returncode == 0 else {}


def parse_panes(lines: list[str]) -> dict[str, PaneState]:
    """`list-panes -a -F PANES_FORMAT`'s answer, by session."""
    out: dict[str, PaneState] = {}
    for line in lines:
        name, _w, _p, dead, pid, status, act, *title = (line.split("\t") + [""] * 8)
        if name in out:
            continue  # the session's first pane speaks for it
        out[name] = PaneState(dead == "1", int(pid) if pid.isdigit() else None,
                              int(status) if status.lstrip("-").isdigit() else None,
                              int(act) if act.isdigit() else 0, "\t".join(title).rstrip("\t"))
    return out


def fresh_screen(srv: Server, name: str) -> str:
    """The screen, as `capture` gives it, copy mode left first (a human scrolled back: keys
    sent in it are eaten by the mode), in one tmux command (one round trip to a host)."""
    t = f"={name}:"
    return _screen(srv.cmd("if-shell", "-F", "-t", t, "#{pane_in_mode}",
                           f"send-keys -t {t} -X cancel", ";", "capture-pane", "-p", "-t", t))


def capture(srv: Server, name: str, history: int = 0) -> str:
    """The visible screen (plus `history` lines above it), trailing blank lines removed."""
    args = ["capture-pane", "-p", "-t", f"={name}:"]
    if history:
        args += ["-S", str(-history)]
    return _screen(srv.cmd(*args))


def _screen(r: tmux_cmd, lines: list[str] | None = None) -> str:
    """A capture's lines (or `lines`), trailing blank ones removed; "" if it failed."""
    lines = list(r.stdout) if lines is None else lines
    while r.returncode == 0 and lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines) if r.returncode == 0 else ""


def screen_hash(screen: str) -> str:
    return hashlib.sha1(screen.encode()).hexdigest()[:16]


def send_keys(srv: Server, name: str, *keys: str) -> None:
    _run(srv, "send-keys", "-t", f"={name}:", *keys)


def paste(srv: Server, name: str, text: str) -> None:
    """Paste `text` through a uniquely named buffer with bracketed paste (`paste-buffer -p`).

    The buffer is loaded from a file, so its size and content never meet argument parsing,
    and deleted after pasting (`-d`), so nothing is left for a later paste to pick up.
    """
    buf = f"ao-{name}-{uuid.uuid4().hex[:12]}"
    if remote(srv):
        # this machine's files are not the host's: the text goes on standard input through
        # the connection (`load-buffer -`), never as an argument tmux would parse
        # and pasted by the same tmux command: one round trip
        assert isinstance(srv, HostServer)
        r = SshCmd(srv.ao_ssh, ["tmux", f"-L{srv.socket_name}", "-u", "load-buffer", "-b", buf,
                                "-", ";", "paste-buffer", "-p", "-d", "-b", buf, "-t",
                                f"={name}:"], input=text)
        if r.returncode != 0:
            srv.cmd("delete-buffer", "-b", buf)  # loaded but not pasted: not left behind
            raise ExternalError(f"tmux paste failed: {' '.join(r.stderr)[-200:]}",
                                "is the host reachable? `ao hosts check`")
        return
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", delete=False, prefix="ao-paste-",
                                     dir=paths.home()) as fh:
        fh.write(text)
        tmp = fh.name
    try:
        _run(srv, "load-buffer", "-b", buf, tmp)
        _run(srv, "paste-buffer", "-p", "-d", "-b", buf, "-t", f"={name}:")
    finally:
        os.unlink(tmp)
        srv.cmd("delete-buffer", "-b", buf)  # already gone after -d; harmless if so


def wait_screen(srv: Server, name: str, predicate: Callable[[str], bool], timeout: float,
                interval: float = 0.05) -> str | None:
    """Poll the screen until `predicate` holds; None on timeout or when the pane dies."""
    deadline = time.monotonic() + timeout
    while True:
        screen, dead = _look(srv, name)
        if predicate(screen):
            return screen
        if dead or time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def _look(srv: Server, name: str) -> tuple[str, bool]:
    """The screen (as `capture` gives it) and whether the pane is dead or gone, in one tmux
    command (one round trip to a host)."""
    mark = f"ao-look-{uuid.uuid4().hex[:8]}"
    r = srv.cmd("capture-pane", "-p", "-t", f"={name}:", ";", "display-message", "-p", "-t",
                f"={name}:", f"{mark} #{{pane_dead}} #{{pane_pid}}")
    lines = list(r.stdout)
    if r.returncode != 0 or not lines or not lines[-1].startswith(mark + " "):
        return "", True
    _, dead, pid = [*lines.pop().split(" "), "", ""][:3]
    return _screen(r, lines), dead == "1" or not pid.isdigit()


def attach_argv(socket: str, name: str, srv: Server | None = None) -> list[str]:
    """The command that attaches the user's terminal, inside or outside their own tmux; for
    a session on a host, through ssh with a terminal (`ssh -t`)."""
    host = host_of(srv) if srv is not None else None
    if host is not None:
        argv = ssh_argv(host)
        return [*argv[:-1], "-t", argv[-1], "--",
                shlex.join(["tmux", "-L", socket, "attach-session", "-t", f"={name}"])]
    conf = paths.home() / "tmux.conf"
    return ["tmux", "-L", socket, "-f", str(conf), "attach-session", "-t", f"={name}"]


def link_windows(srv: Server, overview: str, names: list[str],
                 labels: dict[str, str] | None = None) -> None:
    """An overview session with one window per named session: linked, not copied, so typing in
    a window types into the agent's own pane. Each window is named by its label (session and
    task) instead of whatever command runs in it."""
    srv.cmd("kill-session", "-t", f"={overview}")
    _run(srv, "new-session", "-d", "-s", overview, "-x", str(WIDTH), "-y", str(HEIGHT))
    (placeholder,) = _run(srv, "display-message", "-p", "-t", f"={overview}:", "#{window_id}")
    for i, n in enumerate(names, start=1):
        _run(srv, "link-window", "-s", f"={n}:", "-t", f"={overview}:{i}")
        if labels and n in labels:
            _run(srv, "set-option", "-w", "-t", f"={overview}:{i}", "automatic-rename", "off")
            _run(srv, "rename-window", "-t", f"={overview}:{i}", labels[n])
    _run(srv, "kill-window", "-t", placeholder)
