"""`ao events`: recent events, filtered, optionally followed."""

from __future__ import annotations

import json
from collections import deque

import typer

from ao.record import events as ev
from ao.sanitize import json_text


def _line(e: ev.Event) -> str:
    who = " ".join(x for x in (e.project, e.session, e.task) if x)
    data = json_text(json.dumps(e.data, ensure_ascii=False, separators=(",", ":"))) \
        if e.data else ""
    return f"{e.ts[:19].replace('T', ' ')}  {e.type:<22} {who}  {data}".rstrip()


def events(
    project: str | None = typer.Option(None, "--project", "-p", help="Only this project."),
    session: str | None = typer.Option(None, "--session", "-s", help="Only this session."),
    type_: list[str] = typer.Option([], "--type", "-t",
                                    help="Only these types (`ci` matches ci.*); repeatable."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="How many recent events."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Print recent events from logs/events.log; -f follows new ones."""
    types = tuple(type_)
    recent: deque[ev.Event] = deque(maxlen=limit)
    for e in ev.read():
        if ev.matches(e, project, session, types):
            recent.append(e)
    for e in recent:
        typer.echo(e.to_json() if json_out else _line(e))
    if follow:
        for e in ev.follow():
            if ev.matches(e, project, session, types):
                typer.echo(e.to_json() if json_out else _line(e))
