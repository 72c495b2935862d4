"""GitHub's merge queue (docs/reactions.md "Merge queue"): the fifth layer of `GitHubForge`.

A base branch whose rules require the merge queue refuses a direct merge (405, "Changes must
be made through the merge queue"). Once ao's gate passes, the PR is enqueued instead
(GraphQL `enqueuePullRequest`, with the head sha it was checked at); GitHub then merges it
after its checks pass on the merge group (the PR merged onto main and the PRs ahead of it),
or removes it from the queue. A PR stays CLEAN while it waits, so what the poll reads of it
is its `mergeQueueEntry`; why it left is the latest `RemovedFromMergeQueueEvent` on its
timeline (`reason`, and `beforeCommit`: the merge group's commit, whose checks say what
failed).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ao.errors import ExternalError
from ao.record.forge import Enqueued, FailureDetail, PullRequest, QueueRemoval

if TYPE_CHECKING:  # the layer below, for the types of the methods it lends
    from ao.world.forge.github_main import GitHubMain as _Below
else:  # at run time the layers meet in GitHubForge (github.py), not in a chain
    from ao.world.forge.github_client import GitHubClient as _Below


ENQUEUE = """mutation AoEnqueue($pr: ID!, $sha: GitObjectID) {
  enqueuePullRequest(input: {pullRequestId: $pr, expectedHeadOid: $sha}) {
    mergeQueueEntry { state position }
  }
}"""
REMOVALS = """query AoQueueRemoval($owner: String!, $name: String!, $number: Int!) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      mergeQueueEntry { state position }
      timelineItems(last: 1, itemTypes: [REMOVED_FROM_MERGE_QUEUE_EVENT]) {
        nodes { ... on RemovedFromMergeQueueEvent { reason createdAt beforeCommit { oid } } }
      }
    }
  }
}"""


class GitHubQueue(_Below):
    def queue_required(self, base: str) -> bool:
        """Whether the base branch's rules send merges through the merge queue."""
        try:
            rules, _ = self._branch_rules(base)
        except ExternalError:
            return False
        return any(r.get("type") == "merge_queue" for r in rules)

    def enqueue(self, pr: PullRequest, expected_sha: str) -> Enqueued:
        """Put the PR in the merge queue at the head it was checked at; what GitHub answered
        (an error names why it refused: a head that moved, a rule not met)."""
        if pr.queue is not None:
            return Enqueued(pr.number, pr.queue, None)  # in it already: never twice
        if not pr.node_id:
            raise ExternalError(f"PR #{pr.number} has no GitHub id", "look again at the next poll")

        def applied() -> dict[str, Any] | None:  # a write answered 502 may have been done
            entry = self._removal_data(pr.number).get("mergeQueueEntry")
            return {"enqueuePullRequest": {"mergeQueueEntry": entry}} if entry else None

        data = self._write(f"enqueue PR #{pr.number}", lambda: self._graphql(
            ENQUEUE, {"pr": pr.node_id, "sha": expected_sha}), applied)
        entry = ((data.get("enqueuePullRequest") or {}).get("mergeQueueEntry") or {})
        return Enqueued(pr.number, str(entry.get("state") or "queued").lower(),
                        entry.get("position"))

    def queue_removal(self, pr: PullRequest) -> QueueRemoval | None:
        """The latest removal of the PR from the merge queue, None when it never left one
        (or is back in it)."""
        data = self._removal_data(pr.number)
        if data.get("mergeQueueEntry"):
            return None
        nodes = (data.get("timelineItems") or {}).get("nodes") or []
        node = nodes[-1] if nodes and nodes[-1] else None
        if node is None:
            return None
        when = str(node.get("createdAt") or "")
        try:
            at = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        except ValueError:
            at = 0.0
        return QueueRemoval(reason=str(node.get("reason") or "unknown").lower(),
                            group_sha=((node.get("beforeCommit") or {}).get("oid")), at=at)

    def group_failures(self, removal: QueueRemoval) -> list[FailureDetail]:
        """The failing checks of the merge group the PR was removed for (every page)."""
        return self.details_at(removal.group_sha) if removal.group_sha else []

    def _removal_data(self, number: int) -> dict[str, Any]:
        data = self._graphql(REMOVALS, {"owner": self.owner, "name": self.repo_name,
                                        "number": number})
        return ((data.get("repository") or {}).get("pullRequest") or {})
