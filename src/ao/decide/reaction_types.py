"""The words reactions.py decides in: the project's policy (from config), what is observed of
one session, its history of reactions (from the store), and the actions that come out. Pure
records; reactions.py re-exports them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ao.decide.gate import GatePolicy
from ao.decide.steps import DEFAULT as DEFAULT_STEPS
from ao.decide.steps import Step
from ao.decide.steps import passed as steps_passed

if TYPE_CHECKING:
    from ao.config import ProjectConfig
    from ao.record.forge import PullRequest
    from ao.record.state import Activity, State

DEFAULT_CI_RETRIES = 3
DEFAULT_REVIEW_ROUNDS = 3
DEFAULT_REBASE_RETRIES = 3
DEFAULT_STUCK_AFTER = 600.0
DEFAULT_MERGE_RETRIES = 3


@dataclass(frozen=True)
class Policy:
    ci_retries: int = DEFAULT_CI_RETRIES
    review_rounds: int = DEFAULT_REVIEW_ROUNDS
    rebase_retries: int = DEFAULT_REBASE_RETRIES
    stuck_after: float = DEFAULT_STUCK_AFTER
    auto_merge: bool = False
    auto: frozenset[str] = frozenset({"ci-failed", "changes-requested", "merge-conflict",
                                      "agent-stuck", "agent-exited"})
    gate: GatePolicy = field(default_factory=GatePolicy)
    merge_retries: int = DEFAULT_MERGE_RETRIES
    run_steps: bool = True  # reviewers and checks start (not while the project is paused)
    # a reaction's own opening for its message to the agent (`message:`, config.py)
    messages: Mapping[str, str] = field(default_factory=dict)
    behind: str = "update"  # a PR behind its base: update | rebase | wait (config.BEHIND)

    @classmethod
    def for_project(cls, p: ProjectConfig) -> Policy:
        r = p.reactions

        def count(name: str, default: int) -> int:
            rounds = r[name].rounds if name in r else None
            return default if rounds is None else rounds

        stuck = r.get("agent-stuck")
        stuck_after = DEFAULT_STUCK_AFTER if stuck is None or stuck.wait is None else stuck.wait
        auto = {n for n in cls.auto if r.get(n) is None or r[n].auto}
        merge = r.get("approved-and-green")
        return cls(ci_retries=count("ci-failed", DEFAULT_CI_RETRIES),
                   review_rounds=count("changes-requested", DEFAULT_REVIEW_ROUNDS),
                   rebase_retries=count("merge-conflict", DEFAULT_REBASE_RETRIES),
                   stuck_after=stuck_after,
                   auto_merge=p.auto_merge and (merge is None or merge.auto),
                   auto=frozenset(auto),
                   gate=GatePolicy(require_review=p.require_review,
                                   require_checks=p.require_checks,
                                   accept_states=frozenset({"clean", *p.merge_states}),
                                   base=p.default_branch),
                   merge_retries=count("approved-and-green", DEFAULT_MERGE_RETRIES),
                   messages={n: rc.message for n, rc in r.items() if rc.message is not None},
                   behind=p.behind)


@dataclass(frozen=True)
class Observation:
    state: State
    activity: Activity
    idle_for: float  # seconds the agent has been idle (0 when not idle)
    pr: PullRequest | None
    waiting_since: float | None = None
    limited_until: float | None = None  # the agent's usage limit resets then
    now: float = 0.0
    steps: tuple[Step, ...] = DEFAULT_STEPS  # the task's steps (steps.py)


@dataclass(frozen=True)
class History:
    ci_rounds: tuple[str, ...] = ()  # head shas that got a fix message, in order
    done: frozenset[str] = frozenset()  # every other reaction fingerprint already acted on
    restores: int = 0
    # times a human (or the cause going away) handed an escalated session back: each hand-back
    # grants a fresh budget of fix rounds and lets the same trouble escalate again
    resumes: int = 0
    escalated_for: str | None = None  # the key of the latest escalation

    @classmethod
    def of(cls, attempts: list[dict[str, Any]]) -> History:
        """A session's history from its recorded attempts (Store.attempts): each reaction
        kind's fingerprint says what it was about (`fix-ci:<sha>`, `escalate:<key>:<n>`)."""
        def of_kind(kind: str) -> list[str]:
            return [r["fingerprint"] for r in attempts if r["reaction"] == kind]

        escalations = [fp.removeprefix("escalate:") for fp in of_kind("escalate")]
        return cls(ci_rounds=tuple(fp.split(":", 1)[1] for fp in of_kind("fix-ci")),
                   done=frozenset(r["fingerprint"] for r in attempts),
                   restores=len(of_kind("restore")), resumes=len(of_kind("resume")),
                   escalated_for=escalations[-1].rsplit(":", 1)[0] if escalations else None)

    def has(self, fingerprint: str) -> bool:
        return fingerprint in self.done

    def count(self, prefix: str) -> int:
        return sum(1 for fp in self.done if fp.startswith(prefix))

    def passed(self, sha: str) -> frozenset[str]:
        """The step gates passed for this head (steps.passed)."""
        return steps_passed(self.done, sha)


class ActionKind(StrEnum):
    """What the daemon can do about a session; `actions.Actions` has a handler per kind."""

    SET_STATE = "set-state"
    FIX_CI = "fix-ci"
    FORWARD_REVIEW = "forward-review"
    ASK_REBASE = "ask-rebase"
    UPDATE_BRANCH = "update-branch"  # the base merged into a PR's head, on the forge
    MERGE = "merge"
    NOTIFY = "notify"
    ESCALATE = "escalate"
    NUDGE = "nudge"
    RESTORE = "restore"
    RESUME = "resume"
    LIMIT_CONTINUE = "limit-continue"
    START_REVIEW = "start-review"  # a reviewer agent on the PR's head (steps.py)
    RUN_CHECK = "run-check"  # a check step's command on the PR's head
    DEQUEUED = "dequeued"  # a PR ao put in GitHub's merge queue left it unmerged


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    fingerprint: str = ""
    reason: str = ""
    state: State | None = None
    sha: str = ""
    round: int = 0
    data: dict[str, object] = field(default_factory=dict)
