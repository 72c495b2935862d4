"""Why is this session waiting, and who must act: one pure answer from a session's record and
its observations, shown by `ao status`, `ao session ls`, the board, the web and the
notifications alike (DESIGN "Why is it waiting?"). Nothing waits without a reason a person
can read.

`who` is the actor the wait is on: the agent (it is working on it), ci, a reviewer, github,
a host, or a person (you: the only waits that notify).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ao.record.state import Activity, State

if TYPE_CHECKING:  # the record only: a decision reads it, never the store
    from ao.config import ProjectConfig
    from ao.record.store import Session

AGENT, CI, REVIEWER, GITHUB, HOST, PERSON, AO = ("agent", "ci", "reviewer", "github", "host",
                                                 "person", "ao")
STUCK_AFTER = 600.0


@dataclass(frozen=True)
class Wait:
    reason: str
    who: str
    kind: str  # a stable name for the reason (a person is notified once per new kind)

    @property
    def needs_person(self) -> bool:
        return self.who in (PERSON, REVIEWER)


@dataclass(frozen=True)
class Context:
    """What is known beside the session's own record."""

    forge: str = "local"  # local | github
    auto_merge: bool = False
    paused: bool = False
    host_down_since: float | None = None  # the session's host, when it does not answer
    forge_trouble: tuple[str, str] | None = None  # why the forge cannot be read, who acts
    main_red: str | None = None  # main's CI fails: merges wait (mainwatch.py)
    budget: str | None = None  # the project's budget is spent: nothing new starts
    stuck_after: float = STUCK_AFTER
    merge_states: tuple[str, ...] = ()  # the project's accepted extra merge states

    @classmethod
    def of(cls, project: ProjectConfig, **facts: Any) -> Context:
        """The project's own settings, and the facts known of it now (paused, ...)."""
        return cls(forge=project.forge, auto_merge=project.auto_merge,
                   merge_states=project.merge_states, **facts)


def why(s: Session, ctx: Context = Context(), now: float | None = None) -> Wait | None:
    """The reason a live session is not moving on by itself, or None (it is working, or
    ended)."""
    now = time.time() if now is None else now
    if s.state in (State.MERGED, State.CLEANED, State.KILLED, State.FAILED):
        return None
    if s.state is State.QUEUED and ctx.budget:
        return Wait(f"queued: {ctx.budget} (raise budget_usd)", PERSON, "budget")
    if s.state is State.QUEUED:
        return Wait(f"queued: {s.note}" if s.note else "queued", AO, "queued")
    if s.state is State.NEEDS_HUMAN:
        return Wait(f"needs a human: {s.note or 'escalated'} (`ao session resume {s.id}` "
                    "when it is sorted)", PERSON, "needs_human")
    if ctx.host_down_since is not None or s.activity is Activity.UNREACHABLE:
        since = time.strftime("%H:%M", time.localtime(ctx.host_down_since)) \
            if ctx.host_down_since else "now"
        return Wait(f"host {s.host} unreachable since {since}", HOST, "host")
    if s.activity is Activity.WAITING_INPUT:
        return Wait(f"waiting for permission in the agent (`ao session attach {s.id}`)",
                    PERSON, "permission")
    if s.activity is Activity.EXITED:
        return Wait(f"the agent exited (`ao session restore {s.id}`)", PERSON, "exited")
    if (s.limited_until or 0) > now:
        until = time.strftime("%H:%M", time.localtime(s.limited_until or now))
        return Wait(f"{s.agent} usage limit until {until}", AGENT, "limited")
    if ctx.paused:
        return Wait("the project is paused (`ao resume`)", PERSON, "paused")
    if ctx.forge_trouble is not None and s.branch and (s.pr_number or
                                                       s.activity is not Activity.ACTIVE):
        reason, who = ctx.forge_trouble
        return Wait(f"{'GitHub' if ctx.forge == 'github' else 'the forge'}: {reason}", who,
                    "forge")
    if s.unpushed and s.activity is not Activity.ACTIVE:
        return Wait(f"push failing: {s.unpushed}", PERSON, "unpushed")
    if s.pr_number and s.pr_state == "open":
        return _pr_wait(s, ctx)
    if s.pr_number and s.pr_state == "merged":
        return Wait("merged: cleaning up", AO, "merged")
    idle_since = max(s.screen_changed_at or 0, s.hook_at or 0)
    if s.activity is Activity.IDLE and idle_since and now - idle_since >= ctx.stuck_after:
        return Wait(f"idle with no pull request for {int((now - idle_since) // 60)} min "
                    f"(`ao send {s.id} ...`, or attach)", PERSON, "stuck")
    return None


def _pr_wait(s: Session, ctx: Context) -> Wait:
    pr = f"PR #{s.pr_number}"
    if s.pr_draft:
        return Wait(f"{pr} is a draft", AGENT, "draft")
    unstable_ok = s.pr_merge_state == "unstable" and "unstable" in ctx.merge_states
    if s.pr_checks == "failing" and not unstable_ok:  # else: none of the required checks
        return Wait(f"CI failing on {pr}: the agent is fixing it", AGENT, "ci_failing")
    if s.pr_review == "changes_requested":
        return Wait(f"changes requested on {pr}: the agent is on it", AGENT, "changes")
    if s.pr_mergeable == "conflicting" or s.pr_merge_state == "dirty":
        return Wait(f"{pr} conflicts with the base branch: the agent is rebasing", AGENT,
                    "conflict")
    if s.pr_checks == "pending":
        return Wait(f"CI running on {pr}", CI, "ci_pending")
    if s.step == "approve":
        return Wait(f"{pr} waits for your approval (`ao approve {s.id}`)", PERSON, "approve")
    if s.step == "review":
        return Wait(f"{pr} waits for the reviewer agent's verdict", AGENT, "agent_review")
    if s.pr_review in ("not_reviewed", "review_required") and not s.pr_gate_ok:
        how = f"`ao review {s.id} --approve` (or -r 'what to change')" if ctx.forge == "local" \
            else "a reviewer with write access approves it on GitHub"
        return Wait(f"review needed on {pr}: {how}", REVIEWER, "review")
    if s.pr_merge_state == "behind":
        return Wait(f"{pr} is behind the base branch (the repository requires it up to "
                    "date): ao updates the branch, or asks the agent to rebase (`behind:`)",
                    AO, "behind")
    if s.pr_merge_state == "blocked":
        rule = (s.pr_gate or "").removeprefix("the PR is blocked by branch protection: ")
        return Wait(f"{pr} is blocked by branch protection: {rule or 'a rule'}", PERSON,
                    "blocked")
    if s.pr_merge_state == "queued":
        return Wait(f"{pr} is in GitHub's merge queue: GitHub merges it once the checks pass "
                    "on its merge group", GITHUB, "queued")
    if s.pr_gate_ok and ctx.main_red:
        return Wait(f"{pr} is ready; merges wait: {ctx.main_red}", PERSON, "main_red")
    if s.pr_gate_ok:
        if ctx.auto_merge:
            return Wait(f"{pr} is approved and green: merging", AO, "merging")
        return Wait(f"{pr} is ready to merge (`ao pr merge {s.id}`)", PERSON, "ready")
    return Wait(f"{pr}: {s.pr_gate or 'waiting for the forge'}", GITHUB if ctx.forge ==
                "github" else AO, "gate")
