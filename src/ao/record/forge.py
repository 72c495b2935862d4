"""The forge protocol: issues, pull requests, CI and reviews, wherever they live.

`poll` is the hot path: one call per project per daemon tick returns every tracked branch's PR
facts at once. Details (failed check output, log tails, review comments) are fetched only when
a reaction needs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

PENDING, PASSING, FAILING, NONE = "pending", "passing", "failing", "none"


@dataclass(frozen=True)
class Issue:
    number: int
    title: str
    body: str = ""
    state: str = "open"  # open | closed
    state_reason: str | None = None  # completed | not_planned | None
    url: str = ""
    labels: tuple[str, ...] = ()

    @property
    def completed(self) -> bool:
        return self.state == "closed" and self.state_reason in (None, "completed")


@dataclass(frozen=True)
class Check:
    name: str
    conclusion: str  # success | failure | pending | neutral | skipped | cancelled | error ...
    url: str = ""
    summary: str = ""

    @property
    def failed(self) -> bool:
        return self.conclusion in ("failure", "error", "timed_out", "cancelled",
                                   "action_required", "startup_failure")


@dataclass(frozen=True)
class CheckSummary:
    overall: str = NONE  # pending | passing | failing | none
    checks: tuple[Check, ...] = ()

    @staticmethod
    def of(checks: list[Check]) -> CheckSummary:
        if not checks:
            return CheckSummary(NONE, ())
        if any(c.failed for c in checks):
            overall = FAILING
        elif any(c.conclusion in ("pending", "queued", "in_progress", "expected")
                 for c in checks):
            overall = PENDING
        else:
            overall = PASSING
        return CheckSummary(overall, tuple(checks))


# GitHub's authorAssociation values of accounts that can write to the repository (or its
# organisation's members); CONTRIBUTOR, FIRST_TIMER, FIRST_TIME_CONTRIBUTOR, MANNEQUIN and
# NONE are anyone on a public repository
WRITERS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})


@dataclass(frozen=True)
class PickedIssue:
    """An open issue taken as a task (pickup.py), and the open issues it waits for: GitHub's
    "blocked by" dependencies, its open sub-issues, and `Depends on #N` / `Blocked by #N`
    lines in its body."""

    number: int
    title: str
    body: str
    blocked_by: tuple[int, ...] = ()


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    state: str  # open | closed | merged
    head_branch: str
    head_sha: str
    base: str = "main"
    title: str = ""
    mergeable: str = "unknown"  # mergeable | conflicting | unknown
    # GitHub's reviewDecision, lower-cased: approved | changes_requested | review_required, or
    # None when the repository requires no review (then `reviews` decides)
    review_decision: str | None = None
    checks: CheckSummary = field(default_factory=CheckSummary)
    draft: bool = False
    # GitHub's mergeStateStatus, lower-cased (clean, blocked, behind, dirty, draft, unstable,
    # has_hooks, unknown); None where the forge has no such notion (the local forge)
    merge_state: str | None = None
    # the latest opinionated review of each reviewer whose review counts (write access, or
    # a trusted reviewer): (login, approved | changes_requested)
    reviews: tuple[tuple[str, str], ...] = ()
    # the same from accounts without write access: shown to people, never acted on
    untrusted_reviews: tuple[tuple[str, str], ...] = ()
    created_at: float | None = None  # epoch seconds
    cross_repository: bool = False
    # every review submitted so far, of any kind: a new one means new comments to read
    review_count: int = 0
    # the branch rules a BLOCKED PR does not meet, in words (GitHub; "" when not known)
    blocked_by: str = ""
    node_id: str = ""  # GitHub's global id of the PR (its GraphQL mutations take it)
    # GitHub's merge queue entry state, lower-cased (queued, awaiting_checks, mergeable,
    # unmergeable, locked); None when the PR is not in a merge queue
    queue: str | None = None


class Enqueued(Exception):
    """`merge` put the PR in the base branch's merge queue (GitHub) instead of merging it:
    the forge merges it later, or removes it (merge_queue.md in docs/reactions.md)."""

    def __init__(self, number: int, state: str, position: int | None) -> None:
        super().__init__(f"PR #{number} is in the merge queue"
                         + (f" at position {position}" if position else ""))
        self.state, self.position = state, position


@dataclass(frozen=True)
class QueueRemoval:
    """Why GitHub took a PR out of its merge queue (a RemovedFromMergeQueueEvent)."""

    reason: str  # failed_checks, manual, merged, ... (lower-cased; GitHub's words)
    group_sha: str | None  # the merge group's commit, where the queue's checks ran
    at: float  # epoch seconds


@dataclass(frozen=True)
class Annotation:
    path: str
    line: int | None
    message: str
    level: str = "failure"


@dataclass(frozen=True)
class FailureDetail:
    check: str
    url: str = ""
    output: str = ""
    annotations: tuple[Annotation, ...] = ()
    log_tail: str = ""


@dataclass(frozen=True)
class ReviewComment:
    id: str
    author: str
    body: str
    path: str | None = None
    line: int | None = None
    resolved: bool = False
    created_at: str = ""
    # the author's standing: GitHub's authorAssociation (OWNER, MEMBER, COLLABORATOR, ...);
    # the local forge's reviews are the user's own (`ao review`)
    standing: str = "OWNER"


@dataclass(frozen=True)
class AgentReview:
    """A reviewer agent's verdict, to post as a review on the PR's head (steps.py)."""

    verdict: str  # approve | request_changes
    body: str
    comments: tuple[tuple[str, int | None, str], ...] = ()  # (path, line, text)
    marker: str = ""  # in the body: finds a review already posted (no second post)


@dataclass
class PollResult:
    """PR facts by branch (None: no PR for that branch yet), and what could not be seen."""

    prs: dict[str, PullRequest | None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    rate_remaining: int | None = None
    # the branches on the remote as the poll saw them; None when it did not look (GitHub's
    # poll reads PRs, not the remote's branches)
    pushed: set[str] | None = None


class Forge(Protocol):
    name: str

    def resolve_task(self, key: str) -> Issue: ...

    def poll(self, branches: list[str]) -> PollResult: ...

    def find_pr(self, branch: str) -> PullRequest | None: ...

    def failure_details(self, pr: PullRequest) -> list[FailureDetail]: ...

    def review_comments(self, pr: PullRequest) -> list[ReviewComment]: ...

    def comment(self, number: int, body: str) -> None: ...

    def submit_review(self, pr: PullRequest, review: AgentReview, sha: str) -> str:
        """Post a reviewer agent's verdict as a review; returns how it was posted (the
        review event used). Posting twice posts once (the marker)."""
        ...

    def merge(self, pr: PullRequest, expected_sha: str) -> str: ...

    def update_branch(self, pr: PullRequest, expected_sha: str) -> None:
        """Merge the base branch into the PR's head on the forge (GitHub's "Update branch"),
        if the head is still `expected_sha`; ExternalError when refused (a conflict, a head
        that moved)."""
        ...

    def create_pr(self, branch: str, title: str, body: str) -> PullRequest: ...

    def serve(self, prs: dict[str, PullRequest | None]) -> None:
        """The forge's own work for what a poll saw (the local forge: CI for new heads);
        GitHub does it on its servers. Reads (`poll`, `find_pr`) never do it."""

    def close_issue(self, number: int) -> None: ...
