"""`ao send`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from ao.cli import services
from ao.cli.services import SESSION_HELP
from ao.errors import BadInput
from ao.paths import daemon_state as read_state
from ao.services.messaging import Messenger

EXIT_QUEUED = 3
FLUSH_WAIT = 300.0


def _flush(session: str) -> None:
    s = services.session(session)
    m = Messenger(services.fleet())
    deadline = time.monotonic() + FLUSH_WAIT
    sent = 0
    while services.store().messages(s.id, "queued") and time.monotonic() < deadline:
        results = m.deliver_queued(s.id)
        sent += sum(1 for r in results if r.status == "delivered")
        if any(r.status == "failed" for r in results):
            break
        time.sleep(0.5)
    left = len(services.store().messages(s.id, "queued"))
    typer.echo(f"{sent} delivered, {left} still queued")
    if left:
        raise typer.Exit(EXIT_QUEUED)


def send(
    session: str = typer.Argument(..., help=SESSION_HELP),
    message: str | None = typer.Argument(None, help="The message; or -f FILE, or stdin."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Read the message from a file."),
    now: bool = typer.Option(False, "--now",
                             help="Deliver even if the agent is busy (never into a permission "
                                  "prompt, never over someone's draft)."),
    raw: bool = typer.Option(False, "--raw", help="Allow a message starting with `!` (the "
                             "agent runs it as a shell command)."),
    flush: bool = typer.Option(False, "--flush", help="Deliver the queued messages now, "
                               "waiting (up to 5 minutes) for the agent between them."),
) -> None:
    """Type a message into an agent: delivered (0), queued until idle (3) or failed (1)."""
    if flush:
        _flush(session)
        return
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
    r = Messenger(services.fleet()).send(services.session(session).id, message, now=now,
                                         raw=raw)
    if r.status == "delivered":
        typer.echo("delivered")
    elif r.status == "queued":
        if read_state():
            typer.echo(f"queued: {r.detail} (the daemon delivers it when the agent is idle)")
        else:
            typer.echo(f"queued: {r.detail}; no daemon runs, so nothing will deliver it: "
                       f"`ao start`, or `ao send {session} --flush` when the agent is idle")
        raise typer.Exit(EXIT_QUEUED)
    else:
        typer.echo(f"failed: {r.detail}", err=True)
        raise typer.Exit(1)
