"""What the agents spend, on the daemon's tick: each agent's own usage records read on
(agent_usage.py: Claude Code's transcript, Codex's rollout file), the project's `budget_usd`
held (reached, nothing new starts and the running agents are told to wrap up), and a usage
limit held by the whole fleet: one session at its limit parks every other of the same agent on
the same machine (one login, one account) until the reset, so none runs into the wall after
it. The tick's fourth layer (ticking.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ao.decide import compose
from ao.errors import AoError
from ao.record.events import Event, emit
from ao.record.state import Activity, State
from ao.world import agent_usage, agents, hosts, tmux

if TYPE_CHECKING:
    from ao.config import Config, ProjectConfig
    from ao.decide.plan import Plan
    from ao.record.store import Session, Store
    from ao.services.fleet import Fleet
    from ao.services.notify import Notifier

WORKING = frozenset({State.WORKING, State.PR_OPEN})  # states whose agents spend


class Spending:
    cfg: Config
    store: Store
    fleet: Fleet
    notifier: Notifier
    clock: Callable[[], float]
    _budget_said: dict[str, str]  # the budgets said to be spent

    def read_usage(self, project: ProjectConfig, sessions: list[Session]) -> None:
        """What each agent spent since the last poll, from its own records (one read of the
        records for the sessions whose agents keep them)."""
        keeping = [s for s in sessions if s.host == hosts.LOCAL and
                   (s.agent or project.agent.name) in agent_usage.KEEPS_RECORDS]
        if not keeping:
            return
        rows = {r["session"]: r for r in self.store.agent_usage_of([s.id for s in keeping])}
        for s in keeping:
            agent_usage.read_agent(self.store, s, s.agent or project.agent.name, rows.get(s.id))

    def park_fleet(self, project: ProjectConfig) -> None:
        """Every working session of an agent and machine where one session shows its usage
        limit is parked until the reset: a turn in flight interrupted (the profile's stop
        keys), its messages held, and at the reset told to continue as the limited one is
        (reactions.py); an idle one just waits. One event and one notification per wall."""
        now = self.clock()
        live = self.store.sessions(states=set(WORKING))  # every project: one account
        walls: dict[tuple[str, str], tuple[float, Session]] = {}
        for s in live:
            if s.activity is Activity.LIMITED and (s.limited_until or 0) > now:
                key = (s.agent or "command", s.host)
                if key not in walls or walls[key][0] < (s.limited_until or 0):
                    walls[key] = (s.limited_until or 0, s)
        for (agent, host), (until, first) in walls.items():
            parked = []
            for s in live:
                if (s.agent or "command", s.host) != (agent, host) or \
                        (s.limited_until or 0) >= until:
                    continue
                busy = s.activity is Activity.ACTIVE
                if busy:
                    try:
                        tmux.send_keys(self.fleet.server(s), s.id, *agents.get(agent).stop_keys)
                    except AoError as e:  # its host away: parked all the same
                        busy = False
                        emit(Event("session.park_failed", s.project, s.id, s.task,
                                   {"error": str(e)[:200]}), self.store)
                self.store.update_session(s.id, limited_until=until)
                if busy:  # the prompt it cut off may come back into the input: ao's own
                    done = self.store.messages(s.id, "delivered")
                    self.store.record_attempt(s.id, "interrupted", f"interrupted:{int(until)}",
                                              {"message": done[-1]["id"] if done else None})
                # its own notice is the fleet's one below; an idle agent has nothing to resume
                self.store.record_attempt(s.id, "notify", f"limited:{int(until)}")
                if not busy:
                    self.store.record_attempt(s.id, "limit-continue",
                                              f"limit-continue:{int(until)}")
                emit(Event("session.parked", s.project, s.id, s.task,
                           {"agent": agent, "until": until, "by": first.id,
                            "interrupted": busy}), self.store)
                parked.append(s.id)
            if parked:
                event = emit(Event("agent.limit_parked", project.name, first.id, first.task,
                                   {"agent": agent, "host": host, "until": until,
                                    "sessions": parked}), self.store)
                self.notifier.notify(
                    event, f"{agent} usage limit",
                    f"{first.id} hit {agent}'s usage limit on {host}; {len(parked)} more "
                    f"session(s) parked until {time.strftime('%H:%M', time.localtime(until))}")

    def budget(self, project: ProjectConfig, plan: Plan | None = None) -> bool:
        """The project's budget (or the plan's `budget_usd`) spent: nothing new starts (in
        the plan); said once (an event and a notification), and each running agent (of the
        plan) is told once to wrap up."""
        budget = project.budget_usd if plan is None else plan.budget_usd
        tasks = None if plan is None else set(plan.tasks)
        why = agent_usage.over_budget(self.store, project.name, budget, tasks)
        if why is None:
            return False
        fp = f"budget:{budget}" if plan is None else f"budget:{plan.source}:{budget}"
        for s in self.store.sessions(project.name, states={State.WORKING, State.PR_OPEN}):
            if tasks is None or s.task in tasks:
                self.store.record_and_queue(s.id, [("budget", fp)], compose.budget_spent(why),
                                            "budget")
        if plan is not None:
            for s in self.store.sessions(project.name, states={State.QUEUED}):
                if s.task in plan.tasks and s.note != why:
                    self.store.update_session(s.id, note=why)  # `ao status` says why
        if self._budget_said.get(fp) != fp:
            self._budget_said[fp] = fp  # said again when a raised budget runs out
            data: dict[str, object] = {"why": why}
            if plan is not None:
                data["plan"] = str(plan.source)
            event = emit(Event("budget.reached", project.name, data=data), self.store)
            where = "the plan's file" if plan is not None else "the project's config"
            self.notifier.notify(event, f"{project.name}: budget reached",
                                 f"{why}; nothing new starts (raise budget_usd in {where})")
        return True
