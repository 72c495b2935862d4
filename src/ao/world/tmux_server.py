"""ao's tmux servers: the local one on its own socket and config file, and a host's, whose
commands go over the host's SSH connection; both answer as libtmux's own. tmux.py does
everything else with them (it re-exports these names: callers keep `tmux.server`)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from libtmux import Server
from libtmux.common import tmux_cmd

from ao import environment, paths
from ao.errors import ExternalError
from ao.world import channel
from ao.world.hosts import SSH_FAILED, ssh_argv

if TYPE_CHECKING:
    from ao.host_config import Host

# what `list-panes -a` prints of each pane (tmux.panes; hostwork.poll on a host)
PANES_FORMAT = ("#{session_name}\t#{window_index}\t#{pane_index}\t#{pane_dead}\t#{pane_pid}\t"
                "#{pane_dead_status}\t#{window_activity}\t#{pane_title}")

CONF = """\
# written by ao: the settings of ao's own tmux server
set -g remain-on-exit on
set -g history-limit 50000
set -g default-terminal "tmux-256color"
set -g escape-time 10
set -g status-left "[ao] #S "
set -g status-left-length 40
set -g set-titles off
set -g focus-events on
"""


class AoServer(Server):
    """Every command with `-u`: without a UTF-8 locale (cron, a service manager, a plain ssh
    command) tmux writes tabs and non-ASCII text in `-F` output as "_", and the
    tab-separated answers a poll parses would come back as one field. Every client runs with
    `environment.tmux_client()` alone: the client that starts the server gives it its global
    environment, which any pane can read (`show-environment -g`), so no token goes there."""

    def cmd(self, cmd: str, *args: Any, target: str | int | None = None) -> tmux_cmd:
        argv = [self.tmux_bin or shutil.which("tmux") or "tmux"]
        if self.socket_path:
            argv.append(f"-S{self.socket_path}")
        if self.socket_name:
            argv.append(f"-L{self.socket_name}")
        if self.config_file:
            argv.append(f"-f{self.config_file}")
        argv += ["-u", cmd, *(["-t", str(target)] if target is not None else []),
                 *map(str, args)]
        return LocalCmd(argv)


class LocalCmd(tmux_cmd):
    """A tmux client run here with a minimal environment, answered as libtmux's `tmux_cmd`."""

    def __init__(self, argv: list[str]) -> None:
        self.cmd = argv
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, encoding="utf-8",
                                  errors="backslashreplace", env=environment.tmux_client())
        except FileNotFoundError:
            raise ExternalError("tmux is not installed", "install it: apt-get install tmux") \
                from None
        self.returncode = proc.returncode
        self.stdout, self.stderr = _lines(proc.stdout, proc.stderr)
        if "has-session" in argv and self.stderr and not self.stdout:  # as libtmux does
            self.stdout = [self.stderr[0]]


def _lines(out: str, err: str) -> tuple[list[str], list[str]]:
    """A tmux client's output as libtmux's `tmux_cmd` holds it: stdout's lines without the
    trailing empty ones, stderr's non-empty lines."""
    lines = out.split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    return lines, [x for x in err.split("\n") if x]


class HostServer(AoServer):
    """ao's tmux server on another machine: each command goes over the host's multiplexed
    SSH connection (`ao_ssh`, hosts.py), its arguments quoted for the remote shell, so
    every function here works on a host unchanged."""

    ao_host: Host | None = None  # the host it runs on
    ao_ssh: tuple[str, ...] = ()  # ssh's argv up to and with the destination

    def cmd(self, cmd: str, *args: Any, target: str | int | None = None) -> tmux_cmd:
        argv = ["tmux", f"-L{self.socket_name}"]
        if self.config_file:
            argv.append(f"-f{self.config_file}")
        argv += ["-u", cmd, *(["-t", str(target)] if target is not None else []),
                 *map(str, args)]
        return SshCmd(self.ao_ssh, argv)


class SshCmd(tmux_cmd):
    """A tmux command run over ssh, answered as libtmux's own `tmux_cmd` is (stdout and stderr
    as lists of lines, the exit status); `input` goes on ssh's standard input (ssh reads
    none otherwise: it would take keys meant for the board or the terminal)."""

    def __init__(self, ssh: tuple[str, ...], argv: list[str], input: str | None = None,
                 timeout: float = 20) -> None:
        self.cmd = argv
        try:
            a = channel.run(ssh, shlex.join(argv), (input or "").encode(), timeout)
            out, err, self.returncode = (a.stdout.decode("utf-8", "backslashreplace"),
                                         a.stderr.decode("utf-8", "backslashreplace"),
                                         a.returncode)
        except channel.Broken as e:
            out, err, self.returncode = "", str(e), SSH_FAILED
        self.stdout, self.stderr = _lines(out, err)


def host_of(srv: Server) -> Host | None:
    """The SSH host a server runs on; None for this machine's."""
    return srv.ao_host if isinstance(srv, HostServer) else None


def host_server(host: Host, socket: str, conf: str) -> Server:
    """A libtmux Server for the host's own tmux server on ao's socket, started with ao's
    settings file `conf` there (hostwork.tmux_conf), its commands sent over the host's
    connection (HostServer); no round trip here: a host that is away fails the commands
    sent through it, not this."""
    if host.local:
        return server(socket)
    srv = server(socket, tuple(ssh_argv(host)), conf)
    if isinstance(srv, HostServer):
        srv.ao_host = host
    return srv


def server(socket: str, ssh: tuple[str, ...] = (), config_file: str | None = None) -> Server:
    """ao's tmux server on `socket`: here, or on a host through `ssh` (hosts.py), whose own
    config file `config_file` holds CONF."""
    if ssh:
        srv = HostServer(socket_name=socket, config_file=config_file)
        srv.ao_ssh = ssh
        return srv
    conf = paths.home() / "tmux.conf"
    if not conf.exists() or conf.read_text() != CONF:
        paths.write_atomic(conf, CONF)
    return AoServer(socket_name=socket, config_file=str(conf))


def remote(srv: Server) -> bool:
    """The server runs on another machine (its pids and files are not this machine's)."""
    return isinstance(srv, HostServer)
