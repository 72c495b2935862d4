"""`ao send`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..errors import BadInput
from ..messaging import Messenger
from . import services
from .services import SESSION_HELP

EXIT_QUEUED = 3


def send(
    session: str = typer.Argument(..., help=SESSION_HELP),
    message: str | None = typer.Argument(None, help="The message; or -f FILE, or stdin."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Read the message from a file."),
    now: bool = typer.Option(False, "--now",
                             help="Deliver even if the agent is busy (never into a permission "
                                  "prompt: that would answer it)."),
) -> None:
    """Type a message into an agent: delivered (0), queued until idle (3) or failed (1)."""
    if file is not None:
        try:
            message = file.read_text(encoding="utf-8")
        except OSError as e:
            raise BadInput(f"cannot read {file}: {e.strerror}", "check the path") from None
    elif message is None:
        if sys.stdin.isatty():
            raise BadInput("no message", 'give it as an argument, with -f FILE, or on stdin')
        message = sys.stdin.read()
    if not message.strip():
        raise BadInput("the message is empty", "say something")
    r = Messenger(services.fleet()).send(services.session(session).id, message, now=now)
    if r.status == "delivered":
        typer.echo("delivered")
    elif r.status == "queued":
        typer.echo(f"queued: {r.detail} (delivered when the agent is idle)")
        raise typer.Exit(EXIT_QUEUED)
    else:
        typer.echo(f"failed: {r.detail}", err=True)
        raise typer.Exit(1)
