"""What to do about what the daemon sees. Pure: an observation of one session, its history of
reactions (from the store) and the policy (from config) in; actions out.

Retry discipline lives here: a CI fix round is counted once per failing head sha, so CI going
pending, a restart, or the same failure seen twice never adds or loses a round.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import ProjectConfig, parse_duration
from .forge.base import FAILING, NONE, PASSING, PullRequest
from .state import Activity, State

DEFAULT_CI_RETRIES = 3
DEFAULT_REVIEW_ROUNDS = 3
DEFAULT_REBASE_RETRIES = 3
DEFAULT_STUCK_AFTER = 600.0


@dataclass(frozen=True)
class Policy:
    ci_retries: int = DEFAULT_CI_RETRIES
    review_rounds: int = DEFAULT_REVIEW_ROUNDS
    rebase_retries: int = DEFAULT_REBASE_RETRIES
    stuck_after: float = DEFAULT_STUCK_AFTER
    auto_merge: bool = False
    auto: frozenset[str] = frozenset({"ci-failed", "changes-requested", "merge-conflict",
                                      "agent-stuck", "agent-exited"})

    @classmethod
    def for_project(cls, p: ProjectConfig) -> Policy:
        r = p.reactions

        def count(name: str, default: int) -> int:
            rc = r.get(name)
            if rc is None:
                return default
            if rc.retries is not None:
                return rc.retries
            if rc.escalate_after and rc.escalate_after.isdigit():
                return int(rc.escalate_after)
            return default

        stuck = r.get("agent-stuck")
        stuck_after = parse_duration(stuck.escalate_after) if stuck and stuck.escalate_after \
            and not stuck.escalate_after.isdigit() else DEFAULT_STUCK_AFTER
        auto = {n for n in cls.auto if r.get(n) is None or r[n].auto}
        merge = r.get("approved-and-green")
        return cls(ci_retries=count("ci-failed", DEFAULT_CI_RETRIES),
                   review_rounds=count("changes-requested", DEFAULT_REVIEW_ROUNDS),
                   rebase_retries=count("merge-conflict", DEFAULT_REBASE_RETRIES),
                   stuck_after=stuck_after,
                   auto_merge=p.auto_merge and (merge is None or merge.auto),
                   auto=frozenset(auto))


@dataclass(frozen=True)
class Observation:
    state: State
    activity: Activity
    idle_for: float  # seconds the agent has been idle (0 when not idle)
    pr: PullRequest | None
    waiting_since: float | None = None


@dataclass(frozen=True)
class History:
    ci_rounds: tuple[str, ...] = ()  # head shas that got a fix message, in order
    done: frozenset[str] = frozenset()  # every other reaction fingerprint already acted on
    restores: int = 0

    def has(self, fingerprint: str) -> bool:
        return fingerprint in self.done


@dataclass(frozen=True)
class Action:
    kind: str  # set-state | fix-ci | forward-review | ask-rebase | merge | notify | escalate
    #          | nudge | restore
    fingerprint: str = ""
    reason: str = ""
    state: State | None = None
    sha: str = ""
    round: int = 0
    data: dict[str, object] = field(default_factory=dict)


def decide(obs: Observation, hist: History, policy: Policy) -> list[Action]:
    pr = obs.pr
    if pr is not None and pr.state == "merged":
        return [Action("set-state", state=State.MERGED, reason="PR merged", sha=pr.head_sha)]
    if obs.state is State.NEEDS_HUMAN:
        return []  # a human has it until they hand it back
    actions: list[Action] = []
    if obs.activity is Activity.WAITING_INPUT:
        fp = f"needs-input:{int(obs.waiting_since or 0)}"
        if not hist.has(fp):
            actions.append(Action("notify", fp, "the agent is waiting on a permission prompt"))
    if pr is None:
        return actions + _without_pr(obs, hist, policy)
    if obs.state is State.WORKING:
        actions.append(Action("set-state", state=State.PR_OPEN, reason=f"PR #{pr.number}"))
    if pr.state == "closed":
        closed = f"PR #{pr.number} was closed without merging"
        return [*actions, _escalate(hist, "pr-closed", closed)]
    if obs.activity is Activity.EXITED:
        return actions + _exited(hist, "the agent exited with its PR open")
    sha = pr.head_sha
    if pr.checks.overall == FAILING:
        if sha in hist.ci_rounds:
            actions += _stuck(obs, hist, policy, f"ci:{sha}",
                              "CI still fails and no new commits since the fix request")
        elif len(hist.ci_rounds) >= policy.ci_retries:
            actions.append(_escalate(hist, "ci-exhausted",
                                     f"CI failed after {len(hist.ci_rounds)} fix rounds"))
        elif "ci-failed" in policy.auto:
            actions.append(Action("fix-ci", f"ci:{sha}", sha=sha,
                                   round=len(hist.ci_rounds) + 1))
    if pr.mergeable == "conflicting" and "merge-conflict" in policy.auto \
            and not hist.has(f"rebase:{sha}"):
        asked = sum(1 for fp in hist.done if fp.startswith("rebase:"))
        if asked >= policy.rebase_retries:
            actions.append(_escalate(hist, "conflict",
                                     f"still conflicting after {asked} rebase requests"))
        else:
            actions.append(Action("ask-rebase", f"rebase:{sha}", sha=sha))
    if pr.review_decision == "changes_requested" and "changes-requested" in policy.auto:
        actions.append(Action("forward-review", sha=sha))
    green = pr.checks.overall in (PASSING, NONE)
    # no decision means the forge requires no review (GitHub says REVIEW_REQUIRED when the
    # branch protection does); an outstanding change request always blocks
    approved = pr.review_decision in ("approved", None)
    if green and approved and pr.mergeable == "mergeable":
        if policy.auto_merge:
            if not hist.has(f"merge:{sha}"):
                actions.append(Action("merge", f"merge:{sha}", sha=sha))
        elif not hist.has(f"merge-ready:{sha}"):
            actions.append(Action("notify", f"merge-ready:{sha}",
                                  f"PR #{pr.number} is approved and green"))
    return actions


def _without_pr(obs: Observation, hist: History, policy: Policy) -> list[Action]:
    if obs.activity is Activity.EXITED:
        return _exited(hist, "the agent exited before opening a PR")
    return _stuck(obs, hist, policy, "nopr", "idle with no pull request")


def _exited(hist: History, reason: str) -> list[Action]:
    if hist.restores < 1:
        return [Action("restore", f"restore:{hist.restores + 1}", reason)]
    return [_escalate(hist, "exited", reason + " again after a restore")]


def _stuck(obs: Observation, hist: History, policy: Policy, key: str,
           reason: str) -> list[Action]:
    if obs.activity is not Activity.IDLE or obs.idle_for < policy.stuck_after:
        return []
    if not hist.has(f"nudge:{key}"):
        return [Action("nudge", f"nudge:{key}", reason)] if "agent-stuck" in policy.auto else []
    if obs.idle_for >= 2 * policy.stuck_after:
        return [_escalate(hist, f"stuck:{key}", reason + ", after a nudge")]
    return []


def _escalate(hist: History, key: str, reason: str) -> Action:
    return Action("escalate", f"escalate:{key}", reason)
