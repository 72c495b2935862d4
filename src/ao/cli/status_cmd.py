"""`ao status` (each project at a glance, and why each session waits) and `ao stats`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from ao import paths
from ao.cli import services
from ao.cli.output import emit_json, note, table
from ao.decide import attention, scheduler, waiting
from ao.record.state import LIVE, RUNNING, State
from ao.record.store import Session, Store
from ao.sanitize import for_terminal
from ao.world import agent_usage


def status(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Per project: sessions by state, queued tasks, and what runs next."""
    cfg = services.cfg()
    store = services.store()
    from ao.paths import daemon_state as read_state

    state = read_state()
    if state:
        last = state.get("last_poll")
        daemon = (f"running (pid {state['pid']}, since {services.age(state['started_at'])} "
                  f"ago, last poll {services.age(last) + ' ago' if last else 'pending'})")
    else:
        daemon = "not running (`ao start`)"
    fault = paths.store_trouble()
    if fault:
        daemon += f"; {fault}: the daemon waits and tries again each poll"
    projects = {name: _project_status(store, name, p.max_concurrent, p.budget_usd)
                for name, p in cfg.projects.items()}
    if json_out:
        emit_json({"daemon": daemon, "dashboard": (state or {}).get("web"),
                   "store_fault": fault, "projects": projects})
        return
    typer.echo(f"daemon: {daemon}")
    if state and state.get("web"):
        typer.echo(f"dashboard: {state['web']}")
    for name, info in projects.items():
        _print_project_status(name, info)
    if not cfg.projects:
        note("no projects configured: run `ao init` in a repository")


def _project_status(store: Store, name: str, max_concurrent: int,
                    budget_usd: float | None = None) -> dict[str, Any]:
    sessions = store.sessions(name)
    ctx = services.wait_context(name)
    by_state: dict[str, int] = {}
    for s in sessions:
        by_state[s.state.value] = by_state.get(s.state.value, 0) + 1
    now = time.time()
    return {
        "by_state": by_state, "running": sum(1 for s in sessions if s.state in RUNNING),
        "max_concurrent": max_concurrent,
        "queued": [{"id": s.id, "task": s.task, "note": s.note} for s in sessions
                   if s.state is State.QUEUED],
        "needs_human": [s.id for s in sessions if s.state is State.NEEDS_HUMAN],
        # held at an approval gate: `ao approve` (steps.py)
        "gate": [s.id for s in sessions if attention.zone(s) == "gate"],
        # killed by hand: not queued again until someone starts them (scheduler.py)
        "stopped": sorted(k for k, t in scheduler.by_task(sessions).items() if t.held),
        "limited": [{"id": s.id, "agent": s.agent, "until": s.limited_until}
                    for s in sessions if _limited(s, now)],
        "paused": store.paused(name),
        "main_red": ctx.main_red,  # main's CI fails (mainwatch.py)
        "budget": ctx.budget,  # the agents spent the project's budget_usd (agent_usage.py)
        "usd": agent_usage.spent(store, name),  # what its agents spent, their own records
        "budget_usd": budget_usd,
        "next": _next_startable(store, name, sessions),
        # why each running session is not moving on by itself (waiting.py), and on whom
        "waiting": [{"id": s.id, "task": s.task, "reason": w.reason, "on": w.who}
                    for s in sessions if s.state in LIVE and s.state is not State.QUEUED
                    and (w := waiting.why(s, ctx, now)) is not None],
    }


def _limited(s: Session, now: float) -> bool:
    """Running, and its agent at a usage limit that has not reset yet."""
    return s.state in RUNNING and (s.limited_until or 0) > now


def _print_project_status(name: str, info: dict[str, Any]) -> None:
    states = ", ".join(f"{n} {k}" for k, n in sorted(info["by_state"].items())) or "none"
    paused = " (paused: `ao resume` to go on)" if info["paused"] else ""
    typer.echo(f"{name}{paused}: {info['running']}/{info['max_concurrent']} running; {states}")
    lines = [
        ("  ", info.get("main_red") or "", ": merges and new starts wait until it is green"),
        ("  ", info.get("budget") or "", ": nothing new starts (raise budget_usd)"),
        ("  queued: ", ", ".join(f"{q['id']} {q['task']}" + (
            f" ({for_terminal(q['note'])})" if q.get("note") else "") for q in info["queued"]),
         ""),
        ("  starts next: ", "" if info.get("main_red") or info.get("budget")
         else ", ".join(info["next"]), ""),
        ("  stopped by hand: ", ", ".join(info["stopped"]),
         " (`ao spawn PROJECT KEY` starts one again)"),
    ]
    for head, what, tail in lines:
        if what:
            typer.echo(head + what + tail)
    if info["usd"] or info["budget_usd"]:
        typer.echo(f"  agents spent: ${info['usd']:.2f}" + (
            f" of a ${info['budget_usd']:.2f} budget" if info["budget_usd"] else "") +
            " (`ao usage`)")
    for w in info["waiting"]:
        typer.echo(f"  {w['id']} {w['task']}: {for_terminal(w['reason'])} [{w['on']}]")
    for x in info["limited"]:
        until = time.strftime("%H:%M", time.localtime(x["until"]))
        typer.echo(f"  usage limit: {x['id']} ({x['agent']}) until {until}; no new "
                   f"{x['agent']} sessions start before then")


def stats(json_out: bool = typer.Option(False, "--json", help="Print JSON."),
          project: str | None = typer.Option(None, "--project", "-p",
                                             help="Only this project.")) -> None:
    """Per project: tasks merged and failed, success and error rates, time to merge, fix
    rounds, escalations and utilisation (the same figures as /api/stats and /metrics)."""
    from ao.services import views

    cfg = services.cfg()
    names = [project] if project else list(cfg.projects)
    rows = [views.stats(services.store(), n, cfg.project(n).max_concurrent) for n in names]
    if json_out:
        emit_json(rows)
        return

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x * 100:.0f}%"

    def dur(x: float | None) -> str:
        return "-" if x is None else views.duration(x)

    typer.echo(table(["project", "sessions", "running", "merged", "failed", "abandoned",
                      "success", "errors", "to merge", "fix rounds", "escalations"],
                     [(r["project"], r["sessions"], f"{r['running']}/{r['max_concurrent']}",
                       r["merged"], r["failed"], r["abandoned"], pct(r["success_rate"]),
                       pct(r["error_rate"]), dur(r["median_seconds_to_merge"]),
                       r["fix_rounds"], r["escalations"]) for r in rows]))


def _next_startable(store: Store, project: str, sessions: list[Session]) -> list[str]:
    """Queued tasks of running plans whose dependencies are all done, critical path first
    (what the daemon starts as soon as there is room)."""
    from ao.decide import plan as planmod
    from ao.decide import scheduler
    from ao.errors import AoError

    tasks = scheduler.by_task(sessions)
    closed = store.closed_tasks(project)
    out: list[str] = []
    for run in store.plan_runs(project):
        try:
            p = planmod.load_valid(Path(run["plan"]))
        except AoError:
            continue
        out += scheduler.ready(p, tasks, closed)
    return out
