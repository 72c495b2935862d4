"""What the steps of a task's work (steps.py) produced since the last poll, turned into
records, reviews on the forge, messages to the agent and escalations: the daemon's handling
of the reviewer agent and the check commands that `stepwork.py` runs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ao import paths
from ao.decide import compose, steps
from ao.errors import AoError, BadInput
from ao.record.events import Event, emit
from ao.sanitize import clean
from ao.services import stepwork

if TYPE_CHECKING:
    from ao.config import ProjectConfig
    from ao.decide.plan import Plan
    from ao.decide.reactions import History, Policy
    from ao.record.forge import Forge, PullRequest
    from ao.record.store import Session
    from ao.services.fleet import Fleet
    from ao.services.notify import Notifier
    from ao.services.stepwork import StepWork


class StepResults:
    def __init__(self, fleet: Fleet, work: StepWork, notifier: Notifier,
                 history: Callable[[str], History],
                 plan_of: Callable[[ProjectConfig, str], Plan | None]) -> None:
        self.fleet = fleet
        self.store = fleet.store
        self.stepwork = work
        self.notifier = notifier
        self.history = history
        self.plan_of = plan_of

    def collect(self, project: ProjectConfig, forge: Forge, policy: Policy, s: Session,
                      pr: PullRequest) -> None:
        """Collect what the running steps (stepwork.py) produced since the last poll. A step
        run of a head the PR has left is stopped and forgotten (a head it comes back to runs
        it again). Nothing here may hold up the rest of the session's handling: a failure is
        an event, and repeated failures a human."""
        try:
            self._review_results(project, forge, policy, s, pr)
        except AoError as e:
            emit(Event("review.error", project.name, s.id, s.task, {"error": str(e)[:300]}),
                 self.store)
        try:
            self._check_results(project, policy, s, pr)
        except AoError as e:
            emit(Event("check.error", project.name, s.id, s.task, {"error": str(e)[:300]}),
                 self.store)

    def _review_results(self, project: ProjectConfig, forge: Forge, policy: Policy,
                        s: Session, pr: PullRequest) -> None:
        ev = {"project": project.name, "session": s.id, "task": s.task}
        sha = pr.head_sha
        for row in self.store.attempts(s.id, "start-review"):
            fp = str(row["fingerprint"])
            run_sha = fp.split(":")[1]
            data = json.loads(row.get("data") or "{}")
            hist = self.history(s.id)
            # each run (a head, and a hand-back) is collected and posted on its own
            if hist.has(f"review-posted:{fp}") or hist.has(f"review-ended:{fp}"):
                continue
            if run_sha != sha:
                if not hist.has(f"verdict-run:{fp}"):
                    self.stepwork.stop_review(project, s)
                    self.store.forget_attempt(s.id, fp)  # superseded: not a run that ended
                continue
            verdict = self._recorded_verdict(s.id, fp)
            if verdict is not None:
                self._record_verdict(s.id, sha, fp, verdict, data)  # a crash may have cut it
            else:
                state, verdict = self.stepwork.collect_review(
                    project, s, sha, float(row["created_at"]), time.time())
                if state == "running":
                    continue
                if verdict is None:
                    self._review_failed(project, s, pr, fp, state, data)
                    continue
                # recorded before it is posted: a crash between the two posts it from here
                self._record_verdict(s.id, sha, fp, verdict, data)
            try:
                how = self.stepwork.post_review(s, forge, pr, fp, verdict)
            except AoError as e:
                n = self.history(s.id).count(f"review-post-failed:{fp}:") + 1
                self.store.record_attempt(s.id, "review-post-failed",
                                          f"review-post-failed:{fp}:{n}", {"error": str(e)})
                emit(Event("review.post_failed", **ev, data={"sha": sha, "try": n,
                                                             "error": str(e)[:300]}),
                     self.store)
                if n >= 3:
                    self.fleet.escalate(s, f"escalate:review-post:{fp}",
                                        f"the reviewer's verdict could not be posted: {e}",
                                        self.notifier)
                continue
            self.store.record_attempt(s.id, "review-posted", f"review-posted:{fp}")
            emit(Event("review.posted", **ev, data={
                "sha": sha, "verdict": verdict.verdict, "as": how,
                "comments": len(verdict.comments)}), self.store)
            self.stepwork.stop_review(project, s)

    def _record_verdict(self, sid: str, sha: str, fp: str, verdict: stepwork.Verdict,
                        data: dict[str, Any]) -> None:
        """The run's verdict, the head's verdict and (for an approval) its gate, in one
        transaction; again is a no-op."""
        with self.store.transaction():
            self.store.record_attempt(sid, "verdict-run", f"verdict-run:{fp}",
                                      {"round": data.get("round"),
                                       "verdict": stepwork.as_data(verdict)})
            self.store.record_attempt(sid, "verdict", f"verdict:{sha}:{verdict.verdict}")
            if verdict.verdict == "approve":
                self.store.record_attempt(sid, "gate", f"gate:review:{sha}")

    def _recorded_verdict(self, sid: str, fp: str) -> stepwork.Verdict | None:
        for row in self.store.attempts(sid, "verdict-run"):
            if row["fingerprint"] == f"verdict-run:{fp}":
                return stepwork.from_data(json.loads(row.get("data") or "{}").get("verdict"))
        return None

    def _review_failed(self, project: ProjectConfig, s: Session, pr: PullRequest, fp: str,
                       state: str, data: dict[str, Any]) -> None:
        """Gone without a verdict, an unreadable one, or silent too long: once more, then a
        human."""
        sha = pr.head_sha
        self.stepwork.stop_review(project, s)
        if state != "timeout" and self.store.record_attempt(s.id, "review-retry",
                                                            f"review-retry:{fp}"):
            emit(Event("review.retried", project.name, s.id, s.task,
                       {"sha": sha, "why": state}), self.store)
            self.start_review(project, s, pr, sha, int(data.get("round") or 1),
                               data.get("agent") or None)
            return
        self.store.record_attempt(s.id, "review-ended", f"review-ended:{fp}")
        self.fleet.escalate(s, f"escalate:reviewer:{fp}",
                            f"the reviewer agent gave no verdict on {sha[:10]} ({state})",
                            self.notifier)

    def _check_results(self, project: ProjectConfig, policy: Policy, s: Session,
                       pr: PullRequest) -> None:
        ev = {"project": project.name, "session": s.id, "task": s.task}
        sha = pr.head_sha
        task_steps = self.store.task_steps(project.name, s.task)
        for row in self.store.attempts(s.id, "run-check"):
            fp = str(row["fingerprint"])
            _kind, h, run_sha, _r = fp.split(":")
            gate = f"check:{h}"
            hist = self.history(s.id)
            if hist.has(f"check-done:{fp}"):
                continue
            step = steps.check_for(task_steps, gate)
            if run_sha != sha or step is None:
                self.stepwork.stop_check(project, s, gate, run_sha)
                self.store.forget_attempt(s.id, fp)  # superseded, or no longer in the plan
                continue
            result = self.stepwork.collect_check(project, s, sha, gate)
            if result is None:
                continue
            code, tail = result
            if code == stepwork.NEVER_STARTED:
                self.store.forget_attempt(s.id, fp)  # the next poll starts it again
                continue
            if code == 0:
                self.store.record_attempt(s.id, "gate", f"gate:{gate}:{sha}")
                self.store.record_attempt(s.id, "check-done", f"check-done:{fp}")
                emit(Event("check.passed", **ev, data={"check": step.label, "sha": sha}),
                     self.store)
                continue
            failed = hist.count(f"check-failed:{h}:")
            if failed >= policy.ci_retries * (hist.resumes + 1):
                self.store.record_attempt(s.id, "check-done", f"check-done:{fp}")
                self.fleet.escalate(s, f"escalate:check:{h}:{hist.resumes}",
                                    f"the check `{step.label}` failed {failed + 1} times",
                                    self.notifier)
                continue
            body = compose.check_failed(step.label, code, tail, failed + 1, policy.ci_retries)
            if self.store.record_and_queue(s.id, [("check-failed", f"check-failed:{h}:{sha}"),
                                                  ("check-done", f"check-done:{fp}")],
                                           body, "check-failed"):
                emit(Event("check.failed", **ev, data={"check": step.label, "sha": sha,
                                                       "exit": code}), self.store)

    def start_review(self, project: ProjectConfig, s: Session, pr: PullRequest, sha: str,
                      round_: int, agent: str | None) -> None:
        task = self.fleet.task(project, s.task, self.plan_of(project, s.task))
        try:
            self.stepwork.start_review(project, s, task, pr, sha, round_, agent)
            emit(Event("review.started", project.name, s.id, s.task,
                       {"sha": sha, "round": round_, "agent": agent or s.agent}), self.store)
        except AoError as e:
            self.stepwork.stop_review(project, s)
            emit(Event("review.failed", project.name, s.id, s.task,
                       {"sha": sha, "error": str(e)[:300]}), self.store)
            # the next poll finds no reviewer and starts it once more, then asks a human


def approve_gate(fleet: Fleet, s: Session, pr: PullRequest, by: str,
                 reject: str | None = None) -> str:
    """A human's answer at a task's approval gate, for the head ao last showed (the PR's
    current head, or the answer is refused: nobody approves a push they have not seen):
    approved (the merge may go on once the rest of the gate passes), or rejected with a
    reason the agent gets as review feedback, which also takes back an approval of that
    head. What `ao approve` and the web's approve action print."""
    from ao.services.messaging import Messenger

    store = fleet.store
    if not any(st.kind == "approve" for st in store.task_steps(s.project, s.task)):
        raise BadInput(f"{s.id}'s task {s.task} has no approval gate",
                       "add `approve` to its `steps:` in the plan; see docs/steps.md")
    if pr.state != "open":
        raise BadInput(f"{s.id}: PR #{pr.number} is {pr.state}", "nothing to approve")
    sha = pr.head_sha
    if s.pr_head_sha and s.pr_head_sha != sha:
        raise BadInput(f"{s.id}: PR #{pr.number}'s head moved to {sha[:10]} since ao showed "
                       f"{s.pr_head_sha[:10]}", "look at the new head (`ao pr ls`), then "
                       "answer again after the next poll")
    if reject is not None:
        why = clean(reject).strip()
        if not why:
            raise BadInput("--reject needs a reason", 'e.g. --reject "no rollback plan"')
        n = len(store.attempts(s.id, "approval-rejected")) + 1
        store.forget_attempt(s.id, f"gate:approve:{sha}")
        store.record_attempt(s.id, "approval-rejected", f"approval-rejected:{sha}:{n}",
                             {"by": by, "why": why})
        emit(Event("gate.rejected", s.project, s.id, s.task, {"sha": sha, "by": by,
                                                             "why": why}), store)
        r = Messenger(fleet).send(s.id, f"Review feedback: a human rejected PR #{pr.number} "
                                  f"at its approval gate.\n\n{why}\n\nAddress this, commit "
                                  "and push; the new head goes through the gate again.",
                                  source="review")
        return f"{s.id}: PR #{pr.number} rejected at {sha[:10]}; the agent's message is {r.status}"
    if not store.record_attempt(s.id, "gate", f"gate:approve:{sha}", {"by": by}):
        return f"{s.id}: PR #{pr.number} was approved at {sha[:10]} already"
    emit(Event("gate.approved", s.project, s.id, s.task, {"sha": sha, "by": by}), store)
    paths.poke_daemon()
    return (f"{s.id}: PR #{pr.number} approved at {sha[:10]}; it merges when the rest of its "
            "gate passes")
