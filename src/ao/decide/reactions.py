"""What to do about what the daemon sees. Pure: an observation of one session, its history of
reactions (from the store) and the policy (from config) in; actions out.

Retry discipline lives here: a CI fix round is counted once per failing head sha, so CI going
pending, a restart, or the same failure seen twice never adds or loses a round.
"""

from __future__ import annotations

from ao.decide.gate import Approval, approval, checks_state, merge_gate

# the words it decides in (reaction_types.py), re-exported: callers keep `reactions.X`
from ao.decide.reaction_types import DEFAULT_CI_RETRIES as DEFAULT_CI_RETRIES
from ao.decide.reaction_types import DEFAULT_MERGE_RETRIES as DEFAULT_MERGE_RETRIES
from ao.decide.reaction_types import DEFAULT_REBASE_RETRIES as DEFAULT_REBASE_RETRIES
from ao.decide.reaction_types import DEFAULT_REVIEW_ROUNDS as DEFAULT_REVIEW_ROUNDS
from ao.decide.reaction_types import DEFAULT_STUCK_AFTER as DEFAULT_STUCK_AFTER
from ao.decide.reaction_types import Action as Action
from ao.decide.reaction_types import ActionKind as ActionKind
from ao.decide.reaction_types import History as History
from ao.decide.reaction_types import Observation as Observation
from ao.decide.reaction_types import Policy as Policy
from ao.decide.steps import gate_id, gates
from ao.record.forge import FAILING, NONE, PASSING, PullRequest
from ao.record.state import Activity, State


def resolved(obs: Observation, hist: History, policy: Policy) -> str | None:
    """Why an escalated session can go back to automatic handling (what caused the escalation
    is gone), or None while a human still has it."""
    pr, key = obs.pr, (hist.escalated_for or "")
    if key.startswith("merge:"):
        return None  # the forge refused a merge the gate allowed: only a human knows why
    if pr is not None and pr.state == "open":
        why = _pr_resolved(key, pr, hist, policy, obs)
        if why:
            return why
    if key == "exited" and obs.activity not in (Activity.EXITED, Activity.UNKNOWN):
        return "the agent runs again"
    if key.startswith("stuck") and obs.activity is Activity.ACTIVE:
        return "the agent is working again"
    if key.startswith("delivery") and obs.activity is Activity.ACTIVE:
        return "the agent is working on it"
    return None


def _pr_resolved(key: str, pr: PullRequest, hist: History, policy: Policy,
                 obs: Observation) -> str | None:
    """What an open PR shows that ends the escalation `key`, if anything."""
    if not key.startswith("delivery") and merge_gate(
            pr, policy.gate, required=gates(obs.steps), passed=hist.passed(pr.head_sha)):
        return "the PR is approved and green"
    gone = {
        "ci-exhausted": (pr.checks.overall == PASSING, "CI passes again"),
        "conflict": (pr.mergeable == "mergeable", "the conflict is gone"),
        "review": (approval(pr) is not Approval.CHANGES_REQUESTED and not hist.has(
            f"verdict:{pr.head_sha}:request_changes"), "no changes are requested any more"),
        "pr-closed": (True, "the PR was reopened"),
    }
    ok, why = gone.get(key, (False, ""))
    return why if ok else None


def decide(obs: Observation, hist: History, policy: Policy) -> list[Action]:
    pr = obs.pr
    if pr is not None and pr.state == "merged":
        return [Action(ActionKind.SET_STATE, state=State.MERGED, reason="PR merged",
                       sha=pr.head_sha)]
    if obs.activity is Activity.UNREACHABLE:
        return []  # its host does not answer: nothing is known of the agent (fleet.py)
    if obs.state is State.NEEDS_HUMAN:
        return _hand_back(obs, hist, policy)
    if obs.limited_until and obs.now < obs.limited_until:
        # nothing to nudge or escalate: the agent (at its limit, or parked beside one that
        # is) waits for its reset, and so do we
        fp = f"limited:{int(obs.limited_until)}"
        return [] if hist.has(fp) else [Action(ActionKind.NOTIFY, fp, "the agent hit its usage "
                                               f"limit; it resets at "
                                               f"{_clock(int(obs.limited_until))}")]
    actions = _attention(obs, hist)
    if pr is None:
        return actions + _without_pr(obs, hist, policy)
    if obs.state is State.WORKING:
        actions.append(Action(ActionKind.SET_STATE, state=State.PR_OPEN, reason=f"PR #{pr.number}"))
    if pr.state == "closed":
        closed = f"PR #{pr.number} was closed without merging"
        return [*actions, escalation(hist, "pr-closed", closed)]
    if obs.activity is Activity.EXITED:
        return actions + _exited(hist, "the agent exited with its PR open")
    passed = hist.passed(pr.head_sha)
    return actions + _ci(obs, hist, policy, pr) + _conflict(hist, policy, pr) + \
        _behind(hist, policy, pr) + _review(hist, policy, pr) + \
        _green(obs, hist, policy, pr, passed) + _merge(obs, hist, policy, pr, passed) + \
        _dequeued(hist, pr)


def _dequeued(hist: History, pr: PullRequest) -> list[Action]:
    """A head ao put in the merge queue that is neither in it nor merged: GitHub removed it
    (its checks failed on the merge group, or a person took it out). Looked into until the
    removal is seen, then once a head."""
    sha = pr.head_sha
    if pr.queue is not None or not hist.has(f"queued:{sha}") or hist.has(f"dequeued:{sha}"):
        return []
    return [Action(ActionKind.DEQUEUED, f"dequeued:{sha}", sha=sha)]


def _conflict(hist: History, policy: Policy, pr: PullRequest) -> list[Action]:
    """A conflicting head: the agent asked to rebase, once a head, escalated past the
    configured requests."""
    sha = pr.head_sha
    if pr.mergeable != "conflicting" or "merge-conflict" not in policy.auto \
            or hist.has(f"rebase:{sha}"):
        return []
    return _ask_rebase(hist, policy, sha, "conflicting")


def _ask_rebase(hist: History, policy: Policy, sha: str, still: str) -> list[Action]:
    """The agent asked to rebase its head, escalated past the configured requests."""
    asked = hist.count("rebase:")
    if asked >= policy.rebase_retries * (hist.resumes + 1):
        return [escalation(hist, "conflict", f"still {still} after {asked} rebase requests")]
    return [Action(ActionKind.ASK_REBASE, f"rebase:{sha}", sha=sha)]


def _behind(hist: History, policy: Policy, pr: PullRequest) -> list[Action]:
    """A PR behind a base that must be up to date (GitHub's BEHIND): updated on the forge
    once a head, or, when that is refused (a conflict) or configured, the agent asked to
    rebase, as for a conflict. Each merge used to park every other green PR for good."""
    sha = pr.head_sha
    if pr.merge_state != "behind" or pr.mergeable == "conflicting" or policy.behind == "wait":
        return []
    if policy.behind == "update" and not hist.has(f"update-refused:{sha}"):
        return [] if hist.has(f"update:{sha}") else [
            Action(ActionKind.UPDATE_BRANCH, f"update:{sha}", sha=sha)]
    if "merge-conflict" not in policy.auto or hist.has(f"rebase:{sha}"):
        return []
    return _ask_rebase(hist, policy, sha, "behind")


def _review(hist: History, policy: Policy, pr: PullRequest) -> list[Action]:
    """Changes requested, forwarded whatever reviewDecision says (it is null on repositories
    that require no review), and whatever the forge made of a reviewer agent's verdict (on
    GitHub a PR's author may only comment on it)."""
    asked = approval(pr) is Approval.CHANGES_REQUESTED or \
        hist.has(f"verdict:{pr.head_sha}:request_changes")
    if asked and "changes-requested" in policy.auto:
        return [Action(ActionKind.FORWARD_REVIEW, sha=pr.head_sha)]
    return []


def _green(obs: Observation, hist: History, policy: Policy, pr: PullRequest,
           passed: frozenset[str]) -> list[Action]:
    """The steps that run once the head is green and mergeable."""
    checks = checks_state(pr, policy.gate)
    green = checks == PASSING or (checks == NONE and not policy.gate.require_checks)
    if green and pr.mergeable != "conflicting" and not pr.draft and policy.run_steps:
        return _steps(obs, hist, policy, pr.head_sha, passed)
    return []


def _hand_back(obs: Observation, hist: History, policy: Policy) -> list[Action]:
    """An escalated session goes back to automatic handling once its cause is gone."""
    why = resolved(obs, hist, policy)
    if why is None:
        return []  # a human has it until they hand it back, or the cause goes away
    pr = obs.pr
    back = State.PR_OPEN if pr is not None and pr.state == "open" else State.WORKING
    return [Action(ActionKind.RESUME, f"resume:{hist.resumes + 1}", why, state=back)]


def _attention(obs: Observation, hist: History) -> list[Action]:
    """A usage limit that has reset, and a permission prompt a human must answer."""
    out = []
    if obs.limited_until:
        until = int(obs.limited_until)
        if obs.now >= obs.limited_until and not hist.has(f"limit-continue:{until}"):
            out.append(Action(ActionKind.LIMIT_CONTINUE, f"limit-continue:{until}",
                              "the usage limit has reset"))
    if obs.activity is Activity.WAITING_INPUT:
        fp = f"needs-input:{int(obs.waiting_since or 0)}"
        if not hist.has(fp):
            out.append(Action(ActionKind.NOTIFY, fp,
                              "the agent is waiting on a permission prompt"))
    return out


def _ci(obs: Observation, hist: History, policy: Policy, pr: PullRequest) -> list[Action]:
    """A failing head: a fix round, or "still failing" once asked, or escalation after the
    configured rounds."""
    sha = pr.head_sha
    if checks_state(pr, policy.gate) != FAILING:
        return []
    if sha in hist.ci_rounds:
        return _stuck(obs, hist, policy, f"ci:{sha}",
                      "CI still fails and no new commits since the fix request")
    if len(hist.ci_rounds) >= policy.ci_retries * (hist.resumes + 1):
        return [escalation(hist, "ci-exhausted",
                          f"CI failed after {len(hist.ci_rounds)} fix rounds")]
    if "ci-failed" in policy.auto:
        # each hand-back grants a fresh budget: "round 4 of 6", never "round 4 of 3"
        return [Action(ActionKind.FIX_CI, f"ci:{sha}", sha=sha,
                       round=len(hist.ci_rounds) + 1,
                       data={"of": policy.ci_retries * (hist.resumes + 1)})]
    return []


def _merge(obs: Observation, hist: History, policy: Policy, pr: PullRequest,
           passed: frozenset[str]) -> list[Action]:
    """The merge gate's verdict acted on: a human asked to approve, a merge, a notice that
    it can merge, or escalation after the forge refused it."""
    sha = pr.head_sha
    out = []
    verdict = merge_gate(pr, policy.gate, expected_sha=sha, required=gates(obs.steps),
                         passed=passed)
    if verdict.waiting_for == "approve" and not hist.has(f"approval-asked:{sha}"):
        out.append(Action(ActionKind.NOTIFY, f"approval-asked:{sha}",
                          f"PR #{pr.number} is ready and waits for a human's approval"))
    if not verdict:
        return out
    refused = hist.count(f"merge-failed:{sha}:")
    if policy.auto_merge and refused >= policy.merge_retries:
        out.append(escalation(hist, f"merge:{sha}", f"the forge refused to merge PR "
                             f"#{pr.number} {refused} times"))
    elif policy.auto_merge:
        if not hist.has(f"merge:{sha}"):
            out.append(Action(ActionKind.MERGE, f"merge:{sha}", sha=sha))
    elif not hist.has(f"merge-ready:{sha}"):
        out.append(Action(ActionKind.NOTIFY, f"merge-ready:{sha}",
                          f"PR #{pr.number} can merge: {verdict.reason}"))
    return out


def _steps(obs: Observation, hist: History, policy: Policy, sha: str,
           passed: frozenset[str]) -> list[Action]:
    """Start the steps that run on a green head: checks first (cheap, and a failing one goes
    back to the agent), then the reviewer agent once every check passed. A run is once per
    head and per hand-back: after a human resumes an escalated session the steps run again."""
    out: list[Action] = []
    checks_ok = True
    r = hist.resumes
    for step in obs.steps:
        gate = gate_id(step)
        if step.kind == "check" and gate not in passed:
            checks_ok = False
            h = gate.split(":", 1)[1]
            if not hist.has(f"check-run:{h}:{sha}:{r}"):
                out.append(Action(ActionKind.RUN_CHECK, f"check-run:{h}:{sha}:{r}", step.label,
                                  sha=sha, data={"gate": gate}))
    review = next((s for s in obs.steps if s.kind == "review"), None)
    if review is None or not checks_ok or "review" in passed or \
            hist.has(f"review-run:{sha}:{r}"):
        return out
    runs = hist.count("review-run:")
    if runs >= policy.review_rounds * (r + 1):
        return [*out, escalation(hist, "reviewer-rounds",
                                f"the reviewer agent ran {runs} times without approving")]
    out.append(Action(ActionKind.START_REVIEW, f"review-run:{sha}:{r}", "the PR is green",
                      sha=sha, round=runs + 1, data={"agent": review.agent or ""}))
    return out


def _clock(epoch: float) -> str:
    import time

    return time.strftime("%H:%M %Z", time.localtime(epoch))


def _without_pr(obs: Observation, hist: History, policy: Policy) -> list[Action]:
    if obs.activity is Activity.EXITED:
        return _exited(hist, "the agent exited before opening a PR")
    return _stuck(obs, hist, policy, "nopr", "idle with no pull request")


def _exited(hist: History, reason: str) -> list[Action]:
    if hist.restores < 1 + hist.resumes:
        return [Action(ActionKind.RESTORE, f"restore:{hist.restores + 1}", reason)]
    return [escalation(hist, "exited", reason + " again after a restore")]


def _stuck(obs: Observation, hist: History, policy: Policy, key: str,
           reason: str) -> list[Action]:
    if obs.activity is not Activity.IDLE or obs.idle_for < policy.stuck_after:
        return []
    if not hist.has(f"nudge:{key}"):
        if "agent-stuck" not in policy.auto:
            return []
        return [Action(ActionKind.NUDGE, f"nudge:{key}", reason)]
    if obs.idle_for >= 2 * policy.stuck_after:
        return [escalation(hist, f"stuck:{key}", reason + ", after a nudge")]
    return []


def escalation(hist: History, key: str, reason: str) -> Action:
    # the hand-back count is part of the fingerprint: once resumed, the same trouble escalates
    # again instead of being taken for the escalation already made
    return Action(ActionKind.ESCALATE, f"escalate:{key}:{hist.resumes}", reason)
