"""`ao report`: a run seen whole (runreport.py), in the terminal, as JSON, or as a picture
(report_picture.py: a PNG, and a self-contained HTML page holding it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from ao.cli import services
from ao.cli.output import emit_json
from ao.errors import BadInput
from ao.services.runreport import build, draw


def report(
    project: str = typer.Option(..., "--project", "-p", help="The project."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    html: Path | None = typer.Option(None, "--html", help="Write the page (with the picture) "
                                     "to this file."),
    png: Path | None = typer.Option(None, "--png", help="Write the picture to this file."),
) -> None:
    """The run seen whole: when each task started, opened its PR, failed CI, waited on a
    person and merged, one line a task; the critical path; what the agents cost. --png and
    --html draw it: a Gantt with the critical path, dependency arrows and the figures."""
    store = services.store()
    if project not in services.cfg().projects and not store.sessions(project):
        services.cfg().project(project)  # a clear error naming the known projects
    r = build(store, project)
    for target in (html, png):
        if target is not None and not target.parent.is_dir():
            raise BadInput(f"{target.parent} is not a folder", "write the file into one")
    if html is not None or png is not None:
        from ao.services import report_picture

        if png is not None:
            png.write_bytes(report_picture.png(r))
            typer.echo(f"wrote {png}")
        if html is not None:
            html.write_text(report_picture.page(r), encoding="utf-8")
            typer.echo(f"wrote {html}")
        return
    if json_out:
        emit_json(r.as_dict())
        return
    typer.echo(draw(r, shutil.get_terminal_size((100, 24)).columns))
