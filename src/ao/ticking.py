"""A project's tick: observe its sessions, read its forge once, decide and act; start what
is ready; clean up what merged. The daemon's loop (daemon.py) runs it."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import (
    agent_usage,
    agents,
    compose,
    hosts,
    mainwatch,
    merging,
    overlap,
    paths,
    pushes,
    scheduler,
    steps,
    waiting,
    workspace,
)
from . import config as cfgmod
from . import forge as forgemod
from . import pickup as pickupmod
from . import plan as planmod
from .actions import Actions
from .config import Config, ProjectConfig
from .deliveries import Deliveries
from .errors import AoError, BadInput, ExternalError, NothingToReview
from .events import Event, emit
from .fleet import Fleet
from .forge.base import Forge, PullRequest
from .gate import approval, merge_gate
from .messaging import Messenger
from .notify import Notifier
from .plan import Plan
from .reactions import Action, ActionKind, History, Observation, Policy, decide
from .state import LIVE, Activity, Outcome, State
from .step_results import StepResults
from .stepwork import StepWork
from .store import Session, Store
from .teardown import teardown

if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    from libtmux import Server

LOCK_NAME = "daemon.lock"
log = logging.getLogger(__name__)
PUSH_GRACE = 30.0  # seconds idle before an agent's commits are expected on the remote
PUSH_FOR_AGENT_GRACE = 5.0  # ... before ao pushes them for an agent that cannot
MIN_TICK_GAP = 0.25  # seconds: the shortest time between two ticks, however often woken


class Ticking:
    """What one tick does for each project, and the state it keeps between ticks."""

    def __init__(self, cfg: Config, store: Store, srv: Server | None = None,
                 forges: dict[str, Forge] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.store = store
        self.fleet = Fleet(cfg, store, srv)
        self.messenger = Messenger(self.fleet)
        self.deliveries = Deliveries(cfg, store, self.fleet.srv)
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
        self._said: dict[str, str] = {}  # the wait each session was last said to have
        self._status_said: dict[tuple[str, int], str] = {}  # each issue's status comment
        self._budget_said: set[str] = set()  # projects whose spent budget was said

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
        # what each agent spent since the last poll, from its own records (one read of the
        # records for the sessions whose agents keep them)
        keeping = [s for s in sessions if s.host == hosts.LOCAL and
                   (agents.get(s.agent or project.agent.name).uses_hooks or
                    (s.agent or project.agent.name) == "codex")]
        if keeping:
            rows = {r["session"]: r for r in self.store.agent_usage_of([s.id for s in keeping])}
            for s in keeping:
                if (s.agent or project.agent.name) == "codex":
                    self._codex_usage(s, rows.get(s.id))
                elif s.id in rows:
                    agent_usage.read(self.store, s, rows[s.id])
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
            red = mainwatch.red_reason(self.store.main_watch(project.name)) is not None
        paused = self.store.paused(project.name)
        self._react(project, forge, sessions, tracked, result.prs, paused, red)
        self.status_comments(project, forge, picked, paused)
        broke = self.budget(project)
        if not paused:
            self.deliver_all([sid for sid in self.store.with_queued_messages(project.name)
                              if self.store.session(sid).state in LIVE - {State.QUEUED}])
        for p in plans:
            self.schedule(project, p, paused or red or broke)
        if not paused and not red and not broke:
            self.start_unplanned(project, {k for p in plans for k in p.tasks})
        self.cleanup_merged(project)

    def deliver_all(self, sids: list[str]) -> None:
        """Held messages handed to the deliveries beside the tick (deliveries.py)."""
        self.deliveries.hand(sids)

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
            if s.branch not in prs and s.limited_until:
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

    def _open_missing_prs(self, project: ProjectConfig, forge: Forge, sessions: list[Session],
                          prs: dict[str, PullRequest | None], pushed: set[str] | None) -> None:
        """ao opens the PR for a pushed branch that has none, for every agent and forge
        alike; the remote's branches as the poll saw them, else listed (one round trip)."""
        missing = [s for s in sessions if s.branch in prs and prs[s.branch or ""] is None
                   and s.state is State.WORKING]
        if not missing:
            return
        heads = pushed if pushed is not None else \
            workspace.remote_heads(project.path, project.remote, "ao/")
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
                pr_merge_state=pr.merge_state,
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
        if red:
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
        plan, more = pickupmod.plan_of(issues)
        for problem in [*problems, *more]:
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
        if project.name not in self._budget_said:
            self._budget_said.add(project.name)
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
        keys = set(plan.tasks) | {k for k, s in newest.items() if s.merged and
                                  now - s.updated_at < 86400}  # its issue closed: said once
        ctx = waiting.Context(forge=project.forge, auto_merge=project.auto_merge,
                              paused=paused, merge_states=project.merge_states)
        for k in sorted(keys):
            n = pickupmod.number(k)
            if n is None:
                continue
            found = newest.get(k)
            line = pickupmod.status_line(
                found, waiting.why(found, ctx, now) if found is not None else None,
                len(self.store.attempts(found.id, "fix-ci")) if found is not None else 0,
                Policy.for_project(project).ci_retries)
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
        if s.host != hosts.LOCAL or not s.branch or s.state not in (State.WORKING,
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
        ctx = waiting.Context(forge=project.forge, auto_merge=project.auto_merge,
                              paused=paused, merge_states=project.merge_states)
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

    def plan_of(self, project: ProjectConfig, task: str) -> Plan | None:
        """The newest plan run holding the task (a later plan's steps are the ones meant)."""
        return next((p for p in reversed(self.active_plans(project)) if task in p.tasks), None)

    def act(self, project: ProjectConfig, forge: Forge, policy: Policy, s: Session,
            pr: PullRequest | None, a: Action) -> None:
        self.actions.act(project, forge, policy, s, pr, a)

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
                for q in self.store.sessions(project.name, states={State.QUEUED}, task=key):
                    self.store.update_session(q.id, note=None)
            out.append(key)
        return out

    def _changed_files(self, project: ProjectConfig, s: Session) -> list[str]:
        """The files a running session's branch has changed against the default branch,
        committed or not (read here at most every 30 s a session)."""
        if s.host != hosts.LOCAL or not s.worktree:
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
        """Agents of the project's live sessions at their usage limit, with the reset."""
        now = self.clock()
        out: dict[str, float] = {}
        for s in self.store.sessions(project.name, states=set(LIVE) - {State.QUEUED}):
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
                out = teardown(self.fleet.server(s), self.store, project, s, end=None)
            except (hosts.Unreachable, BadInput) as e:  # its host went away meanwhile
                log.warning("%s: torn down later: %s", s.id, e)
                continue
            if out.why:  # the worktree, or a branch with commits nowhere else, was kept
                self.store.record_attempt(s.id, "cleanup-kept", "cleanup-kept")
            emit(Event("cleanup.kept" if out.why else "session.cleaned",
                       project.name, s.id, s.task, out.as_dict()), self.store)
