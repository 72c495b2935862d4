"""`ao session ls | attach | diff | kill | restore | resume`."""

from __future__ import annotations

import os
import sys
import time

import typer

from ao.cli import services
from ao.cli.output import emit_json, note, table
from ao.cli.services import SESSION_HELP
from ao.decide import waiting
from ao.errors import BadInput
from ao.record.state import LIVE, RUNNING, Activity
from ao.record.store import Session
from ao.sanitize import for_terminal
from ao.services import views
from ao.services.observing import LOOK_PATIENCE
from ao.world import tmux

app = typer.Typer(help="List, attach to, kill and restore sessions.", no_args_is_help=True)


@app.command("ls")
def ls(
    project: str | None = typer.Option(None, "--project", "-p", help="Only this project."),
    all_: bool = typer.Option(False, "--all", "-a", help="Include ended sessions."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Sessions with their task, state, agent activity, branch, PR and age."""
    if project and project not in services.cfg().projects and \
            not services.store().sessions(project):
        services.cfg().project(project)  # a clear error naming the known projects
    fleet = services.fleet()
    store = services.store()
    listed = store.sessions(project, None if all_ else set(LIVE))
    # what the daemon saw at its last poll is read, not looked at again (a capture-pane a
    # session: 0.95 s at 200 sessions); only sessions begun since, or every one when no daemon
    # polls, are looked at here
    last = _daemon_polled(services.cfg().poll_interval)
    seen = fleet.observe_all([s for s in listed if s.state in RUNNING and
                              (last is None or s.created_at >= last - 1 or
                               s.project not in services.cfg().projects)],
                             patience=LOOK_PATIENCE)
    silent = sorted({s.host for s in listed if seen.get(s.id) is Activity.UNREACHABLE})
    if silent:
        note(f"not answering: {', '.join(silent)}; their sessions show `unreachable` "
             "(`ao hosts` for more)")
    rows = [store.session(s.id) for s in listed]
    queued = {s.id: len(store.messages(s.id, "queued")) for s in rows}
    ctxs = {p: services.wait_context(p) for p in {s.project for s in rows}}
    if json_out:
        emit_json([views.session(store, s, ctx=ctxs[s.project]) for s in rows])
        return
    if not rows:
        note("no sessions" + ("" if all_ else " running; --all shows ended ones"))
        return
    typer.echo(_session_table(rows, queued, ctxs))


def _daemon_polled(poll_interval: float) -> float | None:
    """When the running daemon last observed every live session (its hosts' that did not
    answer are recorded `unreachable`), or None when no daemon polls."""
    from ao.paths import daemon_state as read_state

    state = read_state()
    last = (state or {}).get("last_poll")
    if not last or time.time() - float(last) > 2 * poll_interval + 5:
        return None
    return float(last)


def _session_table(rows: list[Session], queued: dict[str, int],
                   ctxs: dict[str, waiting.Context]) -> str:
    # the host column once sessions run on more than this machine
    hosted = any(s.host != "local" for s in rows)

    def row(s: Session) -> tuple[object, ...]:
        w = waiting.why(s, ctxs[s.project])
        why = f"{w.reason} [{w.who}]" if w else "-"
        return (s.id, s.task, for_terminal(s.title)[:30], s.state.value, s.step or "-",
                views.activity(s), *([s.placed_on or "-"] if hosted else []), queued[s.id] or "-",
                f"#{s.pr_number}" if s.pr_number else "-", services.age(s.created_at),
                for_terminal(why)[:70])

    return table(["id", "task", "title", "state", "step", "activity",
                  *(["host"] if hosted else []), "queued", "pr", "age", "waiting for"],
                 [row(s) for s in rows])


@app.command("attach")
def attach(session: str = typer.Argument(..., help=SESSION_HELP)) -> None:
    """Attach your terminal to the session's tmux (detach with the tmux prefix, then d)."""
    s = services.session(session)
    srv = services.fleet().server(s)
    if not tmux.has_session(srv, s.id):
        raise BadInput(f"{s.id} has no running terminal ({s.state})",
                       f"`ao session restore {s.id}` starts it again")
    argv = tmux.attach_argv(services.cfg().tmux_socket, s.id, srv)
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
    if not sys.stdin.isatty():
        raise BadInput("attach needs a terminal", " ".join(argv))
    os.execvpe(argv[0], argv, env)


@app.command("kill")
def kill(
    session: str = typer.Argument(..., help=SESSION_HELP),
    force: bool = typer.Option(False, "--force",
                               help="Save uncommitted/unpushed work under the session folder, "
                                    "then remove the worktree anyway."),
) -> None:
    """End a session. Its worktree is removed only if it holds no unsaved work."""
    session = services.session(session).id
    out = services.fleet().kill(session, force=force)
    if out["worktree"] == "kept":
        why = out.get("why")
        reasons = "; ".join(why) if isinstance(why, list) else str(why)
        typer.echo(f"{session} killed; worktree kept: {reasons} "
                   f"(push it, or `ao session kill {session} --force` to save a patch and "
                   "remove it)")
    else:
        saved = out.get("saved")
        extra = f"; saved {', '.join(saved)}" if isinstance(saved, list) and saved else ""
        typer.echo(f"{session} killed; worktree {out['worktree']}{extra}")


@app.command("restore")
def restore(session: str = typer.Argument(..., help=SESSION_HELP)) -> None:
    """Relaunch a session's agent in place with its resume command."""
    s = services.fleet().restore(services.session(session).id)
    typer.echo(f"{s.id} restored ({s.state})")



@app.command("diff")
def diff(session: str = typer.Argument(..., help=SESSION_HELP),
         stat: bool = typer.Option(False, "--stat", help="Files and line counts only.")) -> None:
    """What the agent changed: its worktree against the default branch it started from,
    commits and uncommitted work alike, and the new files it has not added."""
    from ao.services import changes

    s = services.session(session)
    found = changes.of_session(services.cfg(), s, with_diff=not stat)
    if stat:
        typer.echo(found.text(with_diff=False))
        return
    if found.merged:
        typer.echo(f"{s.id} merged: its changes as they merged into {found.base}")
    typer.echo(found.diff.rstrip("\n") or f"{s.id}: no changes against {found.base}")
    if found.untracked:
        typer.echo("not added: " + ", ".join(found.untracked))


@app.command("resume")
def resume(session: str = typer.Argument(..., help=SESSION_HELP)) -> None:
    """Hand an escalated session back to ao: automatic fixes, reviews and merging go on, with a
    fresh budget of fix rounds."""
    s = services.fleet().resume(services.session(session).id, "resumed by hand")
    typer.echo(f"{s.id} resumed ({s.state}); ao handles it again")
