"""Carrying out the daemon's decisions: one handler per action kind (reactions.ActionKind),
each recording what it did once, so a crash between two ticks never does it twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ao.decide import compose, steps
from ao.decide.reactions import Action, ActionKind, History, Policy, escalation
from ao.errors import AoError, ExternalError
from ao.record.events import Event, emit
from ao.record.forge import Enqueued, Forge, PullRequest
from ao.record.state import State
from ao.services.merging import record_enqueued, record_merged

if TYPE_CHECKING:
    from ao.config import Config, ProjectConfig
    from ao.record.store import Session, Store
    from ao.services.fleet import Fleet
    from ao.services.notify import Notifier
    from ao.services.step_results import StepResults
    from ao.services.stepwork import StepWork

REVIEW_REREAD = 600.0  # seconds: comments re-read at least this often while changes stand


@dataclass
class Act:
    """One action on one session, with what its handler needs."""

    project: ProjectConfig
    forge: Forge
    policy: Policy
    s: Session
    pr: PullRequest | None
    a: Action

    @property
    def ev(self) -> dict[str, Any]:
        return {"project": self.project.name, "session": self.s.id, "task": self.s.task}


class Actions:
    def __init__(self, cfg: Config, store: Store, fleet: Fleet, notifier: Notifier,
                 stepwork: StepWork, step_results: StepResults,
                 history: Callable[[str], History]) -> None:
        self.cfg, self.store, self.fleet, self.notifier = cfg, store, fleet, notifier
        self.stepwork, self.step_results, self.history = stepwork, step_results, history
        self.handlers: dict[ActionKind, Callable[[Act], None]] = {
            ActionKind.SET_STATE: self.set_state, ActionKind.FIX_CI: self.fix_ci,
            ActionKind.FORWARD_REVIEW: self.forward_review,
            ActionKind.ASK_REBASE: self.ask_rebase, ActionKind.MERGE: self.merge,
            ActionKind.UPDATE_BRANCH: self.update_branch,
            ActionKind.NOTIFY: self.notify, ActionKind.ESCALATE: self.escalate,
            ActionKind.RESUME: self.resume, ActionKind.LIMIT_CONTINUE: self.limit_continue,
            ActionKind.NUDGE: self.nudge, ActionKind.START_REVIEW: self.start_review,
            ActionKind.RUN_CHECK: self.run_check, ActionKind.RESTORE: self.restore,
            ActionKind.DEQUEUED: self.dequeued,
        }
        # per session: what its review comments were last read for, and when
        self._reviews_read: dict[str, tuple[tuple[Any, ...], float]] = {}

    def act(self, project: ProjectConfig, forge: Forge, policy: Policy, s: Session,
            pr: PullRequest | None, a: Action) -> None:
        self.handlers[a.kind](Act(project, forge, policy, s, pr, a))

    def set_state(self, x: Act) -> None:
        if x.a.state is None:
            return
        self.store.set_state(x.s.id, x.a.state)
        emit(Event(f"session.{x.a.state.value}", **x.ev, data={"reason": x.a.reason}),
             self.store)
        if x.a.state is State.MERGED:
            record_merged(self.cfg, self.store, self.fleet.server(x.s), x.project, x.forge,
                          x.s, x.a.sha, self.notifier)

    def fix_ci(self, x: Act) -> None:
        if x.pr is None:
            return
        details = x.forge.failure_details(x.pr)
        if self.cfg.llm.condense_ci_logs:
            from ao.services.planner import Planner

            planner = Planner(self.cfg.llm, self.store, x.project.name)
            details = [replace(d, log_tail=planner.condense(d.log_tail)) for d in details]
        of = int(x.a.data.get("of", x.policy.ci_retries))  # type: ignore[call-overload]
        body = compose.ci_fix(x.a.round, of, x.a.sha, details,
                              x.policy.messages.get("ci-failed"))
        if self.store.record_and_queue(x.s.id, [("fix-ci", x.a.fingerprint)], body,
                                       "ci-failed", {"round": x.a.round,
                                                     "usd_at": self._spent(x.s.id)}):
            event = emit(Event("ci.failed", **x.ev, data={
                "sha": x.a.sha, "round": x.a.round, "checks": [d.check for d in details]}),
                self.store)
            self.notifier.hooks(event)

    def _spent(self, sid: str) -> float:
        """What the session's agent had spent when a fix round was sent: what each round cost
        is read from it (`ao usage`)."""
        rows = self.store.agent_usage(sid)
        return float(rows[0]["cost_usd"]) if rows else 0.0

    def forward_review(self, x: Act) -> None:
        """The comments of a PR whose changes are requested, read once a head and a count of
        reviews (every new review, a reply in a thread too, adds one), or after
        REVIEW_REREAD: a standing request used to cost a request every poll."""
        if x.pr is None:
            return
        seen = (x.pr.number, x.pr.head_sha, x.pr.review_count, x.pr.reviews)
        last = self._reviews_read.get(x.s.id)
        now = time.monotonic()
        if last is not None and last[0] == seen and now - last[1] < REVIEW_REREAD:
            return
        hist = self.history(x.s.id)
        comments = x.forge.review_comments(x.pr)
        self._reviews_read[x.s.id] = (seen, now)
        new = [c for c in comments if not hist.has(f"review:{c.id}")]
        if not new:
            return
        rounds = hist.count("review-round:")
        if rounds >= x.policy.review_rounds * (hist.resumes + 1):
            self.escalate(replace(x, a=Action(ActionKind.ESCALATE,
                                              f"escalate:review:{hist.resumes}",
                                              f"review feedback after {rounds} rounds")))
            return
        fps = [("review-round", f"review-round:{rounds + 1}")] + [
            ("review", f"review:{c.id}") for c in new]
        body = compose.review(new, rounds + 1, x.policy.messages.get("changes-requested"))
        if self.store.record_and_queue(x.s.id, fps, body, "changes-requested",
                                       {"usd_at": self._spent(x.s.id)}):
            emit(Event("review.forwarded", **x.ev, data={"comments": len(new),
                                                         "round": rounds + 1}), self.store)

    def ask_rebase(self, x: Act) -> None:
        if self.store.record_and_queue(x.s.id, [("ask-rebase", x.a.fingerprint)],
                                       compose.rebase(x.project.default_branch,
                                                      x.project.remote,
                                                      x.policy.messages.get("merge-conflict")),
                                       "merge-conflict"):
            emit(Event("pr.conflict", **x.ev, data={"sha": x.a.sha}), self.store)

    def update_branch(self, x: Act) -> None:
        """The base merged into the head on the forge (recorded first: never twice a head);
        refused, the next tick asks the agent to rebase instead."""
        if x.pr is None or not self.store.record_attempt(x.s.id, "update-branch",
                                                         x.a.fingerprint):
            return
        try:
            x.forge.update_branch(x.pr, x.a.sha)
        except ExternalError as e:
            self.store.record_attempt(x.s.id, "update-refused", f"update-refused:{x.a.sha}",
                                      {"error": str(e)})
            emit(Event("pr.update_refused", **x.ev, data={"sha": x.a.sha, "error": str(e)}),
                 self.store)
            return
        emit(Event("pr.branch_updated", **x.ev, data={"sha": x.a.sha}), self.store)
        # the agent's own copy is behind its remote branch now: its next push must not fail
        self.store.record_and_queue(x.s.id, [("branch-updated", f"updated:{x.a.sha}")],
                                    compose.branch_updated(x.project.default_branch,
                                                           x.project.remote,
                                                           x.s.branch or x.pr.head_branch),
                                    "branch-updated")

    def merge(self, x: Act) -> None:
        if x.pr is None:
            return
        try:
            merged = x.forge.merge(x.pr, x.a.sha)
        except Enqueued as q:  # GitHub's merge queue merges it, later (below)
            _enqueued(self.store, x, q)
            return
        except ExternalError as e:
            # counted per head: the gate escalates after `merge_retries` refusals
            n = self.history(x.s.id).count(f"merge-failed:{x.a.sha}:") + 1
            self.store.record_attempt(x.s.id, "merge-failed", f"merge-failed:{x.a.sha}:{n}",
                                      {"error": str(e)})
            emit(Event("merge.failed", **x.ev, data={"error": str(e), "try": n}), self.store)
            return
        self.store.record_attempt(x.s.id, "merge", x.a.fingerprint, {"merge": merged})
        emit(Event("pr.merged_by_ao", **x.ev, data={"sha": x.a.sha, "merge": merged}),
             self.store)
        # merged now, not at the next poll: dependents start in this same tick
        self.store.update_session(x.s.id, pr_state="merged")
        self.set_state(replace(x, s=self.store.session(x.s.id), a=Action(
            ActionKind.SET_STATE, state=State.MERGED, reason="merged by ao", sha=x.a.sha)))

    def dequeued(self, x: Act) -> None:
        spent = _dequeued(self.store, x, self.history(x.s.id), self.notifier)
        if spent is not None:
            self.escalate(replace(x, a=spent))

    def notify(self, x: Act) -> None:
        if self.store.record_attempt(x.s.id, "notify", x.a.fingerprint):
            kind = x.a.fingerprint.split(":", 1)[0]
            event = emit(Event(f"attention.{kind}", **x.ev, data={"reason": x.a.reason}),
                         self.store)
            self.notifier.notify(event, f"{x.s.id} {x.s.task}", x.a.reason)

    def escalate(self, x: Act) -> None:
        self.fleet.escalate(x.s, x.a.fingerprint, x.a.reason, self.notifier)

    def resume(self, x: Act) -> None:
        if x.a.state is not None:
            self.fleet.resume(x.s.id, x.a.reason, by="ao")

    def limit_continue(self, x: Act) -> None:
        if self.store.record_and_queue(x.s.id, [("limit-continue", x.a.fingerprint)],
                                       "continue", "limit-reset"):
            event = emit(Event("agent.limit_reset", **x.ev, data={"reason": x.a.reason}),
                         self.store)
            self.notifier.hooks(event)

    def nudge(self, x: Act) -> None:
        self.store.record_and_queue(x.s.id, [("nudge", x.a.fingerprint)],
                                    compose.nudge(x.a.reason, x.policy.messages.get("agent-stuck")),
                                    "agent-stuck")
        emit(Event("agent.nudged", **x.ev, data={"reason": x.a.reason}), self.store)

    def start_review(self, x: Act) -> None:
        if x.pr is None:
            return
        agent = str(x.a.data.get("agent") or "") or None
        if self.store.record_attempt(x.s.id, "start-review", x.a.fingerprint,
                                     {"round": x.a.round, "agent": agent}):
            self.step_results.start_review(x.project, x.s, x.pr, x.a.sha, x.a.round, agent)

    def run_check(self, x: Act) -> None:
        if x.pr is None:
            return
        gate = str(x.a.data.get("gate") or "")
        step = steps.check_for(self.store.task_steps(x.project.name, x.s.task), gate)
        if not (step and step.run and self.store.record_attempt(x.s.id, "run-check",
                                                                x.a.fingerprint)):
            return
        try:
            self.stepwork.start_check(x.project, x.s, x.pr, x.a.sha, gate, step.run)
            emit(Event("check.started", **x.ev, data={"check": step.label, "sha": x.a.sha}),
                 self.store)
        except AoError as e:
            self.store.record_attempt(x.s.id, "check-done", f"check-done:{x.a.fingerprint}")
            self.fleet.escalate(x.s, f"escalate:check-start:{x.a.fingerprint}",
                                f"the check `{step.label}` could not start: {e}",
                                self.notifier)

    def restore(self, x: Act) -> None:
        self.store.record_attempt(x.s.id, "restore", x.a.fingerprint)
        try:
            self.fleet.restore_held(x.s.id)  # ticking holds its lock
            emit(Event("agent.restored", **x.ev, data={"reason": x.a.reason}), self.store)
        except AoError as e:
            emit(Event("restore.failed", **x.ev, data={"error": str(e)}), self.store)


# ---- a PR in GitHub's merge queue ---------------------------------------------------------
# A session's PR in GitHub's merge queue (docs/reactions.md "Merge queue"): what the daemon
# does when `merge` enqueued it, and when GitHub removed it without merging. The forge merges
# a queued PR itself; the poll then reads it merged, as for any merge made elsewhere.
#
# A removal for failed checks (the merge group's, not the PR's own) reaches the agent as a CI
# fix round, counted with the others (escalated past the project's rounds); any other removal
# (a person dequeued it) is told to a person, and that head is not queued again.

# a removal this much older than ao's own enqueue is an earlier one (GitHub's clock and
# ours differ by a little)
CLOCK_SLACK = 5.0
FAILED = ("failed_checks", "checks_failed", "ci_failed", "unknown")
# removals the PR's own reactions answer: a conflict with main asks its agent to rebase, a
# new head is gated and queued again; nobody needs telling
QUIET = ("merge_conflict", "head_moved")


def _enqueued(store: Store, x: Act, q: Enqueued) -> None:
    """The gate passed and the PR is in the merge queue: recorded once a head (never queued
    twice), and said."""
    record_enqueued(store, x.s, x.pr.number if x.pr else None, x.a.sha, q)


def _dequeued(store: Store, x: Act, hist: History, notifier: Notifier) -> Action | None:
    """GitHub took the PR out of its queue without merging it: the agent gets the merge
    group's failing checks as a CI round, or a person is told. Nothing while the removal is
    not seen yet (the next tick looks again); the escalation to make when the PR's fix rounds
    are spent."""
    forge: Any = x.forge  # GitHubQueue: the only forge with a merge queue
    if x.pr is None or not hasattr(forge, "queue_removal"):
        return None
    removal = forge.queue_removal(x.pr)
    rows = store.attempts(x.s.id, "queued")
    queued_at = max((float(r["created_at"]) for r in rows
                     if r["fingerprint"] == f"queued:{x.a.sha}"), default=0.0)
    if removal is None or removal.reason == "merged" or removal.at + CLOCK_SLACK < queued_at:
        return None
    data = {"sha": x.a.sha, "reason": removal.reason, "group": removal.group_sha}
    # GitHub's reason is free text: the merge group's own failing checks decide, the words
    # only where none can be read
    details = forge.group_failures(removal) if removal.reason not in QUIET else []
    if not details and removal.reason not in FAILED:
        if store.record_attempt(x.s.id, "dequeued", x.a.fingerprint, data):
            event = emit(Event("pr.dequeued", **x.ev, data=data), store)
            if removal.reason in QUIET:
                return None
            notifier.notify(event, f"{x.s.id}: PR #{x.pr.number} left the merge queue",
                            f"removed ({removal.reason}), not merged; `ao pr merge {x.s.id}` "
                            "queues it again")
        return None
    rounds = len(hist.ci_rounds)
    of = x.policy.ci_retries * (hist.resumes + 1)
    if rounds >= of:
        return escalation(hist, "ci-exhausted", f"the merge queue removed PR #{x.pr.number} "
                          f"after {rounds} fix rounds")
    body = compose.queue_failed(rounds + 1, of, x.a.sha, details, removal.reason,
                                x.policy.messages.get("ci-failed"))
    if store.record_and_queue(x.s.id, [("dequeued", x.a.fingerprint),
                                       ("fix-ci", f"ci:{x.a.sha}")], body, "ci-failed",
                              {"round": rounds + 1}):
        event = emit(Event("pr.dequeued", **x.ev, data={
            **data, "round": rounds + 1, "checks": [d.check for d in details]}), store)
        notifier.hooks(event)
    return None
