"""`ao session cleanup` and `ao cron install | remove | show`."""

from __future__ import annotations

import sys

import typer

from ao.cli import services
from ao.cli.output import emit_json
from ao.config import parse_duration
from ao.errors import BadInput
from ao.services.cleanup import Cleaner, Item, Report, human
from ao.world import cron as cronmod

cron_app = typer.Typer(help="The nightly cleanup in your crontab.", no_args_is_help=True)


def cleanup(
    project: str | None = typer.Option(None, "--project", "-p", help="Only this project."),
    all_: bool = typer.Option(False, "--all", help="Every configured project."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would go; change nothing."),
    older_than: str | None = typer.Option(None, "--older-than",
                                          help="Only sessions idle this long (e.g. 7d)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    force: bool = typer.Option(False, "--force", help="Save unsaved work (patch and bundle) "
                               "under the session folder, then remove its worktree too."),
    delete_remote: bool = typer.Option(False, "--delete-remote",
                                       help="Also delete merged PRs' remote branches."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """End finished sessions and remove their worktrees, never losing unpushed work."""
    cfg = services.cfg()
    if bool(project) == all_:
        raise BadInput("say which: -p PROJECT or --all", "e.g. ao session cleanup --all --dry-run")
    projects = list(cfg.projects.values()) if all_ else [cfg.project(project or "")]
    age = parse_duration(older_than, "--older-than") if older_than else 0.0
    cleaner = Cleaner(cfg, services.store(), services.fleet().srv, services.fleet().host_server)
    report = cleaner.plan(projects, age, delete_remote=delete_remote)
    if not dry_run and not yes:
        _confirm(report)
    if not dry_run:
        cleaner.run(report, force=force, delete_remote=delete_remote)
        report.archived = cleaner.housekeeping()
    if json_out:
        emit_json({"dry_run": dry_run, "freed_bytes": report.freed, "saved": report.saved,
                   "unswept": report.unswept, "items": [_item(i) for i in report.items]})
        return
    _print(report, dry_run, force)


def _confirm(report: Report) -> None:
    """Asked at a terminal, refused without one, when anything would be removed."""
    going = [i for i in report.items if not i.keep]
    if not going:
        return
    if not sys.stdin.isatty():
        raise BadInput(f"{len(going)} item(s) would be removed", "pass --yes, or --dry-run")
    _print(report, dry_run=True, force=False)
    if not typer.confirm(f"remove {len(going)} item(s)?"):
        raise typer.Exit(1)


def _item(i: Item) -> dict[str, object]:
    return {"kind": i.kind, "name": i.name, "project": i.project, "why": i.why,
            "kept": i.keep, "bytes": i.bytes, "host": i.host,
            "worktree": str(i.worktree) if i.worktree else None}


_WHAT = {"session": "session", "orphan-worktree": "orphaned worktree",
         "orphan-tmux": "orphaned tmux session", "remote-branch": "remote branch"}


def _print(report: Report, dry_run: bool, force: bool) -> None:
    """What went (or, dry, would go); with --force a dry run says what would be saved and
    removed, not kept, as the real run would."""
    verb = "would remove" if dry_run else "removed"
    saving = dry_run and force
    for i in report.items:
        typer.echo(_line(i, verb, saving))
    for line in report.unswept:
        typer.echo(f"not swept host {line}")
    typer.echo(_summary(report, dry_run, verb, saving))


def _line(i: Item, verb: str, saving: bool = False) -> str:
    name = i.name if i.host == "local" else f"{i.name} on {i.host}"
    if i.keep and saving and not i.blind:
        return (f"{verb:<8} {_WHAT[i.kind]} {name} ({i.why}), its work saved first: "
                f"{'; '.join(i.keep)}")
    if i.keep:
        how = "" if i.kind == "remote-branch" else " (push it, or --force to save it first)"
        return f"kept     {_WHAT[i.kind]} {name}: {'; '.join(i.keep)}{how}"
    size = f", {human(i.bytes)}" if i.bytes else ""
    return f"{verb:<8} {_WHAT[i.kind]} {name} ({i.why}{size})"


def _summary(report: Report, dry_run: bool, verb: str, saving: bool = False) -> str:
    going = [i for i in report.items if not i.keep or (saving and not i.blind)]
    ended = sum(1 for i in going if i.kind == "session")
    wts = sum(1 for i in going if i.worktree is not None)
    kept = len(report.items) - len(going)
    saved = f"; saved {', '.join(report.saved)}" if report.saved else ""
    archived = f"; archived {report.archived} old session folder(s)" if report.archived else ""
    return (f"{'would end' if dry_run else 'ended'} {ended} session(s), {verb} {wts} "
            f"worktree(s), {'would free' if dry_run else 'freed'} {human(report.freed)}, "
            f"kept {kept}{saved}{archived}")


@cron_app.command("install")
def install(at: str = typer.Option("03:00", "--at", help="Time of day, HH:MM.")) -> None:
    """Add (or move) the one nightly cleanup line in your crontab."""
    if not cronmod.available():
        typer.echo("no `crontab` here; the equivalent systemd user timer:\n")
        typer.echo(cronmod.systemd_units(at))
        return
    typer.echo(f"installed: {cronmod.install(at)}")


@cron_app.command("remove")
def remove() -> None:
    """Remove ao's line from your crontab (others are kept)."""
    if not cronmod.available():
        raise BadInput("no `crontab` here", "remove the systemd timer instead")
    typer.echo("removed" if cronmod.remove() else "nothing to remove")


@cron_app.command("show")
def show() -> None:
    """Show ao's crontab line, if installed."""
    if not cronmod.available():
        raise BadInput("no `crontab` here", "`ao cron install` prints a systemd timer")
    line = cronmod.show()
    typer.echo(line or "not installed (`ao cron install`)")
