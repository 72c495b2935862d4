"""GitHub as the plan on the daemon's tick (pickup.py): the labelled issues read as this
tick's plan and recorded as tasks; an issue whose label went, un-queued (or its running
session handled per `on_unlabel`); and each picked-up issue's status comment, edited in
place when its task moves on. The tick's third layer (ticking.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ao.decide import pickup as pickupmod
from ao.decide import waiting
from ao.decide.reactions import Policy
from ao.errors import AoError, ExternalError
from ao.record.events import Event, emit
from ao.record.state import LIVE, State

if TYPE_CHECKING:
    from ao.config import Config, ProjectConfig
    from ao.decide.plan import Plan
    from ao.record.forge import Forge
    from ao.record.store import Session, Store
    from ao.services.fleet import Fleet
    from ao.services.notify import Notifier

log = logging.getLogger(__name__)


class Picking:
    cfg: Config
    store: Store
    fleet: Fleet
    notifier: Notifier
    clock: Callable[[], float]
    _picked: dict[str, Plan]  # each project's last pickup plan
    _picked_tasks: dict[tuple[str, str], str]
    _pickup_said: set[str]
    _status_said: dict[tuple[str, int], str]  # each issue's status comment
    _held: dict[str, dict[int, str]]  # each project's held issues, with why

    def pickup(self, project: ProjectConfig, forge: Forge) -> Plan | None:
        """GitHub as the plan (pickup.py): the labelled issues as this tick's plan, each
        recorded as a task with its issue (closed when it merges); what keeps one out, said
        once; and a queued task whose label went, un-queued (a running one: per on_unlabel)."""
        if not project.pickup_label or not hasattr(forge, "picked_up"):
            return None
        if getattr(forge, "blocked_until", 0.0) > time.time():
            return self._picked.get(project.name)
        try:
            issues, problems = forge.picked_up(project.pickup_label)
        except ExternalError as e:
            emit(Event("forge.error", project.name, data={"error": str(e)}), self.store)
            return self._picked.get(project.name)
        plan, held = pickupmod.plan_and_held(issues)
        self._held[project.name] = held  # said on each held issue (status_comments)
        for problem in dict.fromkeys([*problems, *held.values()]):
            if problem not in self._pickup_said:
                self._pickup_said.add(problem)
                emit(Event("pickup.held", project.name, data={"why": problem}), self.store)
        for p in issues:
            k = pickupmod.key(p.number)
            if self._picked_tasks.get((project.name, k)) != p.title:
                self.store.put_task(project.name, k, p.title, issue_number=p.number)
                self._picked_tasks[(project.name, k)] = p.title
        labelled = {pickupmod.key(p.number) for p in issues}
        for s in self.store.sessions(project.name, states=set(LIVE)):
            if s.task in labelled or (project.name, s.task) not in self._picked_tasks or \
                    s.pr_state == "merged":
                continue  # not a picked-up task, or still labelled, or done
            try:
                self._unlabelled(project, forge, s)
            except AoError as e:
                log.warning("%s: after its label went: %s", s.id, e)
        self._picked[project.name] = plan
        return plan

    def status_comments(self, project: ProjectConfig, forge: Forge, plan: Plan | None,
                        paused: bool) -> None:
        """The issue is the status page: each picked-up issue's one comment by ao, edited
        when where its task stands changes (queued, an agent on it, its PR and what it waits
        for, fix rounds, needs a human, merged), never a comment per step."""
        if plan is None or not project.pickup_status_comment or \
                not hasattr(forge, "status_comment") or \
                getattr(forge, "blocked_until", 0.0) > time.time():
            return
        now = self.clock()
        newest: dict[str, Session] = {}
        for s in self.store.sessions(project.name):  # oldest first: the newest stays
            newest[s.task] = s
        held = self._held.get(project.name, {})
        keys = set(plan.tasks) | {k for k, s in newest.items() if s.merged and
                                  now - s.updated_at < 86400} | {  # its issue closed: said once
            pickupmod.key(n) for n in held}
        ctx = waiting.Context.of(project, paused=paused)
        rounds_of = Policy.for_project(project).ci_retries
        for k in sorted(keys):
            n = pickupmod.number(k)
            if n is None:
                continue
            found = newest.get(k)
            line = f"Held: {held[n]}." if n in held and k not in plan.tasks else \
                pickupmod.status_line(
                    found, waiting.why(found, ctx, now) if found is not None else None,
                    len(self.store.attempts(found.id, "fix-ci")) if found is not None else 0,
                    rounds_of)
            if self._status_said.get((project.name, n)) == line:
                continue
            try:
                forge.status_comment(n, pickupmod.status_body(line), pickupmod.MARKER)
            except ExternalError as e:  # the next tick tries again
                log.warning("status comment on #%s: %s", n, e)
                continue
            self._status_said[(project.name, n)] = line

    def _unlabelled(self, project: ProjectConfig, forge: Forge, s: Session) -> None:
        """A task whose issue lost its label: un-queued before it started; once running,
        killed with `on_unlabel: kill`, else a person is told, once. An issue closed (its PR
        merged on GitHub: `Closes #N`) is not an issue that lost its label."""
        n = pickupmod.number(s.task)
        if n is None or not getattr(forge, "open_without", lambda *_: False)(
                n, project.pickup_label):
            return
        if s.state is State.QUEUED or project.pickup_on_unlabel == "kill":
            if s.state is State.QUEUED:
                self.store.set_state(s.id, State.KILLED, note="its issue lost the pickup label")
            else:
                self.fleet.kill(s.id)
            emit(Event("pickup.dropped", project.name, s.id, s.task,
                       {"label": project.pickup_label}), self.store)
            return
        if self.store.record_attempt(s.id, "pickup", f"unlabelled:{s.task}"):
            event = emit(Event("pickup.unlabelled", project.name, s.id, s.task,
                               {"label": project.pickup_label}), self.store)
            self.notifier.notify(event, f"{s.id} {s.task} lost its label",
                                 f"{s.task} no longer carries {project.pickup_label}; its "
                                 f"session goes on (`ao session kill {s.id}` stops it)")
