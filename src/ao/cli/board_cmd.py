"""`ao board`."""

from __future__ import annotations

from pathlib import Path

import typer

from ao.cli import services


def board(
    project: str | None = typer.Option(None, "--project", "-p", help="Only this project."),
    plan_file: Path | None = typer.Option(None, "--plan", help="The plan for the plan view."),
) -> None:
    """The live board: sessions by what needs you, a detail pane, and the plan view."""
    from ao.tui.app import make_app

    if project:
        services.cfg().project(project)
    make_app(services.cfg(), services.store(), services.fleet(), project, plan_file).run()
