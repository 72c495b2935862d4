"""`ao start | stop`, `ao daemon run | attach`, `ao pause | resume`."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import time

import typer

from ao import paths
from ao.cli import services
from ao.cli.output import log_to, note
from ao.errors import AoError, BadInput, ExternalError
from ao.loop.daemon import Daemon
from ao.paths import daemon_state as read_state
from ao.record import events
from ao.record.events import Event
from ao.sanitize import for_terminal
from ao.services import pushes
from ao.world import tmux

app = typer.Typer(help="The daemon: run it in the foreground or attach to it.",
                  no_args_is_help=True)
DAEMON_SESSION = "ao-daemon"


def _echo(e: Event) -> None:
    who = " ".join(x for x in (e.project, e.session, e.task) if x)
    line = f"{e.ts[11:19]} {e.type:<22} {who} {events_brief(e.data)}".rstrip()
    print(line, flush=True)
    with (paths.logs_dir() / "daemon.log").open("a", encoding="utf-8") as fh:
        fh.write(for_terminal(f"{e.ts} {e.type} {who} {events_brief(e.data)}") + "\n")


def _logging() -> None:
    """The daemon's own troubles (tracebacks included) into logs/daemon.log beside the
    event lines."""
    log_to("daemon.log")


def events_brief(data: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in data.items())[:200]


@app.command("run")
def run(once: bool = typer.Option(False, "--once",
                                  help="Run one tick of every project and exit (for cron or "
                                       "scripts; refused while a daemon runs)."),
        port: int | None = typer.Option(None, "--port", min=1, max=65535,
                                        help="Serve the board, the API and "
                                        "metrics on this port (also PORT or web.port)."),
        host: str | None = typer.Option(None, "--host", help="Address to serve on "
                                        "(default 127.0.0.1, or web.host).")) -> None:
    """Run the daemon in this terminal (what `ao start` runs inside tmux)."""
    _logging()
    events.add_listener(_echo)
    cfg = services.cfg()
    d = Daemon(cfg, services.store(), services.fleet().srv)
    names = ", ".join(sorted(cfg.projects)) or "none: run `ao init` in a repository"
    if once:
        d.acquire()
        try:
            d.tick()
        finally:
            d.release()
        return
    print(f"ao daemon: pid {os.getpid()}, poll every {cfg.poll_interval:g}s, "
          f"{len(cfg.projects)} project(s): {names}", flush=True)
    port = port or cfg.web.port
    server = None
    if port:
        from ao.web import WebServer

        server = WebServer(cfg, host or cfg.web.host, port, daemon=d)
        server.start()
        d.web_url = server.url()
        print(f"ao daemon: the board and the API on {d.web_url}", flush=True)
    try:
        d.run()
    except (AoError, KeyboardInterrupt):
        raise  # one line, said by the CLI
    except Exception as e:
        if type(e).__module__ == "sqlite3":
            raise  # a store that cannot be written: cli/main.py says it in one line
        # the traceback to logs/daemon.log (not only to a tmux pane nobody reads), one line
        # here, and `ao start` says it too
        logging.getLogger("ao.loop.daemon").exception("the daemon stopped on an error")
        raise ExternalError(f"the daemon stopped on an error: {type(e).__name__}: {e}",
                            "its traceback is in logs/daemon.log") from None
    finally:
        if server is not None:
            server.stop()


@app.command("attach")
def attach() -> None:
    """Watch the running daemon live (detach with the tmux prefix, then d)."""
    srv = services.fleet().srv
    if not tmux.has_session(srv, DAEMON_SESSION):
        raise BadInput("the daemon is not running in tmux", "start it with `ao start`")
    argv = tmux.attach_argv(services.cfg().tmux_socket, DAEMON_SESSION)
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
    os.execvpe(argv[0], argv, env)


def start(foreground: bool = typer.Option(False, "--foreground",
                                          help="Run here (for systemd or launchd)."),
          port: int | None = typer.Option(None, "--port", min=1, max=65535,
                                          help="Serve the board in a browser, "
                                          "the HTTP API and metrics on this port (also PORT "
                                          "or web.port)."),
          host: str | None = typer.Option(None, "--host",
                                          help="Address to serve on (default 127.0.0.1).")
          ) -> None:
    """Start the daemon in the background (in tmux session ao-daemon)."""
    state = read_state()
    if state:
        if port and not state.get("web"):
            raise BadInput(f"the daemon is already running (pid {state['pid']}) without a "
                           "dashboard", f"`ao stop`, then `ao start --port {port}`")
        web = state.get("web")
        if port and web and not str(web).rstrip("/").endswith(f":{port}"):
            raise BadInput(f"the daemon is already running (pid {state['pid']}) with its "
                           f"dashboard at {web}", f"open that, or `ao stop`, then `ao start "
                           f"--port {port}`")
        typer.echo(f"the daemon is already running (pid {state['pid']})" +
                   (f"; dashboard at {web}" if web else ""))
        return
    # a bad config (this repository's too) is refused before anything is written: registered
    # first, it broke every later command from any directory
    cfg = services.cfg()
    served = port or cfg.web.port
    if served:
        _port_free(host or cfg.web.host, served)
    for project in cfg.projects.values():  # a remote no agent could push to, refused now
        pushes.check_remote(project.path, project.remote)
    _register_here()
    for project in cfg.projects.values():
        problem = pushes.unreachable(project.path, project.remote)
        if problem:
            note(f"warning: {project.name}: remote {project.remote!r} does not answer "
                 f"({problem}); agents' pushes will fail until it does")
    if foreground:
        run(once=False, port=port, host=host)
        return
    srv = services.fleet().srv
    tmux.kill_session(srv, DAEMON_SESSION)  # a dead one left by a crash
    cmd = f"{sys.executable} -m ao daemon run"
    if port:
        cmd += f" --port {int(port)}"
    if host:
        cmd += f" --host {shlex.quote(host)}"
    # the daemon is ao itself: it gets this shell's environment as it is now (the tmux
    # server's own may be days old); agents get far less (environment.py)
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
    tmux.new_session(srv, DAEMON_SESSION, paths.home(), cmd,
                     {**env, "AO_HOME": str(paths.ao_home())})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        state = read_state()
        if state:
            where = f"; the board on {state['web']}" if state.get("web") else ""
            typer.echo(f"daemon started (pid {state['pid']}){where}; `ao daemon attach` to "
                       "watch it")
            from ao.services.notify import reaches

            if not reaches(services.cfg()):  # an escalation at night would reach no one
                note("notifications reach no one here (no desktop to show them): set "
                     "notify.webhook or notify.command (docs/configuration.md)")
            return
        pane = tmux.pane(srv, DAEMON_SESSION)
        if pane is None or pane.dead:
            lines = tmux.capture(srv, DAEMON_SESSION).strip().splitlines()
            said = [ln.removeprefix("ao: ") for ln in lines if ln.startswith("ao: ")]
            tmux.kill_session(srv, DAEMON_SESSION)  # no dead pane left behind
            raise ExternalError(f"the daemon exited at once: "
                                f"{said[-1] if said else ' | '.join(lines[-2:])}",
                                "see logs/daemon.log, or run `ao daemon run` to watch it")
        time.sleep(0.1)
    raise ExternalError("the daemon did not start within 15s", "`ao daemon attach` to look")


def _port_free(host: str, port: int) -> None:
    """The dashboard's port can be bound, said now in one line (a busy one answered 'Pane is
    dead (status 2)' after the daemon had died in its pane)."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as e:
        raise BadInput(f"cannot serve on {host}:{port}: {e.strerror or e}",
                       "choose another port (--port, PORT or web.port)") from None


def _register_here() -> None:
    """`ao start` run inside a repository whose config is not registered registers it: the
    daemon runs elsewhere and would not see it otherwise."""
    from ao import config as cfgmod

    found = cfgmod.find_repo_config()
    if found is not None and cfgmod.register_repo(found.parent):
        typer.echo(f"registered {paths.display(found.parent)} (its projects are run by the "
                   "daemon)")


def stop() -> None:
    """Stop the daemon; agent sessions keep running."""
    state = read_state()
    if not state:
        typer.echo("the daemon is not running")
        return
    os.kill(int(state["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and read_state():
        time.sleep(0.1)
    if read_state():
        raise ExternalError(f"the daemon (pid {state['pid']}) did not stop within 30s",
                            f"kill {state['pid']}")
    # the socket the daemon ran on, as it said: a config broken since must not make a stop
    # that happened report an error (and leave the daemon's dead pane)
    srv = tmux.server(str(state.get("tmux_socket") or _socket()))
    # its pane, left by remain-on-exit: the daemon removes its state a moment before it ends
    deadline = time.monotonic() + 5
    p = tmux.pane(srv, DAEMON_SESSION)
    while p is not None and not p.dead and time.monotonic() < deadline:
        time.sleep(0.05)
        p = tmux.pane(srv, DAEMON_SESSION)
    if p is not None and p.dead:
        tmux.kill_session(srv, DAEMON_SESSION)
    typer.echo("daemon stopped; agent sessions keep running")


def _socket() -> str:
    try:
        return services.cfg().tmux_socket
    except AoError:
        return os.environ.get("AO_TMUX_SOCKET") or "ao"


def _set_paused(project: str, paused: bool) -> None:
    p = services.cfg().project(project)
    services.store().ensure_project(p.name, str(p.path), p.repo)
    services.store().set_paused(project, paused)
    events.emit(Event("project.paused" if paused else "project.resumed", project),
                services.store())


def pause(project: str = typer.Argument(..., help="Project name.")) -> None:
    """Stop starting new sessions and sending automatic messages for a project."""
    _set_paused(project, True)
    typer.echo(f"{project} paused: no new sessions, no automatic messages")


def resume(project: str = typer.Argument(..., help="Project name.")) -> None:
    """Undo `ao pause`."""
    _set_paused(project, False)
    typer.echo(f"{project} resumed")
