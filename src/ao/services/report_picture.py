"""A run's picture (`ao report --png/--html`, the dashboard's `/api/report`): a Gantt of its
tasks on one clock (queued, working, PR open, each CI failure, each time a person was needed,
the merge), the critical path outlined, an arrow from each dependency's merge to the start it
let happen, and the run's figures (runreport.py's numbers) above it. Drawn with matplotlib
(headless, Agg), imported here alone and only when a picture is asked for; the HTML page
holds the PNG itself and no script, every name in it escaped.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from ao.services.runreport import RunReport, TaskRun, _dur

COLOURS = {"queued": "#d0d0d0", "working": "#4e79a7", "pr": "#59a14f", "ci": "#e15759",
           "person": "#f28e2b", "merged": "#222222", "critical": "#b07aa1"}


def headline(r: RunReport) -> str:
    n = r.numbers()
    parts = [f"{r.project}: {n['merged']} of {n['total']} tasks merged"]
    if n["makespan_s"]:
        parts.append(f"in {_dur(n['makespan_s'])}")
    if n["makespan_over_bound"]:
        parts.append(f"({n['makespan_over_bound']:.2f}x the critical path's "
                     f"{_dur(n['critical_path_s'])})")
    return " ".join(parts)


def figures(r: RunReport) -> list[tuple[str, str]]:
    n = r.numbers()
    return [("merged", f"{n['merged']} of {n['total']}"),
            ("makespan", _dur(n["makespan_s"]) if n["makespan_s"] else "-"),
            ("critical path (its own work)",
             _dur(n["critical_path_s"]) if n["critical_path_s"] else "-"),
            ("makespan / critical path", f"{n['makespan_over_bound']:.2f}"
             if n["makespan_over_bound"] else "-"),
            ("merges per hour", f"{n['merges_per_hour']:.1f}" if n["merges_per_hour"] else "-"),
            ("CI fix rounds", str(n["fix_rounds"])),
            ("a person needed", str(n["person_needed"])),
            ("agents' cost", f"${n['usd']:.2f}"),
            ("per merged task", f"${n['usd_per_merged_task']:.2f}"
             if n["usd_per_merged_task"] is not None else "-")]


def png(r: RunReport) -> bytes:
    """The Gantt as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    tasks = r.in_order()
    t0 = min([x for t in tasks for x in (t.queued_at, t.started) if x] or [0.0])
    last = max([x for t in tasks for x in (t.merged_at, t.pr_at, t.started, *t.ci_failed)
                if x] or [t0 + 60])
    fig = Figure(figsize=(11, 1.9 + 0.42 * max(1, len(tasks))), dpi=100)
    ax = fig.add_subplot()
    rows = {t.task: len(tasks) - 1 - i for i, t in enumerate(tasks)}

    unit, name = (60.0, "minutes") if last - t0 >= 120 else (1.0, "seconds")

    def m(at: float) -> float:
        return (at - t0) / unit

    for t in tasks:
        _bars(ax, t, rows[t.task], m, last, t.task in r.critical)
    by = {t.task: t for t in tasks}
    for t in tasks:  # each dependency's merge to the start it let happen
        for d in t.deps:
            dep = by.get(d)
            if dep is not None and dep.merged_at and t.started:
                ax.annotate("", xy=(m(t.started), rows[t.task]),
                            xytext=(m(dep.merged_at), rows[d]),
                            arrowprops={"arrowstyle": "->", "color": "#888888", "lw": 0.8})
    ax.set_yticks(list(rows.values()), [("▶ " if k in r.critical else "") + k for k in rows])
    ax.set_xlabel(f"{name} since the first task was queued")
    ax.set_xlim(0, max(m(last) * 1.02, 1.0))
    ax.set_title(headline(r), fontsize=11, loc="left")
    ax.grid(axis="x", color="#eeeeee")
    ax.legend(handles=[Patch(color=COLOURS[k], label=label) for k, label in (
        ("queued", "queued"), ("working", "working"), ("pr", "PR open"),
        ("ci", "CI failed"), ("person", "a person needed"), ("merged", "merged"),
        ("critical", "critical path"))], loc="upper center", bbox_to_anchor=(0.5, -0.12),
        ncol=7, fontsize=8, frameon=False)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _bars(ax: Any, t: TaskRun, y: int, m: Any, last: float, critical: bool) -> None:
    edge = {"edgecolor": COLOURS["critical"], "linewidth": 2} if critical else {}
    end = t.merged_at or last
    if t.queued_at and t.started and t.started > t.queued_at:
        ax.barh(y, m(t.started) - m(t.queued_at), left=m(t.queued_at), height=0.5,
                color=COLOURS["queued"])
    if t.started:
        work_end = min(t.pr_at or end, end)
        ax.barh(y, m(work_end) - m(t.started), left=m(t.started), height=0.5,
                color=COLOURS["working"], **edge)
        if t.pr_at:
            ax.barh(y, m(end) - m(t.pr_at), left=m(t.pr_at), height=0.5, color=COLOURS["pr"],
                    **edge)
    for at in t.ci_failed:
        ax.plot([m(at)], [y], marker="x", color=COLOURS["ci"], markersize=9, mew=2)
    for at, _ in t.waited:
        ax.plot([m(at)], [y + 0.32], marker="v", color=COLOURS["person"], markersize=7)
    if t.merged_at:
        ax.plot([m(t.merged_at)], [y], marker="*", color=COLOURS["merged"], markersize=11)


def page(r: RunReport) -> str:
    """A self-contained HTML page: the figures, the picture, a row a task."""
    e = html.escape
    picture = base64.b64encode(png(r)).decode()
    rows = "".join(
        f"<tr><td>{'▶ ' if t.task in r.critical else ''}{e(t.task)}</td><td>{e(t.title)}</td>"
        f"<td>{e(t.state)}</td><td>{len(t.ci_failed)}</td><td>{t.escalated + len(t.waited)}"
        f"</td><td>{_dur(t.merged_at - t.started) if t.merged_at and t.started else '-'}</td>"
        f"<td>${t.usd:.2f}</td></tr>" for t in r.in_order())
    nums = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in figures(r))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ao report: {e(r.project)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #111; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; }}
th, td {{ text-align: left; padding: 3px 10px; border-bottom: 1px solid #ddd; }}
img {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>{e(headline(r))}</h1>
<p>critical path: {e(' → '.join(r.critical) or '-')}</p>
<table>{nums}</table>
<img alt="the run's timeline: one bar a task" src="data:image/png;base64,{picture}">
<table><tr><th>task</th><th>title</th><th>state</th><th>CI failures</th>
<th>a person needed</th><th>start to merge</th><th>cost</th></tr>{rows}</table>
</body></html>
"""
