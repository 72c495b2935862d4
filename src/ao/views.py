"""The records people read, as plain dicts: one shape for `--json`, the HTTP API and metrics,
so a field has the same name everywhere."""

from __future__ import annotations

import time
from typing import Any

from . import attention, scheduler, steps
from . import plan as planmod
from .state import ENDED, RUNNING, Outcome, State
from .store import Session, Store


def duration(seconds: float) -> str:
    """A span for people, in its largest unit: 45s, 12m, 3h, 2d."""
    s = max(0, int(seconds))
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s // n}{unit}"
    return f"{s}s"


def activity(s: Session) -> str:
    if s.state is State.QUEUED:
        return "-"
    return "exited" if s.state in ENDED else s.activity


def session(store: Store, s: Session, now: float | None = None) -> dict[str, Any]:
    rounds = len(store.attempts(s.id, "fix-ci"))
    return {"id": s.id, "project": s.project, "task": s.task, "title": s.title,
            "state": s.state.value, "activity": activity(s), "agent": s.agent, "host": s.host,
            "branch": s.branch, "pr": s.pr_number, "pr_url": s.pr_url, "pr_state": s.pr_state,
            "checks": s.pr_checks, "review": s.pr_review, "mergeable": s.pr_mergeable,
            "merge_gate": s.pr_gate, "step": s.step or ("implement" if s.state.value != "queued"
                                                         else None),
            "zone": attention.zone(s, now), "fix_rounds": rounds,
            "outcome": s.outcome.value if s.outcome else None,
            "queued": len(store.messages(s.id, "queued")),
            "limited_until": s.limited_until, "created_at": s.created_at,
            "updated_at": s.updated_at, "note": s.note}


def plan_status(store: Store, plan: planmod.Plan, project: str) -> dict[str, Any]:
    sessions = store.sessions(project)
    tasks = scheduler.by_task(sessions)
    closed = store.closed_tasks(project)
    done = scheduler.done_tasks(tasks, closed)
    latest: dict[str, Session] = {s.task: s for s in sessions}
    rows = []
    for key in plan.tasks:
        s = latest.get(key)
        rows.append({"task": key, "title": plan.tasks[key].title,
                     "state": "done" if key in done else (s.state.value if s else "not queued"),
                     "session": s.id if s else None, "pr": s.pr_number if s else None,
                     "ci": s.pr_checks if s else None,
                     "step": ("merged" if key in done else s.step or "implement")
                     if s and s.state.value != "queued" else None,
                     "steps": steps.raw(plan.steps(key)),
                     "waits_on": [] if key in done else scheduler.waiting_on(plan, key, done)})
    crit, length = planmod.critical_path(plan)
    merged = sum(1 for r in rows if r["state"] == "done")
    return {"plan": str(plan.source) if plan.source else None, "project": project,
            "tasks": rows, "critical_path": crit, "critical_path_days": length,
            "progress": {"merged": merged, "total": len(rows),
                         "running": sum(1 for r in rows if r["state"] in
                                        {x.value for x in RUNNING}),
                         "queued": sum(1 for r in rows if r["state"] == "queued"),
                         "escalated": sum(1 for r in rows if r["state"] == "needs_human")}}


def stats(store: Store, project: str, max_concurrent: int) -> dict[str, Any]:
    """Execution time, success and error rates, agent utilisation."""
    sessions = store.sessions(project)
    ended = [s for s in sessions if s.outcome is not None]
    merged = [s for s in ended if s.outcome is Outcome.MERGED]
    failed = [s for s in ended if s.outcome is Outcome.FAILED]
    running = sum(1 for s in sessions if s.state in RUNNING)
    durations = sorted(s.updated_at - s.created_at for s in merged)
    attempts = [a for s in sessions for a in store.attempts(s.id)]
    messages = [m for s in sessions for m in store.messages(s.id)]
    return {"project": project, "sessions": len(sessions), "running": running,
            "max_concurrent": max_concurrent,
            "utilisation": round(running / max_concurrent, 3) if max_concurrent else 0.0,
            "merged": len(merged), "failed": len(failed),
            "abandoned": sum(1 for s in ended if s.outcome is Outcome.ABANDONED),
            "success_rate": round(len(merged) / len(ended), 3) if ended else None,
            "error_rate": round(len(failed) / len(ended), 3) if ended else None,
            "median_seconds_to_merge": durations[len(durations) // 2] if durations else None,
            "p90_seconds_to_merge": durations[min(len(durations) - 1,
                                                  int(len(durations) * 0.9))]
            if durations else None,
            "fix_rounds": sum(1 for a in attempts if a["reaction"] == "fix-ci"),
            "review_rounds": sum(1 for a in attempts if a["reaction"] == "review-round"),
            "rebases": sum(1 for a in attempts if a["reaction"] == "ask-rebase"),
            "escalations": sum(1 for a in attempts if a["reaction"] == "escalate"),
            "limited": sum(1 for s in sessions if s.limited_until),
            "messages": {status: sum(1 for m in messages if m["status"] == status)
                         for status in ("delivered", "queued", "failed")},
            "at": time.time()}
