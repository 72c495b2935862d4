"""`ao demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from ao import paths


def demo(
    dir_: Path | None = typer.Option(None, "--dir", help="Where to make the demo project "
                                     "(default: ~/.agent-orchestrator/demo)."),
    keep: bool = typer.Option(False, "--keep", help="Leave the sessions' worktrees and records "
                              "for inspection (their agents end at their merges)."),
) -> None:
    """Watch ao run a five-task plan end to end, offline, in about half a minute."""
    from ao.cli.demo import run

    summary = run((dir_ or paths.home() / "demo").resolve(), keep=keep)
    if summary["merged"] != summary["total"]:
        raise typer.Exit(1)
