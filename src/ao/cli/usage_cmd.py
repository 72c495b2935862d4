"""`ao usage`: what the agents spent, per session and per task (from their own records,
agent_usage.py), and the planner's own model calls, per project and per plan."""

from __future__ import annotations

from typing import Any

import typer

from ao.cli import services
from ao.cli.output import emit_json, table


def _agents() -> tuple[list[dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    """Each session's agent usage, and its sum per task (with whether the task merged)."""
    store = services.store()
    sessions = {s.id: s for s in store.sessions()}
    rows: list[dict[str, Any]] = []
    tasks: dict[tuple[str, str], dict[str, Any]] = {}
    for u in store.agent_usage():
        s = sessions.get(u["session"])
        if s is None:
            continue
        row = {"session": s.id, "project": s.project, "task": s.task, "agent": s.agent,
               "model": u["model"], "input": u["input_tokens"], "output": u["output_tokens"],
               "cache": u["cache_write_tokens"] + u["cache_read_tokens"],
               "usd": round(float(u["cost_usd"]), 6), "estimated": bool(u["estimated"]),
               "merged": s.merged}
        rows.append(row)
        t = tasks.setdefault((s.project, s.task), {"project": s.project, "task": s.task,
                                                   "sessions": 0, "usd": 0.0,
                                                   "merged": False})
        t["sessions"] += 1
        t["usd"] = round(t["usd"] + row["usd"], 6)
        t["merged"] = t["merged"] or s.merged
    return rows, tasks


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
    if json_out:
        emit_json({"rows": [{"project": p, "plan": pl, **t} for (p, pl), t in rows.items()],
                   "total_usd": round(total, 6), "budget_usd": budget,
                   "sessions": sessions, "tasks": list(tasks.values()),
                   "agents_usd": agents_total, "usd_per_merged_task": per_merged})
        return
    if sessions:
        typer.echo(table(["session", "task", "agent", "input", "output", "cache", "usd"],
                         [(r["session"], r["task"], r["agent"], r["input"], r["output"],
                           r["cache"], f"{r['usd']:.4f}" + ("~" if r["estimated"] else ""))
                          for r in sessions]))
        typer.echo(f"agents: ${agents_total:.4f}" + (
            f"; ${per_merged:.4f} per merged task" if per_merged is not None else "") +
            ("  (~: a model without a price, estimated)" if any(
                r["estimated"] for r in sessions) else ""))
    if not sessions:
        typer.echo("no agent usage recorded yet (read from Claude Code's transcripts and Codex's "
                   "rollout files; Gemini CLI's and Aider's records are not read yet)")
    if not rows:
        typer.echo("no planner calls yet")
        return
    typer.echo(table(["project", "plan", "calls", "input", "output", "cache", "usd"],
                     [(p, pl, int(t["calls"]), int(t["input"]), int(t["output"]),
                       int(t["cache"]), f"{t['usd']:.4f}") for (p, pl), t in rows.items()]))
    typer.echo(f"total ${total:.4f}" + (f" of a ${budget:.2f} budget" if budget else ""))
