"""`ao spawn` and `ao batch-spawn`."""

from __future__ import annotations

from pathlib import Path

import typer

from ao.cli import services
from ao.cli.output import note
from ao.decide.plan import Plan
from ao.errors import BadInput
from ao.services.fleet import SpawnResult

EXIT_SOME_FAILED = 1


def _line(r: SpawnResult) -> None:
    sid = r.session or "-"
    reason = f"  ({r.reason})" if r.reason else ""
    typer.echo(f"{sid:<8} {r.task:<14} {r.status}{reason}")


def _plan(project: str, plan_file: Path | None) -> Plan | None:
    f = services.fleet()
    return f.plan_for(services.cfg().project(project), plan_file)


def spawn(
    project: str = typer.Argument(..., help="Project name from the config."),
    task: str | None = typer.Argument(None, help="Task key (AUTH-001) or issue number (#123); "
                                      "omit with --prompt for a one-off task."),
    plan_file: Path | None = typer.Option(None, "--plan", help="Plan file with the task."),
    force: bool = typer.Option(False, "--force", help="Start even if dependencies are not done."),
    fresh: bool = typer.Option(False, "--fresh",
                               help="Start over from the default branch (an earlier session's "
                                    "branch is moved to attic/, not deleted)."),
    prompt: str | None = typer.Option(None, "--prompt",
                                      help="A one-off task with no plan entry: what to do."),
    title: str | None = typer.Option(None, "--title", help="The one-off task's title."),
) -> None:
    """Start one agent on one task, in its own worktree and tmux session. A branch an earlier
    session of the task left is continued; a merged task needs --force."""
    if prompt is not None:
        task = services.fleet().one_off(project, prompt, title, task)
    elif task is None:
        raise BadInput("which task?", "name a task key, or give --prompt TEXT for a one-off")
    batch_spawn(project, [task], plan_file, force, fresh)


def batch_spawn(
    project: str = typer.Argument(..., help="Project name from the config."),
    tasks: list[str] = typer.Argument(None, help="Task keys; omit with --plan for all tasks."),
    plan_file: Path | None = typer.Option(None, "--plan", help="Plan file with the tasks."),
    force: bool = typer.Option(False, "--force", help="Start even if dependencies are not done."),
    fresh: bool = typer.Option(False, "--fresh",
                               help="Start over from the default branch."),
) -> None:
    """Start agents on several tasks (deps respected, the rest queued critical path first)."""
    plan = _plan(project, plan_file)
    keys = list(tasks or [])
    if not keys:
        if plan is None:
            raise typer.BadParameter("name tasks, or give --plan FILE to take all of its tasks")
        keys = list(plan.tasks)
    _finish_cut_short()
    results = services.fleet().batch_spawn(project, keys, plan, force=force, fresh=fresh,
                                           on_result=_line)
    counts = {k: sum(1 for r in results if r.status == k)
              for k in ("spawned", "skipped", "queued", "failed", "interrupted")}
    note(", ".join(f"{n} {k}" for k, n in counts.items() if n or k != "interrupted"))
    if counts["interrupted"]:
        raise typer.Exit(130)
    if counts["failed"]:
        raise typer.Exit(EXIT_SOME_FAILED)


def _finish_cut_short() -> None:
    """What an earlier start that was killed (SIGKILL, a closed terminal) left, with no daemon
    to see it: a start cut short is undone and queued, a delivery cut short is finished or
    queued again (messaging.recover), and an agent that never got its first prompt gets it
    now (a re-run used to report such a session `skipped`, its agent idle)."""
    from ao.record.state import State
    from ao.services.messaging import Messenger

    fleet = services.fleet()
    for sid, what in fleet.recover():
        note(f"{sid}: its start was cut short earlier; {what}")
    m = Messenger(fleet)
    m.recover()
    for s in fleet.store.sessions(states={State.WORKING}):
        if any(x["source"] == "prompt" for x in fleet.store.messages(s.id, "queued")):
            went = m.deliver_queued(s.id)
            note(f"{s.id}: its first prompt, held since its start was cut short: "
                 f"{went[-1].status if went else 'queued'}")
