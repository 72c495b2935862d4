"""What the agents spend, on the daemon's tick: each agent's own usage records read on
(agent_usage.py: Claude Code's transcript, Codex's rollout file), and the project's
`budget_usd` held: reached, nothing new starts and the running agents are told to wrap up.
The tick's fourth layer (ticking.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ao.config import Config, ProjectConfig
from ao.decide import compose
from ao.record.events import Event, emit
from ao.record.state import State
from ao.record.store import Session, Store
from ao.services.fleet import Fleet
from ao.services.notify import Notifier
from ao.world import agent_usage, agents, hosts


class Spending:
    cfg: Config
    store: Store
    fleet: Fleet
    notifier: Notifier
    clock: Callable[[], float]
    _budget_said: dict[str, str]  # the budget each project was last said to have spent

    def read_usage(self, project: ProjectConfig, sessions: list[Session]) -> None:
        """What each agent spent since the last poll, from its own records (one read of the
        records for the sessions whose agents keep them)."""
        keeping = [s for s in sessions if s.host == hosts.LOCAL and
                   (agents.get(s.agent or project.agent.name).uses_hooks or
                    (s.agent or project.agent.name) == "codex")]
        if not keeping:
            return
        rows = {r["session"]: r for r in self.store.agent_usage_of([s.id for s in keeping])}
        for s in keeping:
            if (s.agent or project.agent.name) == "codex":
                self._codex_usage(s, rows.get(s.id))
            elif s.id in rows:
                agent_usage.read(self.store, s, rows[s.id])

    def budget(self, project: ProjectConfig) -> bool:
        """The project's budget spent: nothing new starts; said once (an event and a
        notification), and each running agent is told once to wrap up."""
        why = agent_usage.over_budget(self.store, project.name, project.budget_usd)
        if why is None:
            return False
        fp = f"budget:{project.budget_usd}"
        for s in self.store.sessions(project.name, states={State.WORKING, State.PR_OPEN}):
            self.store.record_and_queue(s.id, [("budget", fp)], compose.budget_spent(why),
                                        "budget")
        if self._budget_said.get(project.name) != fp:
            self._budget_said[project.name] = fp  # said again when a raised budget runs out
            event = emit(Event("budget.reached", project.name, data={"why": why}), self.store)
            self.notifier.notify(event, f"{project.name}: budget reached",
                                 f"{why}; nothing new starts (raise budget_usd to go on)")
        return True

    def _codex_usage(self, s: Session, row: dict[str, Any] | None) -> None:
        """A Codex session's usage, from its rollout file (found once by its worktree)."""
        if row is None or not row["transcript"]:
            home = Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex")
            if agent_usage.find_codex_rollout(self.store, s, home) is None:
                return
            row = self.store.agent_usage(s.id)[0]
        agent_usage.read_codex(self.store, s, row)
