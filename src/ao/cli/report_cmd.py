"""`ao report`: a run seen whole (runreport.py)."""

from __future__ import annotations

import shutil

import typer

from ao.cli import services
from ao.cli.output import emit_json
from ao.services.runreport import build, draw


def report(
    project: str = typer.Option(..., "--project", "-p", help="The project."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The run seen whole: when each task started, opened its PR, failed CI, waited on a
    person and merged, one line a task; the critical path; what the agents cost."""
    store = services.store()
    if project not in services.cfg().projects and not store.sessions(project):
        services.cfg().project(project)  # a clear error naming the known projects
    r = build(store, project)
    if json_out:
        emit_json(r.as_dict())
        return
    typer.echo(draw(r, shutil.get_terminal_size((100, 24)).columns))
