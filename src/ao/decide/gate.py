"""The merge gate: may this PR be merged now, and if not, why. Pure, and the one answer used by
the daemon's auto-merge, `ao pr merge`, `ao pr ls`, the board and the web alike.

It follows what GitHub itself calls mergeable: open, not a draft, the head `ao` saw, checks
rolled up to success (no checks at all is "no checks", not green), approved, no conflict, and
`mergeStateStatus` CLEAN (HAS_HOOKS and UNSTABLE only where the project accepts them).
"Approved" is `reviewDecision == APPROVED`; when GitHub reports no decision (a repository that
requires no review) it is computed from the latest opinionated review of each reviewer: any
standing request for changes blocks, and no review at all is "not reviewed", which merges only
where the project says `require_review: false`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ao.record.forge import FAILING, NONE, PASSING, PENDING, PullRequest


class Approval(StrEnum):
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    NOT_REVIEWED = "not_reviewed"
    REVIEW_REQUIRED = "review_required"


@dataclass(frozen=True)
class GatePolicy:
    require_review: bool = True
    require_checks: bool = True
    accept_states: frozenset[str] = frozenset({"clean"})
    base: str | None = None  # the branch a PR must target (the project's default branch)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # why not (or "approved and green")
    waiting_for: str = ""  # a step gate (steps.py) that alone holds the merge: review, approve


    def __bool__(self) -> bool:
        return self.ok


_STATE_REASONS = {
    "behind": "behind the base branch (the repository requires it up to date)",
    "dirty": "conflicts with the base branch",
    "draft": "a draft",
    "unknown": "GitHub is still computing mergeability",
    "unstable": "non-required checks are failing (accept with merge_states: [unstable])",
    "has_hooks": "the repository has pre-receive hooks (accept with merge_states: [has_hooks])",
}


def approval(pr: PullRequest) -> Approval:
    opinions = {state for _login, state in pr.reviews}
    if pr.review_decision == "changes_requested" or "changes_requested" in opinions:
        return Approval.CHANGES_REQUESTED  # a standing request blocks whatever the decision
    if pr.review_decision == "approved":
        return Approval.APPROVED
    if pr.review_decision == "review_required":
        return Approval.REVIEW_REQUIRED
    return Approval.APPROVED if "approved" in opinions else Approval.NOT_REVIEWED


def _not_open(pr: PullRequest, expected_sha: str | None) -> str | None:
    if pr.state != "open":
        return f"the PR is {pr.state}"
    if pr.draft or pr.merge_state == "draft":
        return "the PR is a draft"
    if expected_sha is not None and pr.head_sha != expected_sha:
        return f"the head moved to {pr.head_sha[:10]} since it was checked"
    return None


def _wrong_base(pr: PullRequest, policy: GatePolicy) -> str | None:
    if policy.base is not None and pr.base != policy.base:
        return f"the PR targets {pr.base}, not {policy.base}"
    return None


def checks_state(pr: PullRequest, policy: GatePolicy) -> str:
    """The checks as the merge sees them: failing checks on a PR GitHub calls UNSTABLE are
    none of the required ones, and where the project accepts `unstable` they hold nothing
    (no fix round, no wait)."""
    if pr.checks.overall == FAILING and pr.merge_state == "unstable" and \
            "unstable" in policy.accept_states:
        return PASSING
    return pr.checks.overall


def _not_green(pr: PullRequest, policy: GatePolicy) -> str | None:
    checks = checks_state(pr, policy)
    if checks == FAILING:
        return "CI is failing"
    if checks == PENDING:
        return "CI is pending"
    if checks == NONE and policy.require_checks:
        return "no checks have run (require_checks: false merges without)"
    return None


def _not_reviewed(a: Approval, policy: GatePolicy, required: frozenset[str]) -> str | None:
    if a is Approval.CHANGES_REQUESTED:
        return "changes are requested"
    if a is Approval.REVIEW_REQUIRED:
        return "a review is required"
    # with a review step or an approval gate, the reviewer agent or the human at the gate
    # gives the review (its gate in merge_gate says what is missing)
    if a is Approval.NOT_REVIEWED and policy.require_review and \
            not {"review", "approve"} & required:
        return ("not reviewed: approve it on the forge (`ao review SID --approve` on the "
                "local forge), or set require_review: false")
    return None


def _not_mergeable(pr: PullRequest, policy: GatePolicy) -> str | None:
    if pr.mergeable == "conflicting":
        return "conflicts with the base branch"
    if pr.merge_state is None:
        return None if pr.mergeable == "mergeable" else "mergeability is not known yet"
    if pr.merge_state == "blocked":
        return "the PR is blocked by branch protection: " + (
            pr.blocked_by or "a rule ao cannot read (look at the PR on GitHub)")
    if pr.merge_state not in policy.accept_states:
        return "the PR is " + _STATE_REASONS.get(pr.merge_state,
                                                  f"in merge state {pr.merge_state}")
    return None


_GATE_REASONS = {
    "review": "waiting for the reviewer agent's verdict",
    "approve": "waiting for a human's approval (ao approve)",
}


def merge_gate(pr: PullRequest, policy: GatePolicy, expected_sha: str | None = None,
               required: frozenset[str] = frozenset(),
               passed: frozenset[str] = frozenset()) -> Verdict:
    """`required`: the step gates of the task (steps.gates); `passed`: those passed for the
    PR's head. A reviewer agent's approval counts as the review `require_review` asks for."""
    a = approval(pr)
    why_not = _not_open(pr, expected_sha) or _wrong_base(pr, policy) or \
        _not_green(pr, policy) or \
        _not_reviewed(a, policy, required) or _not_mergeable(pr, policy)
    if why_not:
        return Verdict(False, why_not)
    checks = checks_state(pr, policy)
    missing = sorted(required - passed, key=lambda g: (g == "approve", g))  # the human last
    if missing:
        return Verdict(False, _GATE_REASONS.get(missing[0], f"waiting for {missing[0]}"),
                       missing[0])
    green = "green" if checks == PASSING else "no checks"
    review = "approved" if a is Approval.APPROVED or {"review", "approve"} & passed \
        else "not reviewed"
    return Verdict(True, f"{review} and {green}")
