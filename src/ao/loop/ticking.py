"""A project's tick: observe its sessions, read its forge once, decide and act; start what
is ready; clean up what merged. The daemon's loop (daemon.py) runs it."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ao import config as cfgmod
from ao import paths
from ao.decide import plan as planmod
from ao.decide import redmain, steps
from ao.decide.gate import approval, merge_gate
from ao.decide.reactions import Action, ActionKind, History, Observation, Policy, decide
from ao.errors import AoError, BadInput, ExternalError, NothingToReview
from ao.loop import mainwatch
from ao.loop.actions import Actions
from ao.loop.deliveries import Deliveries
from ao.loop.picking import Picking
from ao.loop.scheduling import Scheduling
from ao.loop.spending import Spending
from ao.loop.telling import Telling
from ao.record.events import Event, emit
from ao.record.state import LIVE, Activity, State
from ao.services import merging, redmain_act
from ao.services.fleet import Fleet
from ao.services.messaging import Messenger
from ao.services.notify import Notifier
from ao.services.step_results import StepResults
from ao.services.stepwork import StepWork
from ao.services.teardown import teardown
from ao.world import agents, hosts, memory, remotes
from ao.world import forge as forgemod

if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    from libtmux import Server

    from ao.config import Config, ProjectConfig
    from ao.decide.plan import Plan
    from ao.record.forge import Forge, PullRequest
    from ao.record.store import Session, Store

LOCK_NAME = "daemon.lock"
log = logging.getLogger(__name__)
MIN_TICK_GAP = 0.25  # seconds: the shortest time between two ticks, however often woken


class Ticking(Scheduling, Picking, Spending, Telling):
    """What one tick does for each project, and the state it keeps between ticks: observe,
    read the forge once, decide and act (here); what starts next (scheduling.py); GitHub as
    the plan (picking.py); what the agents spend (spending.py); why a session waits, said
    (telling.py)."""

    def __init__(self, cfg: Config, store: Store, srv: Server | None = None,
                 forges: dict[str, Forge] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.store = store
        self.fleet = Fleet(cfg, store, srv)
        self.messenger = Messenger(self.fleet)
        self.deliveries = Deliveries(cfg, store, self.fleet.srv, Fleet)
        self.stepwork = StepWork(self.fleet)
        self.notifier = Notifier(cfg, store)
        self.step_results = StepResults(self.fleet, self.stepwork, self.notifier,
                                        self.history, self.plan_of)
        self.actions = Actions(cfg, store, self.fleet, self.notifier, self.stepwork,
                               self.step_results, self.history)
        self.forges = dict(forges or {})
        self.clock = clock
        self.plans: dict[tuple[str, str], Plan] = {}
        self._plan_mtimes: dict[tuple[str, str], float] = {}
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.config_dirty = False
        self.started_at = clock()
        self.polls = 0
        self.memory_sampler = memory.Sampler()  # the agents measured (memory.py)
        self._lock_fd: int | None = None
        self._config_digest = cfgmod.content_digest(cfgmod.config_sources())
        self.web_url: str | None = None  # set when the daemon serves the dashboard
        self.fault: str | None = None  # a full disk or read-only store stops its ticks
        self._push_checked: dict[str, tuple[float | None, float | None]] = {}
        self._picked: dict[str, Plan] = {}  # each project's last pickup plan (pickup.py)
        self._picked_tasks: dict[tuple[str, str], str] = {}
        self._pickup_said: set[str] = set()
        self._held_since: dict[tuple[str, str], float] = {}  # tasks held for overlap.py
        self._changed: dict[str, tuple[float, list[str]]] = {}
        self._killing: set[str] = set()  # sessions with a kill intent, listed each tick
        # per project: the task fixing its red main (on_red_main: fix), which alone starts
        # and merges while main is red
        self._fixing: dict[str, str | None] = {}
        self._said: dict[str, str] = {}  # the wait each session was last said to have
        self._status_said: dict[tuple[str, int], str] = {}  # each issue's status comment
        self._held: dict[str, dict[int, str]] = {}  # each project's held issues, with why
        self._budget_said: dict[str, str] = {}  # the spent budget each project was told of

    def _low_budget(self) -> bool:
        low = [n for n, f in self.forges.items() if getattr(f, "low_budget", lambda: False)()]
        if low:
            emit(Event("forge.rate_low", data={"projects": low}), self.store)
        return bool(low)

    def forge(self, project: ProjectConfig, plan: Plan | None) -> Forge:
        if project.name not in self.forges:
            f = forgemod.for_project(project, self.store, plan)
            if hasattr(f, "max_wait"):
                f.max_wait = 0.0  # never sit out a rate limit inside a tick: skip, go on
            self.forges[project.name] = f
        return self.forges[project.name]

    def active_plans(self, project: ProjectConfig) -> list[Plan]:
        """Every plan ever run on the project, finished ones included: a task added to a
        completed plan is picked up like any other."""
        out = []
        for run in self.store.plan_runs(project.name, active=False):
            plan = self._load_plan(project, run["plan"])
            if plan is not None:
                out.append(plan)
        return out

    def _load_plan(self, project: ProjectConfig, path: str) -> Plan | None:
        """The plan as last read, re-read when its file changes; an invalid edit is reported
        once and the last good plan kept."""
        key = (project.name, path)
        try:
            mtime = Path(path).stat().st_mtime
        except OSError:
            return self.plans.get(key)
        if self._plan_mtimes.get(key) == mtime:
            return self.plans.get(key)
        self._plan_mtimes[key] = mtime
        try:
            plan = planmod.load_valid(Path(path))
        except AoError as e:
            emit(Event("plan.invalid", project.name, data={"plan": path, "error": str(e),
                                                           "kept": key in self.plans}),
                 self.store)
            return self.plans.get(key)
        if key in self.plans:
            emit(Event("plan.reloaded", project.name, data={"plan": path,
                                                            "tasks": len(plan.tasks)}),
                 self.store)
        self.plans[key] = plan
        return plan

    def tick_project(self, project: ProjectConfig) -> None:
        plans = self.active_plans(project)
        plan = plans[0] if plans else None
        sessions = self.store.sessions(project.name, states=set(LIVE) - {State.QUEUED})
        self.fleet.observe_all(sessions, self.clock())
        self.park_fleet(project)  # one session at its usage limit parks its agent's others
        self.read_usage(project, sessions)
        # kills in progress or cut short, for all sessions at once (handle looks them up)
        self._killing = paths.kill_intents()
        tracked = [s for s in sessions if s.branch]
        forge = self.forge(project, plan)
        picked = self.pickup(project, forge)
        if picked is not None:
            plans = [*plans, picked]
        blocked = getattr(forge, "blocked_until", 0.0)
        if blocked > time.time():
            # GitHub asked us to wait: no poll until then (the other projects go on)
            tracked = []
        result = forge.poll([s.branch for s in tracked if s.branch])
        for err in result.errors:
            emit(Event("forge.error", project.name, data={"error": err}), self.store)
        self.forge_trouble(project, getattr(forge, "trouble", None))
        self._open_missing_prs(project, forge, tracked, result.prs, result.pushed)
        forge.serve(result.prs)  # the local forge's CI for new heads (an action, not a read)
        # main red: nothing merges onto it and nothing new starts from it (mainwatch.py)
        try:
            red = mainwatch.watch(self.store, project, forge, self.notifier) is not None
        except AoError as e:  # the remote away: main's state as last known, said as an error
            emit(Event("forge.error", project.name, data={"error": f"main's CI: {e}"}),
                 self.store)
            red = redmain.red_reason(self.store.main_watch(project.name)) is not None
        paused = self.store.paused(project.name)
        fixing = self._fixing[project.name] = \
            redmain_act.fix_task(self.store.main_watch(project.name)) if red else None
        self._react(project, forge, sessions, tracked, result.prs, paused, red)
        self.status_comments(project, forge, picked, paused)
        broke = self.budget(project)
        if not paused:
            # held messages, delivered beside the tick (deliveries.py)
            self.deliveries.hand([sid for sid in self.store.with_queued_messages(project.name)
                                  if self.store.session(sid).state in LIVE - {State.QUEUED}])
        for p in plans:
            spent = p.budget_usd is not None and self.budget(project, p)
            self.schedule(project, p, paused or red or broke or spent)
        if not paused and not red and not broke:
            self.start_unplanned(project, {k for p in plans for k in p.tasks})
        elif fixing and not paused and not broke:
            self.start_fix(project, fixing)
        self.cleanup_merged(project)

    def _react(self, project: ProjectConfig, forge: Forge, sessions: list[Session],
               tracked: list[Session], prs: dict[str, PullRequest | None],
               paused: bool, red: bool = False) -> None:
        """Decide and act for each session whose PR the forge answered for (no merge while
        main is red)."""
        policy = Policy.for_project(project)
        # as this tick's observations left them: one read, not one a session
        now = {x.id: x for x in self.store.sessions(project.name, states=set(LIVE))}
        # a limited session with no PR yet still needs its "continue" at the reset
        for s in sessions:
            if s.branch not in prs and (now.get(s.id) or s).limited_until:
                self.handle(project, forge, policy, now.get(s.id) or self.store.session(s.id),
                            None, paused, red)
        for s in tracked:
            if s.branch not in prs:
                continue  # the forge could not see it this time: decide nothing
            pr = prs[s.branch]
            if pr is not None and pr.state != "open" and pr.created_at is not None and \
                    pr.created_at < s.created_at:
                pr = None  # a PR that ended before this session began is an earlier session's
            try:
                self.handle(project, forge, policy, now.get(s.id) or self.store.session(s.id),
                            pr, paused, red)
            except AoError as e:
                emit(Event("reaction.error", project.name, s.id, s.task,
                           {"error": str(e)}), self.store)


    def _open_missing_prs(self, project: ProjectConfig, forge: Forge, sessions: list[Session],
                          prs: dict[str, PullRequest | None], pushed: set[str] | None) -> None:
        """ao opens the PR for a pushed branch that has none, for every agent and forge
        alike; the remote's branches as the poll saw them, else listed (one round trip)."""
        missing = [s for s in sessions if s.branch in prs and prs[s.branch or ""] is None
                   and s.state is State.WORKING]
        if not missing:
            return
        heads = pushed if pushed is not None else \
            remotes.remote_heads(project.path, project.remote, "ao/")
        for s in missing:
            if s.branch in heads:
                self._open_pr(project, forge, s, prs)

    def _open_pr(self, project: ProjectConfig, forge: Forge, s: Session,
                 prs: dict[str, PullRequest | None]) -> None:
        row = self.store.task(project.name, s.task)
        issue = row.get("issue_number") if row else None
        body = f"Closes #{issue}\n\nOpened by ao for session {s.id}." if issue else \
            f"Task {s.task}, opened by ao for session {s.id}."
        try:
            pr = forge.create_pr(s.branch or "", f"[{s.task}] {s.title}", body)
        except NothingToReview:
            return  # pushed with nothing ahead of the default branch yet: no PR yet
        except ExternalError as e:
            emit(Event("pr.create_failed", project.name, s.id, s.task, {"error": str(e)}),
                 self.store)
            return
        prs[s.branch or ""] = pr
        emit(Event("pr.opened", project.name, s.id, s.task, {"pr": pr.number}), self.store)

    def history(self, sid: str) -> History:
        return History.of(self.store.attempts(sid))

    def observation(self, s: Session, pr: PullRequest | None) -> Observation:
        now = self.clock()
        activity = s.activity
        since = max(s.screen_changed_at or 0, s.hook_at or 0) or now
        return Observation(state=s.state, activity=activity,
                           idle_for=now - since if activity is Activity.IDLE else 0.0, pr=pr,
                           waiting_since=since if activity is Activity.WAITING_INPUT else None,
                           limited_until=s.limited_until, now=now)

    def handle(self, project: ProjectConfig, forge: Forge, policy: Policy, s: Session,
               pr: PullRequest | None, paused: bool, red: bool = False) -> None:
        """Decide and act for one session; `red`: main's CI fails, nothing merges onto it."""
        if s.id in self._killing:  # a person's kill: running, or cut short
            with paths.try_locked(paths.session_lock(s.id)) as free:
                if free and self.fleet.finish_kill_held(s.id):
                    emit(Event("session.recovered", s.project, s.id, s.task,
                               {"session": s.id, "outcome": "its kill, cut short, was "
                                "finished"}), self.store)
            return
        task_steps = self._task_steps(project, s)
        if pr is not None and pr.state == "open" and not paused and \
                task_steps != steps.DEFAULT:
            self.step_results.collect(project, forge, policy, s, pr)
            s = self.store.session(s.id)  # as the step results left it
        hist = self.history(s.id)  # read once, after the step results were recorded
        if pr is not None:
            passed = hist.passed(pr.head_sha)
            verdict = merge_gate(pr, policy.gate, expected_sha=pr.head_sha,
                                 required=steps.gates(task_steps), passed=passed)
            facts: dict[str, object] = dict(
                pr_number=pr.number, pr_url=pr.url, pr_state=pr.state,
                pr_head_sha=pr.head_sha, pr_checks=pr.checks.overall,
                pr_review=approval(pr).value, pr_mergeable=pr.mergeable,
                pr_gate=verdict.reason, pr_gate_ok=int(verdict.ok), pr_draft=int(pr.draft),
                # in GitHub's merge queue: what it waits for, whatever its merge state says
                pr_merge_state="queued" if pr.queue else pr.merge_state,
                step=steps.holding(task_steps, pr.state, verdict.ok, verdict.waiting_for))
            changed = {k: v for k, v in facts.items() if getattr(s, k) != v}
            if changed:  # written when they change, not at every tick (200 writes a tick)
                s = self.store.update_session(s.id, **changed, pr_seen_at=self.clock())
        if paused:
            policy = replace(policy, auto=frozenset(), auto_merge=False, run_steps=False)
        obs = replace(self.observation(s, pr), steps=task_steps)
        try:
            self.check_pushed(project, s, obs.idle_for)
        except (AoError, OSError) as e:  # a worktree gone, a remote away: next time
            log.warning("%s: push check failed: %s", s.id, e)
        actions = decide(obs, hist, policy)
        if red and s.task != self._fixing.get(s.project):  # the fix of main alone merges
            actions = [a for a in actions if a.kind is not ActionKind.MERGE]
        self.say_why(project, s, paused)
        if not actions:
            return
        with paths.try_locked(paths.session_lock(s.id)) as free:
            if not free:  # a person's kill or restore is at it: the next tick decides again
                log.info("%s is being changed by another process; its actions wait a tick",
                         s.id)
                return
            expected = s.state
            for action in actions:
                current = self.store.session(s.id)
                if current.state is not expected:
                    # decided on a state that has since moved (a kill ended it, a person
                    # resumed it): the rest is dropped, and the next tick decides afresh
                    log.info("%s moved from %s to %s; %s dropped", s.id, expected,
                             current.state, action.kind)
                    return
                self.act(project, forge, policy, current, pr, action)
                if action.kind is ActionKind.SET_STATE and action.state is not None:
                    expected = self.store.session(s.id).state

    def _task_steps(self, project: ProjectConfig, s: Session) -> tuple[steps.Step, ...]:
        """The task's steps from its newest plan as it is now (an edit takes effect at the
        next poll), recorded for every other reader; the recorded ones if no plan has it."""
        plan = self.plan_of(project, s.task)
        if plan is None:
            return self.store.task_steps(project.name, s.task)
        current = plan.steps(s.task)
        if current != self.store.task_steps(project.name, s.task):
            self.store.put_task(project.name, s.task, s.title,
                                steps=json.dumps(steps.raw(current)))
        return current

    def finish_merge_records(self) -> None:
        """What a killed process left of a merge's record (task, issue, `merged` event and
        hooks, the agent's stop), finished once (merging.finish_record)."""
        projects = list(self.cfg.projects.values())
        for s in merging.unfinished_records(self.store, projects):
            project = self.cfg.project(s.project)
            log.info("finishing the record of %s's merge", s.id)
            try:
                merging.record_merged(self.cfg, self.store, self.fleet.server(s), project,
                                      self.forge(project, None), s, s.pr_head_sha or "",
                                      self.notifier)
            except AoError as e:  # the next start tries again
                log.warning("the record of %s's merge: %s", s.id, e)


    def plan_of(self, project: ProjectConfig, task: str) -> Plan | None:
        """The newest plan run holding the task (a later plan's steps are the ones meant)."""
        return next((p for p in reversed(self.active_plans(project)) if task in p.tasks), None)

    def act(self, project: ProjectConfig, forge: Forge, policy: Policy, s: Session,
            pr: PullRequest | None, a: Action) -> None:
        self.actions.act(project, forge, policy, s, pr, a)


    def cleanup_merged(self, project: ProjectConfig) -> None:
        """A merged session's agent was stopped at the merge; its worktree stays for the grace
        period (to look at), then goes through the one teardown. Work that would be lost keeps
        it, said once; the nightly cleanup reports it from then on."""
        now = self.clock()
        for s in self.store.sessions(project.name, states={State.MERGED}):
            if now - s.updated_at < self.cfg.cleanup_grace or \
                    self.store.attempts(s.id, "cleanup-kept"):
                continue
            if s.host != "local" and (not hosts.due(s.host, now) or self.fleet.slow(s.host)):
                continue  # its host is away: torn down when it answers again
            try:
                out = teardown(self.fleet.server(s), self.store, project, s, end=None,
                               profiles=agents.get)
            except (hosts.Unreachable, BadInput) as e:  # its host went away meanwhile
                log.warning("%s: torn down later: %s", s.id, e)
                continue
            if out.why:  # the worktree, or a branch with commits nowhere else, was kept
                self.store.record_attempt(s.id, "cleanup-kept", "cleanup-kept")
            emit(Event("cleanup.kept" if out.why else "session.cleaned",
                       project.name, s.id, s.task, out.as_dict()), self.store)
