"""A session's PR in GitHub's merge queue (docs/reactions.md "Merge queue"): what the daemon
does when `merge` enqueued it, and when GitHub removed it without merging. The forge merges
a queued PR itself; the poll then reads it merged, as for any merge made elsewhere.

A removal for failed checks (the merge group's, not the PR's own) reaches the agent as a CI
fix round, counted with the others (escalated past the project's rounds); any other removal
(a person dequeued it) is told to a person, and that head is not queued again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ao.decide import compose
from ao.decide.reactions import Action, escalation
from ao.record.events import Event, emit
from ao.services.merging import record_enqueued

if TYPE_CHECKING:
    from ao.decide.reactions import History
    from ao.loop.actions import Act
    from ao.record.forge import Enqueued
    from ao.record.store import Store
    from ao.services.notify import Notifier

# a removal this much older than ao's own enqueue is an earlier one (GitHub's clock and
# ours differ by a little)
CLOCK_SLACK = 5.0
FAILED = ("failed_checks", "checks_failed", "ci_failed", "unknown")
# removals the PR's own reactions answer: a conflict with main asks its agent to rebase, a
# new head is gated and queued again; nobody needs telling
QUIET = ("merge_conflict", "head_moved")


def enqueued(store: Store, x: Act, q: Enqueued) -> None:
    """The gate passed and the PR is in the merge queue: recorded once a head (never queued
    twice), and said."""
    record_enqueued(store, x.s, x.pr.number if x.pr else None, x.a.sha, q)


def dequeued(store: Store, x: Act, hist: History, notifier: Notifier) -> Action | None:
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
