"""Entry point: builds the typer app from the command modules and maps errors to exit codes."""

from __future__ import annotations

import sys

import typer

from .. import __version__
from ..errors import AoError
from . import (
    board_cmd,
    cleanup_cmd,
    config_cmd,
    daemon_cmd,
    demo_cmd,
    events_cmd,
    logs_cmd,
    plan_cmd,
    pr_cmd,
    send_cmd,
    session_cmd,
    spawn_cmd,
    usage_cmd,
)

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
app.command("status", help=logs_cmd.status.__doc__)(logs_cmd.status)
app.command("agents", help=logs_cmd.agents_.__doc__)(logs_cmd.agents_)
app.add_typer(pr_cmd.app, name="pr")
app.command("review", help=pr_cmd.review.__doc__)(pr_cmd.review)
app.command("start", help=daemon_cmd.start.__doc__)(daemon_cmd.start)
app.command("stop", help=daemon_cmd.stop.__doc__)(daemon_cmd.stop)
app.add_typer(daemon_cmd.app, name="daemon")
app.command("pause", help=daemon_cmd.pause.__doc__)(daemon_cmd.pause)
app.command("resume", help=daemon_cmd.resume.__doc__)(daemon_cmd.resume)
app.command("demo", help=demo_cmd.demo.__doc__)(demo_cmd.demo)
app.add_typer(cleanup_cmd.cron_app, name="cron")
app.command("board", help=board_cmd.board.__doc__)(board_cmd.board)
app.command("usage", help=usage_cmd.usage.__doc__)(usage_cmd.usage)
app.command("hook", help=logs_cmd.hook.__doc__, hidden=True)(logs_cmd.hook)


def run() -> None:
    try:
        app()
    except AoError as e:
        sys.stderr.write(f"ao: {e}\n")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("ao: interrupted\n")
        sys.exit(130)
