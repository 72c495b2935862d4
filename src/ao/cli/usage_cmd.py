"""`ao usage`: what the agents spent, per session and per task (from their own records,
agent_usage.py), and the planner's own model calls, per project and per plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ao.cli import services
from ao.cli.output import emit_json, table
from ao.decide import plan as planmod
from ao.errors import AoError

ROUNDS = ("fix-ci", "review-round")  # the fix rounds whose cost is counted


def _rounds(store: Any, sid: str, usd: float) -> tuple[int, float]:
    """The session's fix rounds (CI and review) and what its agent spent from the first of
    them on (each round records what the agent had spent when it was sent)."""
    at = []
    for reaction in ROUNDS:
        for a in store.attempts(sid, reaction):
            data = json.loads(a["data"] or "{}")
            if isinstance(data, dict) and isinstance(data.get("usd_at"), (int, float)):
                at.append(float(data["usd_at"]))
    return len(at), round(max(0.0, usd - min(at)), 6) if at else 0.0


def _plan_of(store: Any) -> dict[tuple[str, str], str]:
    """Each planned task's plan file, by (project, task): the plans ever run."""
    out: dict[tuple[str, str], str] = {}
    for run in store.plan_runs(active=False):
        try:
            tasks = planmod.load(Path(run["plan"])).tasks
        except (AoError, OSError):
            continue
        for key in tasks:
            out[(run["project"], key)] = run["plan"]
    return out


def _agents() -> tuple[list[dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    """Each session's agent usage (and its fix rounds' share), and its sum per task (with
    whether the task merged, and its plan)."""
    store = services.store()
    sessions = {s.id: s for s in store.sessions()}
    plans = _plan_of(store)
    rows: list[dict[str, Any]] = []
    tasks: dict[tuple[str, str], dict[str, Any]] = {}
    for u in store.agent_usage():
        s = sessions.get(u["session"])
        if s is None:
            continue
        usd = round(float(u["cost_usd"]), 6)
        rounds, rounds_usd = _rounds(store, s.id, usd)
        row = {"session": s.id, "project": s.project, "task": s.task, "agent": s.agent,
               "model": u["model"], "input": u["input_tokens"], "output": u["output_tokens"],
               "cache": u["cache_write_tokens"] + u["cache_read_tokens"],
               "usd": usd, "estimated": bool(u["estimated"]), "merged": s.merged,
               "fix_rounds": rounds, "fix_rounds_usd": rounds_usd}
        rows.append(row)
        t = tasks.setdefault((s.project, s.task), {
            "project": s.project, "task": s.task, "plan": plans.get((s.project, s.task)),
            "sessions": 0, "usd": 0.0, "merged": False, "fix_rounds": 0,
            "fix_rounds_usd": 0.0})
        t["sessions"] += 1
        t["usd"] = round(t["usd"] + usd, 6)
        t["merged"] = t["merged"] or s.merged
        t["fix_rounds"] += rounds
        t["fix_rounds_usd"] = round(t["fix_rounds_usd"] + rounds_usd, 6)
    return rows, tasks


def _per_plan(tasks: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """What each plan's tasks cost: in all, per merged task, in fix rounds."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for t in tasks.values():
        p = out.setdefault((t["project"], t["plan"] or "-"), {
            "project": t["project"], "plan": t["plan"] or "-", "tasks": 0, "merged": 0,
            "usd": 0.0, "fix_rounds": 0, "fix_rounds_usd": 0.0})
        p["tasks"] += 1
        p["merged"] += int(t["merged"])
        p["usd"] = round(p["usd"] + t["usd"], 6)
        p["fix_rounds"] += t["fix_rounds"]
        p["fix_rounds_usd"] = round(p["fix_rounds_usd"] + t["fix_rounds_usd"], 6)
    for p in out.values():
        p["usd_per_merged_task"] = round(p["usd"] / p["merged"], 6) if p["merged"] else None
    return list(out.values())


def usage(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """What the agents spent, per session and per task (and per merged PR), and the
    planner's model calls, per project and per plan: tokens and estimated cost."""
    sessions, tasks = _agents()
    merged = [t for t in tasks.values() if t["merged"]]
    per_merged = round(sum(t["usd"] for t in tasks.values()) / len(merged), 6) \
        if merged else None
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for project, d in services.store().llm_calls():
        key = (project or "-", d.get("plan") or "-")
        t = rows.setdefault(key, {"calls": 0, "input": 0, "output": 0, "cache": 0, "usd": 0.0})
        t["calls"] += 1
        t["input"] += d.get("input_tokens", 0)
        t["output"] += d.get("output_tokens", 0)
        t["cache"] += d.get("cache_creation_input_tokens", 0) + d.get(
            "cache_read_input_tokens", 0)
        t["usd"] += d.get("cost_usd", 0.0)
    budget = services.cfg().llm.budget_usd
    total = sum(t["usd"] for t in rows.values())
    agents_total = round(sum(r["usd"] for r in sessions), 6)
    fix_rounds = sum(r["fix_rounds"] for r in sessions)
    per_round = round(sum(r["fix_rounds_usd"] for r in sessions) / fix_rounds, 6) \
        if fix_rounds else None
    plans = _per_plan(tasks)
    if json_out:
        emit_json({"rows": [{"project": p, "plan": pl, **t} for (p, pl), t in rows.items()],
                   "total_usd": round(total, 6), "budget_usd": budget,
                   "sessions": sessions, "tasks": list(tasks.values()), "plans": plans,
                   "agents_usd": agents_total, "usd_per_merged_task": per_merged,
                   "fix_rounds": fix_rounds, "usd_per_fix_round": per_round})
        return
    if sessions:
        typer.echo(table(["session", "task", "agent", "input", "output", "cache", "rounds",
                          "usd"],
                         [(r["session"], r["task"], r["agent"], r["input"], r["output"],
                           r["cache"], r["fix_rounds"],
                           f"{r['usd']:.4f}" + ("~" if r["estimated"] else ""))
                          for r in sessions]))
        typer.echo(table(["project", "plan", "tasks", "merged", "usd", "per merged",
                          "in fix rounds"],
                         [(p["project"], Path(p["plan"]).name, p["tasks"], p["merged"],
                           f"{p['usd']:.4f}", "-" if p["usd_per_merged_task"] is None else
                           f"{p['usd_per_merged_task']:.4f}",
                           f"{p['fix_rounds_usd']:.4f} ({p['fix_rounds']})") for p in plans]))
        typer.echo(f"agents: ${agents_total:.4f}" + (
            f"; ${per_merged:.4f} per merged task" if per_merged is not None else "") + (
            f"; ${per_round:.4f} per fix round ({fix_rounds})" if per_round is not None
            else "") + ("  (~: a model without a price, estimated)" if any(
                r["estimated"] for r in sessions) else ""))
    if not sessions:
        typer.echo("no agent usage recorded yet (read from the agents' own records: Claude "
                   "Code's transcripts, Codex's rollout files, Gemini CLI's chat records, "
                   "Aider's analytics log)")
    if not rows:
        typer.echo("no planner calls yet")
        return
    typer.echo(table(["project", "plan", "calls", "input", "output", "cache", "usd"],
                     [(p, pl, int(t["calls"]), int(t["input"]), int(t["output"]),
                       int(t["cache"]), f"{t['usd']:.4f}") for (p, pl), t in rows.items()]))
    typer.echo(f"total ${total:.4f}" + (f" of a ${budget:.2f} budget" if budget else ""))
