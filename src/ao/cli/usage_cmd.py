"""`ao usage`: model calls, tokens and estimated cost, per project and per plan."""

from __future__ import annotations

import typer

from . import services
from .output import emit_json, table


def usage(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Tokens and estimated cost of every model call, per project and per plan."""
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
    if json_out:
        emit_json({"rows": [{"project": p, "plan": pl, **t} for (p, pl), t in rows.items()],
                   "total_usd": round(total, 6), "budget_usd": budget})
        return
    if not rows:
        typer.echo("no model calls yet")
        return
    typer.echo(table(["project", "plan", "calls", "input", "output", "cache", "usd"],
                     [(p, pl, int(t["calls"]), int(t["input"]), int(t["output"]),
                       int(t["cache"]), f"{t['usd']:.4f}") for (p, pl), t in rows.items()]))
    typer.echo(f"total ${total:.4f}" + (f" of a ${budget:.2f} budget" if budget else ""))
