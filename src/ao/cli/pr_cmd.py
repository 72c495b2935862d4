"""`ao pr ls | merge` and `ao review`: pull requests on the project's forge."""

from __future__ import annotations

from pathlib import Path

import typer

from ao.cli import services
from ao.cli.output import emit_json, table
from ao.cli.services import SESSION_HELP
from ao.decide.gate import approval
from ao.errors import BadInput
from ao.record.forge import Forge, PullRequest
from ao.record.store import Session
from ao.services.merging import session_gate
from ao.world import forge as forgemod
from ao.world.forge.local import LocalForge

app = typer.Typer(help="Pull requests of the project's sessions: list and merge.",
                  no_args_is_help=True)


def _tracked(project: str | None) -> dict[str, list[Session]]:
    """Sessions with a branch, by project; sessions of a project no longer configured (an
    old `ao demo`, a forgotten repo) are left out rather than failing the listing."""
    newest: dict[tuple[str, str], Session] = {}
    known = services.cfg().projects
    for s in services.store().sessions(project):
        if s.branch and (project or s.project in known):
            key = (s.project, s.branch)
            # a task's branch outlives a killed session: its PR is the newest session's
            if key not in newest or s.created_at >= newest[key].created_at:
                newest[key] = s
    out: dict[str, list[Session]] = {}
    for s in newest.values():
        out.setdefault(s.project, []).append(s)
    return out


@app.command("ls")
def ls(
    project: str | None = typer.Option(None, "--project", "-p", help="Only this project."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Each session's PR with its CI and review state (one poll of the forge per project)."""
    cfg = services.cfg()
    rows = []
    failed = False
    for name, sessions in _tracked(project).items():
        p = cfg.project(name)
        forge = forgemod.for_project(p, services.store(), services.fleet().plan_for(p))
        result = forge.poll([s.branch for s in sessions if s.branch])
        for s in sessions:
            pr = result.prs.get(s.branch or "")
            if pr is None:
                continue
            verdict = session_gate(services.store(), p, s, pr)
            rows.append({"session": s.id, "task": s.task, "pr": pr.number, "state": pr.state,
                         "ci": pr.checks.overall, "review": approval(pr).value,
                         "mergeable": pr.mergeable, "merge_state": pr.merge_state,
                         "draft": pr.draft, "gate": verdict.reason if not verdict else
                         "can merge", "head": pr.head_sha[:10], "url": pr.url})
        for err in result.errors:
            typer.echo(f"ao: {name}: {err}", err=True)
            failed = True
    if json_out:
        emit_json(rows)
    elif not rows:
        typer.echo("no pull requests yet" if not failed else "could not read the forge",
                   err=True)
    else:
        typer.echo(table(["session", "task", "pr", "state", "ci", "review", "gate", "head"],
                         [(r["session"], r["task"], f"#{r['pr']}", r["state"], r["ci"],
                           r["review"], r["gate"], r["head"]) for r in rows]))
    if failed:
        raise typer.Exit(1)



def _session_pr(session: str) -> tuple[Session, Forge, PullRequest]:
    s = services.session(session)
    p = services.cfg().project(s.project)
    forge = forgemod.for_project(p, services.store(), services.fleet().plan_for(p))
    pr = forge.find_pr(s.branch or "") if s.branch else None
    if pr is None:
        raise BadInput(f"{s.id} has no pull request yet", "its agent must push its branch")
    return s, forge, pr


def approve(
    session: str = typer.Argument(..., help=SESSION_HELP),
    reject: str | None = typer.Option(None, "--reject", help="Reject, with this reason (sent "
                                      "to the agent as a review)."),
) -> None:
    """Pass a task's approval gate (`approve` in its steps) for its PR's current head, or
    reject it (docs/steps.md)."""
    import getpass

    from ao.services.step_results import approve_gate

    s, _forge, pr = _session_pr(session)
    typer.echo(approve_gate(services.fleet(), s, pr, getpass.getuser(), reject))


@app.command("merge")
def merge(session: str = typer.Argument(..., help=SESSION_HELP)) -> None:
    """Merge a session's PR now, if the merge gate allows it (docs/forges.md)."""
    from ao.services.merging import merge_now

    s = services.session(session)
    forge = forgemod.for_project(services.cfg().project(s.project), services.store())
    number, sha = merge_now(services.cfg(), services.store(), services.fleet().server(s), s, forge)
    typer.echo(f"{s.id}: PR #{number} merged as {sha[:10]}" if sha else
               f"{s.id}: PR #{number} is in the merge queue: it merges once CI passes on it "
               "merged onto main (`ao logs` tells when)")


def review(
    session: str = typer.Argument(..., help=SESSION_HELP),
    approve: bool = typer.Option(False, "--approve", help="Approve the PR."),
    request_changes: str | None = typer.Option(None, "--request-changes", "-r",
                                               help="Request changes, with this comment."),
    comment: str | None = typer.Option(None, "--comment", "-c", help="Just comment."),
    file: Path | None = typer.Option(None, "--file", help="The file the comment is about."),
    line: int | None = typer.Option(None, "--line", help="The line the comment is about."),
) -> None:
    """Review a session's PR on the local forge (approve, request changes, comment)."""
    chosen = [x for x in (approve, request_changes is not None, comment is not None) if x]
    if len(chosen) != 1:
        raise BadInput("choose one of --approve, --request-changes TEXT, --comment TEXT",
                       "e.g. ao review wor-1 --request-changes 'rename foo'")
    if line is not None and file is None:
        raise BadInput("--line needs --file", "name the file the line is in")
    s, forge, pr = _session_pr(session)
    if not isinstance(forge, LocalForge):
        raise BadInput(f"{s.project} uses GitHub", "review on GitHub; ao reads it from there")
    state = "approved" if approve else "changes_requested" if request_changes else "commented"
    body = request_changes or comment or ""
    forge.review(pr.number, state, body, str(file) if file else None, line, pr.head_sha)
    from ao import paths

    paths.poke_daemon()  # seen at once, not at the next poll (ls said "review needed")
    typer.echo(f"{s.id}: PR #{pr.number} {state.replace('_', ' ')}")
