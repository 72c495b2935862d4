"""The records people read, as plain dicts: one shape for `--json`, the HTTP API and metrics,
so a field has the same name everywhere."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ao.decide import attention, redmain, scheduler, steps, waiting
from ao.decide import plan as planmod
from ao.record.state import ENDED, RUNNING, Outcome, State
from ao.world import agent_usage

if TYPE_CHECKING:
    from ao.config_model import ProjectConfig
    from ao.record.store import Session, Store


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


def wait_context(store: Store, project: ProjectConfig | None) -> waiting.Context:
    """What `waiting.why` needs beside a session's own record, for its project."""
    if project is None:
        return waiting.Context()
    return waiting.Context.of(
        project, paused=store.paused(project.name),
        forge_trouble=store.forge_trouble(project.name),
        main_red=redmain.red_reason(store.main_watch(project.name)),
        budget=agent_usage.over_budget(store, project.name, project.budget_usd))


def session(store: Store, s: Session, now: float | None = None,
            ctx: waiting.Context | None = None) -> dict[str, Any]:
    rounds = len(store.attempts(s.id, "fix-ci"))
    w = waiting.why(s, ctx or waiting.Context(), now)
    return {"id": s.id, "project": s.project, "task": s.task, "title": s.title,
            "state": s.state.value, "activity": activity(s), "agent": s.agent, "host": s.placed_on,
            "branch": s.branch, "pr": s.pr_number, "pr_url": s.pr_url, "pr_state": s.pr_state,
            "checks": s.pr_checks, "review": s.pr_review, "mergeable": s.pr_mergeable,
            "merge_gate": s.pr_gate, "step": s.step or ("implement" if s.state.value != "queued"
                                                         else None),
            "zone": attention.zone(s, now), "fix_rounds": rounds,
            "outcome": s.outcome.value if s.outcome else None,
            "queued": len(store.messages(s.id, "queued")),
            "limited_until": s.limited_until, "created_at": s.created_at,
            "updated_at": s.updated_at, "note": s.note,
            "waiting": w.reason if w else None, "waiting_on": w.who if w else None}


def plan_status(store: Store, plan: planmod.Plan, project: str) -> dict[str, Any]:
    sessions = store.sessions(project)
    done = scheduler.done_tasks(scheduler.by_task(sessions), store.closed_tasks(project))
    latest: dict[str, Session] = {s.task: s for s in sessions}
    rows = [_plan_row(plan, key, latest.get(key), done) for key in plan.tasks]
    crit, length = planmod.critical_path(plan)

    def count(*states: str) -> int:
        return sum(1 for r in rows if r["state"] in states)

    return {"plan": str(plan.source) if plan.source else None, "project": project,
            "tasks": rows, "critical_path": crit, "critical_path_days": length,
            "progress": {"merged": count("done"), "total": len(rows),
                         "running": count(*(x.value for x in RUNNING)),
                         "queued": count("queued"), "escalated": count("needs_human")}}


def _plan_row(plan: planmod.Plan, key: str, s: Session | None,
              done: set[str]) -> dict[str, Any]:
    """A task of a plan as the views show it: done, or its latest session's state and step."""
    if key in done:
        state, step = "done", "merged" if s and s.state.value != "queued" else None
    else:
        state = s.state.value if s else "not queued"
        step = (s.step or "implement") if s and s.state.value != "queued" else None
    return {"task": key, "title": plan.tasks[key].title, "state": state,
            "session": s.id if s else None, "pr": s.pr_number if s else None,
            "ci": s.pr_checks if s else None, "step": step,
            "steps": steps.raw(plan.steps(key)),
            "waits_on": [] if key in done else scheduler.waiting_on(plan, key, done)}


def stats(store: Store, project: str, max_concurrent: int) -> dict[str, Any]:
    """Execution time, success and error rates, agent utilisation."""
    sessions = store.sessions(project)
    outcomes = [s.outcome for s in sessions if s.outcome is not None]
    merged = [s for s in sessions if s.outcome is Outcome.MERGED]
    running = sum(1 for s in sessions if s.state in RUNNING)
    return {"project": project, "sessions": len(sessions), "running": running,
            "max_concurrent": max_concurrent,
            "utilisation": _rate(running, max_concurrent) or 0.0,
            "merged": len(merged), "failed": outcomes.count(Outcome.FAILED),
            "abandoned": outcomes.count(Outcome.ABANDONED),
            "success_rate": _rate(len(merged), len(outcomes)),
            "error_rate": _rate(outcomes.count(Outcome.FAILED), len(outcomes)),
            **_to_merge(merged), **_recorded(store, sessions),
            "limited": sum(1 for s in sessions if s.limited_until),
            **_spent(store, sessions, len(merged)), "at": time.time()}


def _spent(store: Store, sessions: list[Session], merged: int) -> dict[str, Any]:
    """What the project's agents spent (their own records), in all and per merged task."""
    usd = agent_usage.cost_of(store, [s.id for s in sessions])
    return {"usd": usd, "usd_per_merged": round(usd / merged, 6) if merged else None}


def _recorded(store: Store, sessions: list[Session]) -> dict[str, Any]:
    """The rounds from the attempts recorded, and the messages by how they went."""
    attempts = [a["reaction"] for s in sessions for a in store.attempts(s.id)]
    messages = [m["status"] for s in sessions for m in store.messages(s.id)]
    return {**{name: attempts.count(kind) for name, kind in _ROUNDS},
            "messages": {status: messages.count(status)
                         for status in ("delivered", "queued", "failed")}}


# the figures counted from the attempts recorded: (its name, the reaction recorded)
_ROUNDS = (("fix_rounds", "fix-ci"), ("review_rounds", "review-round"),
           ("rebases", "ask-rebase"), ("escalations", "escalate"))


def _rate(n: int, of: int) -> float | None:
    return round(n / of, 3) if of else None


def _to_merge(merged: list[Session]) -> dict[str, float | None]:
    """The median and 90th percentile of the time from start to merge."""
    d = sorted(s.updated_at - s.created_at for s in merged)
    if not d:
        return {"median_seconds_to_merge": None, "p90_seconds_to_merge": None}
    return {"median_seconds_to_merge": d[len(d) // 2],
            "p90_seconds_to_merge": d[min(len(d) - 1, int(len(d) * 0.9))]}
