"""A run seen whole (`ao report`): when each task started, opened its PR, failed CI, waited on
a person and merged, drawn as one line a task on a common clock; the critical path (the chain
of dependencies that decided when the last task merged); and what the agents cost, per task
and per merged task. Read from the store (sessions, events, tasks, agent usage); the drawing
is pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ao.record.store import Session, Store


@dataclass
class TaskRun:
    task: str
    title: str
    deps: tuple[str, ...] = ()
    sessions: int = 0
    queued_at: float | None = None  # its first session was made (queued, or started at once)
    started: float | None = None
    pr_at: float | None = None
    merged_at: float | None = None
    ci_failed: list[float] = field(default_factory=list)
    waited: list[tuple[float, str]] = field(default_factory=list)  # a person was needed
    escalated: int = 0
    usd: float = 0.0
    state: str = "queued"


@dataclass
class RunReport:
    project: str
    tasks: list[TaskRun]
    critical: list[str]

    def in_order(self) -> list[TaskRun]:
        """The tasks as the run took them: by when each started (not started: last)."""
        return sorted(self.tasks, key=lambda t: (t.started or float("inf"), t.task))

    @property
    def begun(self) -> float | None:
        return min((t.started for t in self.tasks if t.started), default=None)

    @property
    def ended(self) -> float | None:
        return max((t.merged_at for t in self.tasks if t.merged_at), default=None)

    def numbers(self) -> dict[str, Any]:
        """The run in figures: its makespan against the critical path's own work (the bound
        no scheduling beats: each task on the path from its start to its merge), merges per
        hour, fix rounds, the times a person was needed, and the cost per merged task."""
        merged = [t for t in self.tasks if t.merged_at]
        usd = round(sum(t.usd for t in self.tasks), 6)
        begun, ended = self.begun, self.ended
        span = (ended - begun) if begun is not None and ended is not None else None
        by = {t.task: t for t in self.tasks}
        bound = sum((by[k].merged_at or 0.0) - (by[k].started or 0.0) for k in self.critical
                    if k in by and by[k].started and by[k].merged_at) or None
        return {"merged": len(merged), "total": len(self.tasks), "makespan_s": span,
                "critical_path_s": bound,
                "makespan_over_bound": round(span / bound, 3) if span and bound else None,
                "merges_per_hour": round(len(merged) / (span / 3600), 2) if span else None,
                "fix_rounds": sum(len(t.ci_failed) for t in self.tasks),
                "person_needed": sum(t.escalated + len(t.waited) for t in self.tasks),
                "usd": usd,
                "usd_per_merged_task": round(usd / len(merged), 6) if merged else None}

    def as_dict(self) -> dict[str, Any]:
        return {"project": self.project, "begun": self.begun, "ended": self.ended,
                "tasks": [t.__dict__ for t in self.tasks], "critical_path": self.critical,
                **self.numbers()}


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def build(store: Store, project: str) -> RunReport:
    sessions = store.sessions(project)
    usage = {u["session"]: float(u["cost_usd"]) for u in
             store.agent_usage_of([s.id for s in sessions])}
    runs: dict[str, TaskRun] = {}
    for s in sessions:  # oldest first: each task's sessions in the order they ran
        row = store.task(project, s.task) or {}
        t = runs.setdefault(s.task, TaskRun(s.task, s.title or str(row.get("title") or ""),
                                            tuple(json.loads(row.get("deps") or "[]"))))
        t.sessions += 1
        t.queued_at = t.queued_at or s.created_at
        t.usd = round(t.usd + usage.get(s.id, 0.0), 6)
        t.state = s.state.value
        _events(t, s, store.session_events(s.id))
    return RunReport(project, list(runs.values()), critical_path(runs))


def _events(t: TaskRun, s: Session, events: list[dict[str, Any]]) -> None:
    for e in events:
        at, kind = _epoch(str(e["ts"])), str(e["type"])
        if kind in ("session.started", "session.spawned") and t.started is None:
            t.started = at
        elif kind == "pr.opened" and t.pr_at is None:
            t.pr_at = at
        elif kind == "ci.failed":
            t.ci_failed.append(at)
        elif kind == "escalated":
            t.escalated += 1
        elif kind == "session.waiting" and e["data"].get("on") in ("person", "reviewer"):
            t.waited.append((at, str(e["data"].get("kind") or "")))
        elif kind == "merged":
            t.merged_at = at
    if t.started is None and s.state.value != "queued":
        t.started = s.created_at


def critical_path(runs: dict[str, TaskRun]) -> list[str]:
    """From the last task to merge back through, at each step, the dependency that merged
    last (the one it waited for longest): the chain that decided the run's length."""
    done = {k: t for k, t in runs.items() if t.merged_at}
    if not done:
        return []
    at: str | None = max(done, key=lambda k: done[k].merged_at or 0.0)
    path: list[str] = []
    while at is not None and at not in path:
        path.append(at)
        deps = [d for d in runs[at].deps if d in done]
        at = max(deps, key=lambda k: done[k].merged_at or 0.0) if deps else None
    return list(reversed(path))


def draw(report: RunReport, width: int = 100) -> str:
    """One line a task on the run's clock: `-` queued or waiting to start, `=` working, `#`
    its PR open, `x` a CI failure, `!` a person needed, `*` merged; `>` marks the critical
    path. Pure."""
    begun, ended = report.begun, report.ended
    if begun is None:
        return f"{report.project}: nothing has started yet"
    last = max([ended or 0.0] + [x for t in report.tasks for x in
                                 (t.pr_at or 0.0, *t.ci_failed, *(w[0] for w in t.waited))])
    span = max(1.0, last - begun)
    name = max([len(t.task) for t in report.tasks] + [4])
    cols = max(20, width - name - 22)

    def col(at: float) -> int:
        return min(cols - 1, int((at - begun) / span * (cols - 1)))

    lines = [f"{report.project}: {len([t for t in report.tasks if t.merged_at])} of "
             f"{len(report.tasks)} tasks merged in {_dur(span)}; "
             f"critical path {' -> '.join(report.critical) or '-'}"]
    for t in report.in_order():
        bar = [" "] * cols
        if t.started is not None:
            end = col(t.merged_at or last)
            for i in range(col(t.started), end + 1):
                bar[i] = "#" if t.pr_at and i >= col(t.pr_at) else "="
            for at in t.ci_failed:
                bar[col(at)] = "x"
            for at, _ in t.waited:
                bar[col(at)] = "!"
            if t.merged_at:
                bar[end] = "*"
        mark = ">" if t.task in report.critical else " "
        took = _dur((t.merged_at or last) - t.started) if t.started else "-"
        lines.append(f"{mark}{t.task:<{name}} |{''.join(bar)}| {took:>7} ${t.usd:.2f}")
    usd = sum(t.usd for t in report.tasks)
    merged = len([t for t in report.tasks if t.merged_at])
    lines.append(f"agents ${usd:.2f}" + (f", ${usd / merged:.2f} per merged task"
                                         if merged else "") +
                 f"; {_n(sum(len(t.ci_failed) for t in report.tasks), 'CI failure')}, "
                 f"{_n(sum(t.escalated for t in report.tasks), 'escalation')}")
    lines.append("= working  # PR open  x CI failed  ! a person needed  * merged  "
                 "> on the critical path")
    return "\n".join(lines)


def _n(count: int, what: str) -> str:
    return f"{count} {what}" + ("" if count == 1 else "s")


def _dur(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else \
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
