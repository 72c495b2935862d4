"""Entry point: builds the typer app from the command modules and maps errors to exit codes."""

from __future__ import annotations

import sys

import typer

from .. import __version__
from ..errors import AoError
from . import config_cmd, events_cmd, plan_cmd

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


def run() -> None:
    try:
        app()
    except AoError as e:
        sys.stderr.write(f"ao: {e}\n")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("ao: interrupted\n")
        sys.exit(130)
