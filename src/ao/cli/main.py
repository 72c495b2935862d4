"""Entry point: builds the typer app from the command modules and maps errors to exit codes."""

from __future__ import annotations

import inspect
import signal
import sqlite3
import sys

import typer

try:  # typer 0.2x carries its own copy of click
    from typer._click import exceptions as cx
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as cx  # type: ignore[no-redef]

from ao import __version__, paths
from ao.cli import (
    agents_cmd,
    board_cmd,
    cleanup_cmd,
    config_cmd,
    daemon_cmd,
    demo,
    events_cmd,
    hosts_cmd,
    logs_cmd,
    plan_cmd,
    pr_cmd,
    report_cmd,
    send_cmd,
    session_cmd,
    spawn_cmd,
    status_cmd,
    usage_cmd,
)
from ao.cli.output import log_to
from ao.errors import AoError
from ao.sanitize import TerminalGate

app = typer.Typer(
    name="ao",
    help="Run a fleet of AI coding agents: one agent per task, in tmux, on its own worktree.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ao {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Run a fleet of AI coding agents: one agent per task, in tmux, on its own worktree."""


app.add_typer(config_cmd.app, name="config")
app.command("init", help=config_cmd.init.__doc__)(config_cmd.init)
app.add_typer(plan_cmd.app, name="plan")
app.command("events", help=events_cmd.events.__doc__)(events_cmd.events)
app.command("spawn", help=spawn_cmd.spawn.__doc__)(spawn_cmd.spawn)
app.command("batch-spawn", help=spawn_cmd.batch_spawn.__doc__)(spawn_cmd.batch_spawn)
session_cmd.app.command("cleanup", help=cleanup_cmd.cleanup.__doc__)(cleanup_cmd.cleanup)
app.add_typer(session_cmd.app, name="session")
app.command("send", help=send_cmd.send.__doc__)(send_cmd.send)
app.command("logs", help=logs_cmd.logs.__doc__)(logs_cmd.logs)
app.command("open", help=logs_cmd.open_.__doc__)(logs_cmd.open_)
app.command("status", help=status_cmd.status.__doc__)(status_cmd.status)
app.command("stats", help=status_cmd.stats.__doc__)(status_cmd.stats)
app.command("agents", help=agents_cmd.agents_.__doc__)(agents_cmd.agents_)
app.add_typer(pr_cmd.app, name="pr")
app.add_typer(hosts_cmd.app, name="hosts")
app.command("review", help=pr_cmd.review.__doc__)(pr_cmd.review)
app.command("approve", help=pr_cmd.approve.__doc__)(pr_cmd.approve)
app.command("start", help=daemon_cmd.start.__doc__)(daemon_cmd.start)
app.command("stop", help=daemon_cmd.stop.__doc__)(daemon_cmd.stop)
app.add_typer(daemon_cmd.app, name="daemon")
app.command("pause", help=daemon_cmd.pause.__doc__)(daemon_cmd.pause)
app.command("resume", help=daemon_cmd.resume.__doc__)(daemon_cmd.resume)
app.command("demo", help=demo.command.__doc__)(demo.command)
app.add_typer(cleanup_cmd.cron_app, name="cron")
app.command("board", help=board_cmd.board.__doc__)(board_cmd.board)
app.command("usage", help=usage_cmd.usage.__doc__)(usage_cmd.usage)
app.command("report", help=report_cmd.report.__doc__)(report_cmd.report)
app.command("hook", help=agents_cmd.hook.__doc__, hidden=True)(agents_cmd.hook)


def _reflow(doc: str) -> str:
    """A docstring's paragraphs as single lines: the help's own renderer wraps them to the
    terminal, and the docstring's line breaks would otherwise cut sentences in two."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _tidy(typer_app: typer.Typer) -> None:
    for c in typer_app.registered_commands:
        doc = c.help or (inspect.getdoc(c.callback) if c.callback else None)
        if doc:
            c.help = _reflow(doc)
    for g in typer_app.registered_groups:
        if g.typer_instance is not None:
            _tidy(g.typer_instance)


_tidy(app)


def run() -> None:
    """The command line, from `ao.__main__.main` (which has set the umask first)."""
    # the one output gate: nothing printed can carry an escape sequence to the terminal
    # (the board draws its own screen, and attach hands the terminal to tmux)
    if not {"board", "attach"} & set(sys.argv[1:3]):
        sys.stdout = TerminalGate(sys.stdout)
        sys.stderr = TerminalGate(sys.stderr)
    log_to("ao.log")  # the daemon's `run` moves it to daemon.log
    try:
        code = app(standalone_mode=False)
    except cx.NoArgsIsHelpError as e:
        sys.stdout.write(e.ctx.get_help() + "\n") if e.ctx else None
        code = 0
    except cx.UsageError as e:
        # one line, like every other error, naming the way out
        cmd = e.ctx.command_path if e.ctx else "ao"
        sys.stderr.write(f"ao: {e.format_message()} (see `{cmd} --help`)\n")
        code = 2
    except typer.Abort:
        _interrupted()
        code = 130
    except AoError as e:
        sys.stderr.write(f"ao: {e}\n")
        code = e.exit_code
    except sqlite3.OperationalError as e:
        sys.stderr.write(f"ao: {store_fault(e)}\n")
        code = 1
    except KeyboardInterrupt:
        _interrupted()
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


def _interrupted() -> None:
    """Said once, and a second Ctrl-C (the terminal sends one to every process of the group,
    ssh's ending raises one too) cannot cut the exit short: ao ends with 130, never killed
    by the signal halfway through saying so."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stderr.write("ao: interrupted\n")


def store_fault(e: sqlite3.OperationalError) -> str:
    """A store that cannot be written, in one line with the way out."""
    from ao.record.store import fault_kind

    where = paths.display(paths.ao_home() / "state.db")
    text = str(e)
    kind = fault_kind(e)
    if kind == "readonly":
        return f"{where} is read-only ({text}) (make it and its folder writable: chmod u+w)"
    if kind == "full":
        return f"{where}: the disk is full ({text}) (free some space, then run it again)"
    if kind == "locked":
        return f"{where} is locked by another process ({text}) (try again in a moment)"
    return f"{where}: {text} (check the file and its folder)"
