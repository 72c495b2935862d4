"""`ao plan check | show | import`."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from ao import paths
from ao.cli.output import days, emit_json, note, table
from ao.decide import plan as planmod
from ao.decide import scheduler
from ao.decide.plan_import import import_file
from ao.errors import BadInput, PlanError
from ao.world import agents

app = typer.Typer(help="Check, show and import plans (tasks and their dependency graph).",
                  no_args_is_help=True)


@app.command("check")
def check(
    file: Path = typer.Argument(..., help="The plan file (plans/*.yaml)."),
    json_out: bool = typer.Option(False, "--json", help="Print the problems as JSON."),
    strict: bool = typer.Option(False, "--strict",
                                help="Waves (phases) that contradict the graph are errors too."),
) -> None:
    """Validate a plan: unknown or self dependencies, cycles, unsafe keys, unknown agents;
    waves that contradict the graph are warnings (ao follows the graph), errors with
    --strict."""
    p = planmod.load(file)
    p = replace(p, problems=(*p.problems, *_agent_problems(p)))
    # ao ignores waves: a phase that contradicts the graph is worth knowing, not a stop
    errors = [x for x in p.problems if strict or x.kind != "wave"]
    if json_out:
        emit_json({"file": str(file), "tasks": len(p.tasks),
                   "problems": [{"kind": x.kind, "task": x.task, "message": x.message,
                                 "severity": "error" if x in errors else "warning"}
                                for x in p.problems]})
    else:
        for x in p.problems:
            typer.echo(f"{file}: {'' if x in errors else 'warning: '}{x.message}")
        if not errors:
            typer.echo(f"{file}: ok, {len(p.tasks)} task{'s' if len(p.tasks) != 1 else ''}"
                       + (f" ({len(p.problems)} warning(s))" if p.problems else ""))
    if errors:
        kinds = sorted({x.kind for x in errors})
        note(f"ao: {len(errors)} problem(s) in {file} ({', '.join(kinds)})")
        raise typer.Exit(2)


def _agent_problems(p: planmod.Plan) -> list[planmod.Problem]:
    """A task's or a reviewer's agent that no profile answers to (`ao agents`)."""
    known = set(agents.names())
    out = []
    for key in p.tasks:
        named = [("agent", p.tasks[key].agent)] + [
            ("reviewer agent", st.agent) for st in p.steps(key) if st.kind == "review"]
        for what, name in named:
            if name and name not in known:
                out.append(planmod.Problem("unknown-agent", key, f"{key}: unknown {what} "
                                           f"{name!r}; agents: {', '.join(sorted(known))}"))
    return out


@app.command("show")
def show(
    file: Path | None = typer.Argument(None, help="The plan file (plans/*.yaml)."),
    from_github: str | None = typer.Option(
        None, "--from-github", metavar="PROJECT",
        help="The graph GitHub holds: PROJECT's labelled issues and their dependencies."),
    max_concurrent: int = typer.Option(5, "--max-concurrent", "-n", min=1,
                                       help="Agents at once, for the makespan simulation."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Waves, critical path, total work and simulated makespan of a plan."""
    if (file is None) == (from_github is None):
        raise BadInput("give a plan file or --from-github PROJECT (one of them)",
                       "e.g. `ao plan show plans/p.yaml`, `ao plan show --from-github shop`")
    held: dict[int, str] = {}
    if from_github is not None:
        p, held = _from_github(from_github)
    else:
        assert file is not None
        p = planmod.load(file)
    s = planmod.summary(p, max_concurrent)
    s["estimated_cost"] = _cost_estimate(len(p.tasks))
    s["budget_usd"] = p.budget_usd
    if json_out:
        emit_json({**s, "held": {f"#{n}": why for n, why in held.items()}} if from_github
                  else s)
        return
    for why in dict.fromkeys(held.values()):
        typer.echo(f"held: {why}")
    tail = planmod.tails(p)
    crit = set(s["critical_path"]["tasks"])
    for i, layer in enumerate(s["layers"], start=1):
        typer.echo(f"wave {i}:")
        for key in planmod.priority_order(p, layer):
            t = p.tasks[key]
            mark = "*" if key in crit else " "
            deps = f"  <- {', '.join(t.deps)}" if t.deps else ""
            more = [st.label for st in p.steps(key) if st.kind != "implement"]
            gates = f"  [then {', '.join(more)}]" if more else ""
            typer.echo(f"  {mark} {key:<14} {days(t.days):>5}  chain {days(tail[key]):>4}  "
                       f"{t.title}{deps}{gates}")
    cp = s["critical_path"]
    m = s["makespan"]
    typer.echo("")
    typer.echo(f"critical path ({days(cp['length'])}): {' -> '.join(cp['tasks'])}")
    typer.echo(f"total work: {days(s['total_work'])} over {s['tasks']} tasks")
    typer.echo(f"makespan with {m['max_concurrent']} at once: {days(m['dependency_driven'])} "
               "starting each task when its own deps are done")
    if m["waves_as_barriers"] is not None:
        typer.echo(f"  versus {days(m['waves_as_barriers'])} running the plan's "
                   f"{len(p.waves or ())} explicit waves as barriers")
    est = s["estimated_cost"]
    if est is not None:
        typer.echo(f"estimated cost: ${est['usd']:.2f} ({s['tasks']} tasks at "
                   f"${est['per_task']:.2f}, what each of the last {est['from']} merged tasks' "
                   "agents spent on average; `ao usage` has the records)")
    if p.budget_usd is not None:
        over = est is not None and est["usd"] > p.budget_usd
        typer.echo(f"budget: ${p.budget_usd:.2f}" + (" (below the estimate: the plan will stop "
                                                     "short of it)" if over else ""))
    if s["overlaps"]:
        typer.echo(f"predicted overlaps ({len(s['overlaps'])}; from the tasks' `files:`):")
        for o in s["overlaps"]:
            typer.echo(f"  {o['tasks'][0]} and {o['tasks'][1]} share {o['shares']}")
        typer.echo(f"  makespan holding a task while another writes its files (overlap: "
                   f"wait): {days(m['with_overlap_holds'])}, against "
                   f"{days(m['dependency_driven'])} without")
    if s["wave_problems"]:
        note(f"note: the plan's waves contradict its graph in {len(s['wave_problems'])} places; "
             f"`ao plan check {file}` lists them")


def _cost_estimate(tasks: int) -> dict[str, Any] | None:
    """What a plan of `tasks` tasks may cost, from what the agents of the last merged tasks
    spent (their own usage records); None before anything merged with a known cost."""
    from ao.record.state import State

    from . import services

    store = services.store()
    merged = [s.id for s in store.sessions(states={State.MERGED, State.CLEANED})
              if s.merged][-50:]
    costs = [float(r["cost_usd"]) for r in store.agent_usage_of(merged)
             if float(r["cost_usd"] or 0) > 0]
    if not costs:
        return None
    per = sum(costs) / len(costs)
    return {"usd": round(per * tasks, 2), "per_task": round(per, 4), "from": len(costs)}


def _from_github(name: str) -> tuple[planmod.Plan, dict[int, str]]:
    """The plan the daemon runs from a project's labelled issues (pickup.py), and the issues
    it holds, with why: read now from GitHub."""
    from ao.cli import services
    from ao.decide import pickup
    from ao.world import forge as forgemod

    project = services.cfg().project(name)
    if project.forge != "github":
        raise BadInput(f"project {name}'s forge is {project.forge}: its plan is not on GitHub",
                       "show its plan file instead: `ao plan show FILE`")
    if not project.pickup_label:
        raise BadInput(f"project {name} picks up no labelled issues",
                       "set `pickup: {label: ai-implement}` in its config, see docs/plans.md")
    forge = forgemod.for_project(project, services.store())
    issues, refused = forge.picked_up(project.pickup_label)  # type: ignore[attr-defined]
    plan, held = pickup.plan_and_held(issues)
    for why in refused:
        note(f"not taken: {why}")
    return plan, held


@app.command("import")
def import_(
    document: Path = typer.Argument(..., help="A markdown document with a mermaid graph TD."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Where to write the plan (default: stdout)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
) -> None:
    """Turn a planning document (mermaid `graph TD` + bracketed issue keys) into a plan file."""
    p = import_file(document)
    graph = p.graph_problems()
    if graph:
        raise PlanError(f"{document}: {graph[0]}", "fix the diagram and import again")
    text = planmod.to_yaml(p)
    if output is None:
        typer.echo(text, nl=False)
    else:
        if output.exists() and not force:
            raise BadInput(f"{paths.display(output)} already exists", "pass --force to replace it")
        paths.write_atomic(output, text)
        note(f"wrote {paths.display(output)}: {len(p.tasks)} tasks"
             + (f", {len(p.waves)} waves" if p.waves else ""))
    waves = [x for x in p.problems if x.kind == "wave"]
    if waves:
        note(f"note: the document's phases contradict its graph in {len(waves)} places "
             "(`ao plan check` lists them); ao schedules by the graph")


@app.command("push")
def push(
    file: Path = typer.Argument(..., help="The plan file."),
    project: str = typer.Option(..., "--project", "-p", help="The project (forge: github)."),
) -> None:
    """Create the plan's issues on GitHub as `[KEY] title` (idempotent: existing ones kept)."""
    from ao.cli import services
    from ao.world.forge.github import GitHubForge, push_plan

    p = planmod.load_valid(file)
    cfg = services.cfg().project(project)
    if cfg.forge != "github":
        raise BadInput(f"{project} uses the local forge: its tasks come from the plan itself",
                       "set forge: github and repo: owner/name to push issues")
    forge = GitHubForge.from_env(cfg, services.store())
    for key, number, what in push_plan(forge, p, services.store()):
        typer.echo(f"{key:<14} #{number:<5} {what}")


@app.command("run")
def run(
    file: Path = typer.Argument(..., help="The plan file."),
    project: str | None = typer.Option(None, "--project", "-p",
                                       help="The project (default: the plan's `project:`)."),
) -> None:
    """Queue every task of a plan; the daemon starts each as soon as its deps are done."""
    from ao.cli import services
    from ao.paths import daemon_state as read_state

    p = planmod.load_valid(file)
    unknown = _agent_problems(p)
    if unknown:
        raise BadInput(f"{file}: {unknown[0]}", f"run `ao plan check {file}`")
    project = project or p.project
    if not project:
        raise BadInput("which project?", "pass --project, or set `project:` in the plan")
    cfg = services.cfg().project(project)
    fleet = services.fleet()
    store = services.store()
    store.ensure_project(cfg.name, str(cfg.path), cfg.repo)
    store.start_plan_run(cfg.name, str(file.resolve()))
    # idempotent: a task that is done or has a live session is not queued again
    tasks = scheduler.by_task(store.sessions(cfg.name))
    closed = store.closed_tasks(cfg.name)
    # (a task that gave up starting is tried again: running the plan is a human asking)
    keys = scheduler.to_queue(p, tasks, closed, time.time(), tries=sys.maxsize, backoff=0.0)
    queued = sum(1 for k in keys if fleet.queue(cfg, p.tasks[k], p) is not None)
    done = scheduler.done_tasks(tasks, closed) & set(p.tasks)
    typer.echo(f"{file}: {len(p.tasks)} tasks, {queued} newly queued on {project}"
               + (f", {len(done)} already done" if done else ""))
    if not read_state():
        note("the daemon is not running: `ao start` to begin")


@app.command("status")
def status(
    file: Path = typer.Argument(..., help="The plan file."),
    project: str | None = typer.Option(None, "--project", "-p", help="The project."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Each task's state, session, PR and what it waits on."""
    from ao.cli import services
    from ao.services import views

    p = planmod.load_valid(file)
    name = project or p.project
    if not name:
        raise BadInput("which project?", "pass --project, or set `project:` in the plan")
    services.cfg().project(name)
    rows: list[dict[str, Any]] = views.plan_status(services.store(), p, name)["tasks"]
    if json_out:
        emit_json(rows)
        return
    typer.echo(table(["task", "state", "step", "session", "pr", "ci", "waits on"],
                     [(r["task"], r["state"], r["step"] or "-", r["session"] or "-",
                       f"#{r['pr']}" if r["pr"] else "-", r["ci"] or "-",
                       ", ".join(r["waits_on"]) or "-") for r in rows]))
    n_done = sum(1 for r in rows if r["state"] == "done")
    typer.echo(f"{n_done}/{len(rows)} done")


@app.command("draft")
def draft(
    feature: str = typer.Argument(..., help="The feature, in a sentence or a paragraph."),
    project: str = typer.Option(..., "--project", "-p", help="The project to plan for."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Where to write the plan "
                                       "(default: plans/<project>-draft.yaml in the repo)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; write nothing."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Draft a plan for a feature with Claude: tasks, dependencies, estimates, decisions."""
    from ao.cli import services
    from ao.services.planner import Planner

    cfg = services.cfg()
    p = cfg.project(project)
    target = output or p.path / "plans" / f"{project}-draft.yaml"
    if not dry_run and target.exists() and not force:
        raise BadInput(f"{paths.display(target)} already exists", "pass --force or -o FILE")
    plan = Planner(cfg.llm, services.store(), project).draft(feature, p.path)
    text = planmod.to_yaml(plan)
    if dry_run:
        typer.echo(text, nl=False)
        return
    paths.write_atomic(target, text)
    layers = planmod.layers(plan)
    note(f"wrote {paths.display(target)}: {len(plan.tasks)} tasks in {len(layers)} waves; "
         f"`ao plan show {target}` to review it")
