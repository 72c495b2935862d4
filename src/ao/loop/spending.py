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
from ao.host_config import LOCAL
from ao.record.events import Event, emit
from ao.record.state import Activity, State
from ao.world import agent_usage, agents, tmux

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
        keeping = [s for s in sessions if s.host == LOCAL and
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
        if self.store.earliest_reset(now) is None:
            return  # no limit anywhere: nothing to park or let go
        live = self.store.sessions(states=set(WORKING))  # every project: one account
        walls: dict[tuple[str, str], tuple[float, Session]] = {}
        for s in live:
            # a wall: a session limited by what its own screen said, not one parked beside it
            if (s.limited_until or 0) > now and (s.activity is Activity.LIMITED or
                                                 not self._parked(s)):
                key = (s.agent or "command", s.host)
                if key not in walls or walls[key][0] < (s.limited_until or 0):
                    walls[key] = (s.limited_until or 0, s)
        self._unpark(live, set(walls), now)
        for (agent, host), (until, first) in walls.items():
            parked = []
            for s in live:
                if (s.agent or "command", s.host) != (agent, host) or \
                        (s.limited_until or 0) >= until or s.activity is Activity.LIMITED:
                    continue  # its own limit (a reset of its own) is not overruled
                busy = s.activity is Activity.ACTIVE
                if busy:
                    try:
                        tmux.send_keys(self.fleet.server(s), s.id, *agents.get(agent).stop_keys)
                    except AoError as e:  # its host away: parked all the same
                        busy = False
                        emit(Event("session.park_failed", s.project, s.id, s.task,
                                   {"error": str(e)[:200]}), self.store)
                cut = busy or self._cut_pending(s)  # cut off now, or at an earlier wall
                self.store.update_session(s.id, limited_until=until)
                if cut:  # the prompt it cut off may come back into the input: ao's own
                    done = self.store.messages(s.id, "delivered")
                    self.store.record_attempt(s.id, "interrupted", f"interrupted:{int(until)}",
                                              {"message": done[-1]["id"] if done else None})
                # its own notice is the fleet's one below; an idle agent has nothing to resume
                self.store.record_attempt(s.id, "notify", f"limited:{int(until)}")
                self.store.record_attempt(s.id, "parked", f"parked:{int(until)}")
                if not cut:
                    self.store.record_attempt(s.id, "limit-continue",
                                              f"limit-continue:{int(until)}")
                emit(Event("session.parked", s.project, s.id, s.task,
                           {"agent": agent, "until": until, "by": first.id,
                            "interrupted": cut}), self.store)
                parked.append(s.id)
            if parked:
                event = emit(Event("agent.limit_parked", project.name, first.id, first.task,
                                   {"agent": agent, "host": host, "until": until,
                                    "sessions": parked}), self.store)
                self.notifier.notify(
                    event, f"{agent} usage limit",
                    f"{first.id} hit {agent}'s usage limit on {host}; {len(parked)} more "
                    f"session(s) parked until {time.strftime('%H:%M', time.localtime(until))}")

    def _parked(self, s: Session) -> bool:
        """Its `limited_until` is a wall's it was parked at, not its own limit's."""
        return any(a["fingerprint"] == f"parked:{int(s.limited_until or 0)}"
                   for a in self.store.attempts(s.id, "parked"))

    def _cut_pending(self, s: Session) -> bool:
        """ao cut the session's turn off at a wall and has not told it to continue since."""
        cut = self.store.attempts(s.id, "interrupted")
        if not cut:
            return False
        until = str(cut[-1]["fingerprint"]).split(":", 1)[1]
        return not any(a["fingerprint"] == f"limit-continue:{until}"
                       for a in self.store.attempts(s.id, "limit-continue"))

    def _unpark(self, live: list[Session], walls: set[tuple[str, str]], now: float) -> None:
        """Sessions parked for a wall that is gone before its reset (the session at the limit
        works again, or ended): let go at once, and the ones ao cut off told to continue."""
        for s in live:
            if (s.limited_until or 0) <= now or s.activity is Activity.LIMITED or \
                    (s.agent or "command", s.host) in walls or not self._parked(s):
                continue
            until = int(s.limited_until or 0)
            self.store.update_session(s.id, limited_until=None)
            cut = self.store.attempts(s.id, "interrupted")
            if cut and cut[-1]["fingerprint"] == f"interrupted:{until}":
                self.store.record_and_queue(s.id, [("limit-continue",
                                                    f"limit-continue:{until}")],
                                            "continue", "limit-reset")
            emit(Event("session.unparked", s.project, s.id, s.task,
                       {"reason": "the usage limit that parked it is no longer shown"}),
                 self.store)

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
        said = f"{project.name}:{fp}"
        if self._budget_said.get(said) != fp:
            self._budget_said[said] = fp  # said again when a raised budget runs out
            data: dict[str, object] = {"why": why}
            if plan is not None:
                data["plan"] = str(plan.source)
            event = emit(Event("budget.reached", project.name, data=data), self.store)
            where = "the plan's file" if plan is not None else "the project's config"
            self.notifier.notify(event, f"{project.name}: budget reached",
                                 f"{why}; nothing new starts (raise budget_usd in {where})")
        return True
