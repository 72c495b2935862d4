"""Never silent, on the daemon's tick: a new reason a session waits, said once (an event,
and a notification when a person must act: waiting.py); the forge's trouble (a revoked token,
a rate limit) said once and its end too; an agent's commits that do not reach the remote,
named with git's error, and pushed by ao for an agent that cannot (pushes.py). The tick's
fifth layer (ticking.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ao.decide import waiting
from ao.host_config import LOCAL
from ao.record.events import Event, emit
from ao.record.state import State
from ao.services import pushes
from ao.world import agents, workspace

if TYPE_CHECKING:
    from ao.config import Config, ProjectConfig
    from ao.record.store import Session, Store
    from ao.services.fleet import Fleet
    from ao.services.notify import Notifier

log = logging.getLogger(__name__)
PUSH_GRACE = 30.0  # seconds idle before an agent's commits are expected on the remote
PUSH_FOR_AGENT_GRACE = 5.0  # ... before ao pushes them for an agent that cannot


class Telling:
    cfg: Config
    store: Store
    fleet: Fleet
    notifier: Notifier
    clock: Callable[[], float]
    _said: dict[str, str]  # the wait each session was last said to have
    _push_checked: dict[str, tuple[float | None, float | None]]

    def forge_trouble(self, project: ProjectConfig, trouble: tuple[str, str] | None) -> None:
        """Why the forge cannot be read (a rejected token, a rate limit), recorded for every
        reader's "why is it waiting"; a new one is an event, and a notification when a
        person must act; its end is an event too."""
        was = self.store.forge_trouble(project.name)
        if trouble == was:
            return
        self.store.ensure_project(project.name, str(project.path), project.repo)
        self.store.set_forge_trouble(project.name, trouble)
        if trouble is None:
            emit(Event("forge.recovered", project.name, data={"was": was[0] if was else ""}),
                 self.store)
            return
        reason, who = trouble
        event = emit(Event("forge.trouble", project.name, data={"reason": reason, "on": who}),
                     self.store)
        if who == waiting.PERSON and (was is None or was[1] != who):
            self.notifier.notify(event, f"{project.name}: the forge cannot be read", reason)

    def check_pushed(self, project: ProjectConfig, s: Session, idle_for: float) -> None:
        """Once per idle spell past PUSH_GRACE: are the agent's commits on the remote? (local
        refs only; a push that failed leaves the remote-tracking ref behind)."""
        if s.host != LOCAL or not s.branch or s.state not in (State.WORKING,
                                                                     State.PR_OPEN):
            return
        profile = agents.get(s.agent or project.agent.name)
        if idle_for < (PUSH_FOR_AGENT_GRACE if not profile.pushes_itself else PUSH_GRACE):
            return
        spell = (s.screen_changed_at, s.hook_at)
        if self._push_checked.get(s.id) == spell:
            return
        self._push_checked[s.id] = spell
        n = pushes.unpushed(project.path, project.remote, s.branch, project.default_branch) \
            if workspace.has_remote(project.path, project.remote) else 0
        refused = None
        if n and not profile.pushes_itself and s.worktree:
            refused = pushes.push_for_agent(Path(s.worktree), project.remote, s.branch)
            if refused is None:
                emit(Event("branch.pushed_for_agent", project.name, s.id, s.task,
                           {"commits": n}), self.store)
                n = 0
        why = pushes.reason(project.name, s.id, n, project.remote, refused and
                            f"ao's push for the agent was refused: {refused}") if n else None
        if why != s.unpushed:
            self.store.update_session(s.id, unpushed=why)

    def say_why(self, project: ProjectConfig, s: Session, paused: bool) -> None:
        """A new reason the session waits is an event (`ao logs` tells it), once per reason
        and head; one that needs a person (a review, a permission, an idle agent, a PR
        ready for a human's merge) is also a notification."""
        sid = s.id
        ctx = waiting.Context.of(project, paused=paused)
        w = waiting.why(s, ctx, self.clock())
        if w is None or w.kind in ("needs_human", "queued", "merging", "merged", "forge"):
            return  # an escalation notifies itself; the rest are ao's own doing
        episode = s.pr_head_sha or str(int(s.activity_at or 0))
        said = f"waiting:{w.kind}:{episode}"
        if self._said.get(sid) == said:  # said already (the store keeps it across restarts)
            return
        self._said[sid] = said
        if not self.store.record_attempt(sid, "waiting", said):
            return
        event = emit(Event("session.waiting", project.name, sid, s.task,
                           {"reason": w.reason, "on": w.who, "kind": w.kind}), self.store)
        if w.needs_person:
            self.notifier.notify(event, f"{sid} {s.task} waits for you", w.reason)
