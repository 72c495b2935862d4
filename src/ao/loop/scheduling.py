"""What starts next in a project, on the daemon's tick: the plan's ready tasks, in the
scheduler's order (scheduler.py), held while they would write files a running session writes
(overlap.py) or while their agent is at a usage limit; queued records no plan owns; a
spawn that keeps failing, escalated; the plan's completion, said once. The tick's second
layer (ticking.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ao.decide import overlap, scheduler
from ao.decide import plan as planmod
from ao.errors import AoError
from ao.host_config import LOCAL
from ao.record.events import Event, emit
from ao.record.state import LIVE, Outcome, State
from ao.world import workspace

if TYPE_CHECKING:
    from ao.config import Config, ProjectConfig
    from ao.decide.plan import Plan
    from ao.record.store import Session, Store
    from ao.services.fleet import Fleet
    from ao.services.notify import Notifier


class Scheduling:
    cfg: Config
    store: Store
    fleet: Fleet
    notifier: Notifier
    clock: Callable[[], float]
    _held_since: dict[tuple[str, str], float]  # tasks held for overlap.py
    _changed: dict[str, tuple[float, list[str]]]  # each live session's changed files

    def start_unplanned(self, project: ProjectConfig, planned: set[str]) -> None:
        """Queued records no running plan owns (a one-off `--prompt` task or a `batch-spawn`
        task that waited for room or for its dependencies, a start a crash undid): started
        when their recorded dependencies are done and there is room."""
        for s in self.store.sessions(project.name, states={State.QUEUED}):
            if s.task in planned:
                continue
            try:
                task = self.fleet.task(project, s.task, None)
            except AoError:
                continue
            if self.fleet.pending_deps(project.name, task):
                continue
            r = self.fleet.start_queued(s.id, None)
            if r.status == "queued":
                return  # no room (start_queued checks max_concurrent)
            if r.status == "failed":
                emit(Event("spawn.failed", project.name, s.id, s.task, {"error": r.reason}),
                     self.store)

    def start_fix(self, project: ProjectConfig, key: str) -> None:
        """The task that fixes a red main (redmain_act.py): started now, red main or not,
        once, and past max_concurrent (the running sessions cannot merge, so they would never
        give it a slot); a machine without room still holds it, and says why."""
        mine = self.store.sessions(project.name, task=key)
        if not mine:
            r = self.fleet.spawn(project.name, key)
            if r.status == "queued" and r.session and "max_concurrent" in r.reason:
                r = self.fleet.start_queued(r.session, None, beyond_max=True)
        elif mine[-1].state is State.QUEUED:
            r = self.fleet.start_queued(mine[-1].id, None, beyond_max=True)
        else:
            return
        if r.status == "failed":
            emit(Event("spawn.failed", project.name, r.session, key, {"error": r.reason}),
                 self.store)

    def schedule(self, project: ProjectConfig, plan: Plan, paused: bool) -> None:
        sessions = self.store.sessions(project.name)
        tasks = scheduler.by_task(sessions)
        closed = self.store.closed_tasks(project.name) & set(plan.tasks)
        self._spawn_escalations(project, plan, sessions, tasks)
        # a task added to the plan while it runs (or after it completed) gets its queued
        # record here; so does a task whose failed start has waited out its backoff
        missing = scheduler.to_queue(plan, tasks, closed, self.clock())
        if missing and plan.source is not None:
            self.store.start_plan_run(project.name, str(plan.source))  # reopens a finished run
        for key in missing:
            self.fleet.queue(project, plan.tasks[key], plan)
        if missing:
            tasks = scheduler.by_task(self.store.sessions(project.name))
        if scheduler.complete(plan, tasks, closed):
            self._complete(project, plan)
            return
        start = self._not_limited(project, plan, scheduler.next_to_start(
            plan, tasks, closed, project.max_concurrent, paused,
            keep=lambda ready: self._not_overlapping(project, plan, ready)))
        if start:
            event = emit(Event("wave.started", project.name, data={"tasks": start}), self.store)
            self.notifier.hooks(event)
        for key in start:
            queued = self.store.sessions(project.name, states={State.QUEUED}, task=key)
            if not queued:
                continue
            r = self.fleet.start_queued(queued[0].id, plan)
            if r.status == "failed":
                n = len(tasks.get(key, scheduler.TaskStatus()).failures) + 1
                emit(Event("spawn.failed", project.name, queued[0].id, key,
                           {"error": r.reason, "try": n, "of": scheduler.SPAWN_TRIES}),
                     self.store)

    def _not_overlapping(self, project: ProjectConfig, plan: Plan,
                         start: list[str]) -> list[str]:
        """The tasks to start that write no file a running session writes (overlap.py); a
        held one says why, once, and goes anyway after `overlap_wait`."""
        if project.overlap == "ignore" or not any(plan.tasks[k].files for k in start):
            return start
        running = {}
        for s in self.store.sessions(project.name, states=set(LIVE) - {State.QUEUED}):
            t = plan.tasks.get(s.task)
            running[s.task] = (s.id, [*(t.files if t else ()), *self._changed_files(project,
                                                                                   s)])
        held = overlap.hold(start, {k: plan.tasks[k].files for k in start}, running,
                            set(planmod.critical_path(plan)[0]))
        now, out = self.clock(), []
        for key in start:
            since = self._held_since.get((project.name, key))
            if key in held and (since is None or now - since < project.overlap_wait):
                queued = self.store.sessions(project.name, states={State.QUEUED}, task=key)
                for q in queued:
                    if q.note != f"held: {held[key]}":
                        self.store.update_session(q.id, note=f"held: {held[key]}")
                if since is None:
                    self._held_since[(project.name, key)] = now
                    emit(Event("task.held", project.name, queued[0].id if queued else None,
                               key, {"why": held[key]}), self.store)
                continue
            if since is not None:
                self._held_since.pop((project.name, key), None)
                queued = self.store.sessions(project.name, states={State.QUEUED}, task=key)
                for q in queued:
                    self.store.update_session(q.id, note=None)
                # released: the other session ended, or the hold ran out (overlap_wait)
                emit(Event("task.released", project.name, queued[0].id if queued else None,
                           key, {"held_s": round(now - since, 1), "why": "overlap_wait ran out"
                                 if key in held else "the overlapping session ended"}),
                     self.store)
            out.append(key)
        return out

    def _changed_files(self, project: ProjectConfig, s: Session) -> list[str]:
        """The files a running session's branch has changed against the default branch,
        committed or not (read here at most every 30 s a session)."""
        if s.host != LOCAL or not s.worktree:
            return []
        cached = self._changed.get(s.id)
        now = self.clock()
        if cached is not None and now - cached[0] < 30.0:
            return cached[1]
        wt = Path(s.worktree)
        if not wt.is_dir():
            return []
        try:
            files = workspace.diff_from_base(wt, project.remote, project.default_branch,
                                             "--name-only", or_head=False).split()
        except AoError:
            files = []
        self._changed[s.id] = (now, files)
        return files

    def _not_limited(self, project: ProjectConfig, plan: Plan, start: list[str]) -> list[str]:
        """The tasks to start with an agent that is not at its usage limit (it would hit the
        same wall); the others start with the configured fallback, or wait, said once."""
        held = self._limited_agents(project)
        if not held:
            return start
        waiting = [k for k in start if (plan.tasks[k].agent or project.agent.label) in held]
        fallback = project.agent.fallback
        if waiting and fallback and fallback not in held:
            # the configured fallback takes the new sessions until the reset
            for key in waiting:
                queued = self.store.sessions(project.name, states={State.QUEUED}, task=key)
                if queued:
                    r = self.fleet.start_queued(queued[0].id, plan, agent=fallback)
                    emit(Event("spawn.fallback", project.name, queued[0].id, key,
                               {"agent": fallback, "status": r.status,
                                "limited": sorted(held)}), self.store)
        elif waiting:
            emit(Event("spawn.held", project.name, data={
                "tasks": waiting, "agents": sorted(held), "until": max(held.values())}),
                self.store)
        return [k for k in start if k not in waiting]

    def _limited_agents(self, project: ProjectConfig) -> dict[str, float]:
        """Agents at their usage limit, with the reset: any project's live session counts
        (one login serves them all)."""
        now = self.clock()
        out: dict[str, float] = {}
        for s in self.store.sessions(states=set(LIVE) - {State.QUEUED}):
            if s.limited_until and s.limited_until > now:
                out[s.agent] = max(out.get(s.agent, 0.0), s.limited_until)
        return out

    def _spawn_escalations(self, project: ProjectConfig, plan: Plan, sessions: list[Session],
                           tasks: dict[str, scheduler.TaskStatus]) -> None:
        """A task whose start failed SPAWN_TRIES times is not tried again: a human is told
        once (with the last error), and `ao spawn` starts it by hand."""
        for key in plan.tasks:
            t = tasks.get(key)
            if t is None or t.live or t.merged or not scheduler.spawn_gave_up(t):
                continue
            last = [s for s in sessions if s.task == key and s.outcome is Outcome.FAILED][-1]
            if self.store.record_attempt(last.id, "escalate", "escalate:spawn"):
                reason = (f"{key} failed to start {len(t.failures)} times; last: "
                          f"{last.note or 'no reason recorded'}")
                event = emit(Event("escalated", project.name, last.id, key,
                                   {"reason": reason, "hint": f"fix it, then `ao spawn "
                                    f"{project.name} {key}`"}), self.store)
                self.notifier.notify(event, f"{key} cannot start", reason)

    def _complete(self, project: ProjectConfig, plan: Plan) -> None:
        path = str(plan.source)
        if not self.store.finish_plan_run(project.name, path):
            return
        sessions = [s for s in self.store.sessions(project.name) if s.task in plan.tasks]
        merged = {s.task: s for s in sessions if s.merged}
        rounds = {k: len(self.store.attempts(s.id, "fix-ci")) for k, s in merged.items()}
        escalations = sum(len(self.store.attempts(s.id, "escalate")) for s in sessions)
        span = max((s.updated_at for s in merged.values()), default=0) - \
            min((s.created_at for s in sessions), default=0)
        data = {"plan": path, "tasks": len(plan.tasks), "merged": len(merged),
                "fix_rounds": rounds, "escalations": escalations, "seconds": round(span, 1)}
        event = emit(Event("all-complete", project.name, data=data), self.store)
        self.notifier.notify(event, f"{project.name}: plan complete",
                             f"{len(merged)} tasks merged, {sum(rounds.values())} fix rounds, "
                             f"{escalations} escalations")
