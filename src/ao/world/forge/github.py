"""GitHub through PyGithub: one GraphQL query per project per poll for every tracked branch's
PR facts; REST for writes and for details on demand. The only module that imports PyGithub.

Rate limits are read from every answer; when the remaining budget runs low the caller is told
to stretch its poll interval. 5xx answers, timeouts and secondary rate limits are retried with
jittered backoff a few times, then reported, never raised out of `poll`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from ao.errors import ExternalError, ForgeError, NothingToReview
from ao.record.forge import (
    WRITERS,
    AgentReview,
    Check,
    CheckSummary,
    PollResult,
    PullRequest,
    ReviewComment,
)
from ao.world.forge.github_checks import GitHubChecks
from ao.world.forge.github_client import login_of
from ao.world.forge.github_client import token_from_env as token_from_env
from ao.world.forge.github_issues import GitHubIssues
from ao.world.forge.github_issues import push_plan as push_plan
from ao.world.forge.github_main import GitHubMain
from ao.world.forge.github_queue import GitHubQueue

POLL_QUERY = """query AoPoll($owner: String!, $name: String!, $main: String!, {params}) {{
  rateLimit {{ remaining resetAt }}
  repository(owner: $owner, name: $name) {{
    main: object(expression: $main) {{ ... on Commit {{ oid statusCheckRollup {{ state
      contexts(first: 100) {{ nodes {{ __typename
        ... on CheckRun {{ name status conclusion detailsUrl databaseId }}
        ... on StatusContext {{ context state targetUrl description }} }} }} }} }} }}
{fields}
  }}
}}"""
# several nodes per branch: a fork's PR can carry the same head branch name, and only a
# same-repository PR is ours (isCrossRepository false)
PR_NODE = """id number url state title headRefName headRefOid baseRefName mergeable
        reviewDecision isDraft mergeStateStatus isCrossRepository createdAt
        mergeQueueEntry {{ state }}
        reviews {{ totalCount }}
        latestOpinionatedReviews(first: 20, writersOnly: true) {{
          nodes {{ state author {{ login }} }} }}
        others: latestOpinionatedReviews(first: 20) {{
          nodes {{ state author {{ login }} authorAssociation }} }}
        commits(last: 1) {{ nodes {{ commit {{ statusCheckRollup {{ state
          contexts(first: 100) {{ nodes {{ __typename
            ... on CheckRun {{ name status conclusion detailsUrl databaseId }}
            ... on StatusContext {{ context state targetUrl description }} }} }} }} }} }} }}"""
FIRST = 5  # PRs read per head branch name in a poll; more than that from forks: looked up
PR_FIELDS = """    {alias}: pullRequests(headRefName: ${var}, first: """ + str(FIRST) + """,
        orderBy: {{field: CREATED_AT, direction: DESC}}) {{
      nodes {{ """ + PR_NODE + """ }}
    }}"""
PR_BY_NUMBER = """query AoPr($owner: String!, $name: String!, $number: Int!) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) { """ + PR_NODE.replace("{{", "{").replace("}}", "}") + """ }
  }
}"""
THREADS_QUERY = """query AoThreads($owner: String!, $name: String!, $number: Int!) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviews(last: 50) { nodes { id state body author { login } authorAssociation
        submittedAt } }
      reviewThreads(first: 100) { nodes { isResolved
        comments(first: 50) { nodes { id body path line author { login } authorAssociation
          createdAt } } } }
    }
  }
}"""


class GitHubForge(GitHubQueue, GitHubMain, GitHubChecks, GitHubIssues):
    name = "github"

    # ---- calling GitHub -------------------------------------------------------------------

    # ---- tasks ----------------------------------------------------------------------------

    def submit_review(self, pr: PullRequest, review: AgentReview, sha: str) -> str:
        """POST /pulls/{n}/reviews on the head sha, inline comments on the diff's right side.
        GitHub refuses a PR's author an APPROVE or REQUEST_CHANGES on their own PR (422): ao's
        token usually opened the PR, so the verdict is then posted as a COMMENT review (ao
        keeps the verdict itself and gates the merge on it)."""
        inline: list[tuple[str, int | None, str]] = [c for c in review.comments if c[1]]
        # a comment on a whole file is not an inline review comment: it goes in the body
        loose = [f"- `{p}`: {t}" for p, ln, t in review.comments if not ln]

        def body_of(folded: list[tuple[str, int | None, str]]) -> str:
            extra = loose + [f"- `{p}` line {ln}: {t}" for p, ln, t in folded]
            return "\n\n".join(x for x in (review.body, "\n".join(extra), review.marker) if x)

        def applied() -> str | None:
            found = any(review.marker in (r.body or "")
                        for r in self.repo.get_pull(pr.number).get_reviews())
            return "already posted" if found else None

        if applied_before := self._call("check for an earlier review", applied):
            return applied_before
        event = "APPROVE" if review.verdict == "approve" else "REQUEST_CHANGES"

        def post(ev: str, with_inline: bool) -> str:
            gh = self.repo.get_pull(pr.number)
            comments = [{"path": p, "line": ln, "side": "RIGHT", "body": t}
                        for p, ln, t in inline] if with_inline else []
            gh.create_review(commit=self.repo.get_commit(sha),
                             body=body_of([] if with_inline else inline), event=ev,
                             comments=comments)  # type: ignore[arg-type]
            return ev

        try:
            return self._write(f"review of PR #{pr.number}", lambda: post(event, True), applied)
        except ExternalError as e:
            if ": 422 " not in str(e):
                raise
        # 422: GitHub refuses an author's APPROVE or REQUEST_CHANGES on their own PR, and an
        # inline comment on a line outside the diff; ao keeps the verdict and gates on it
        return self._write(f"review of PR #{pr.number}", lambda: post("COMMENT", False),
                           applied)

    # ---- pull requests --------------------------------------------------------------------

    def poll(self, branches: list[str]) -> PollResult:
        """Every branch's PR in one GraphQL request (no request at all for no branches)."""
        result = PollResult()
        if not branches:
            return result
        before = self.requests
        params = ", ".join(f"$h{i}: String!" for i in range(len(branches)))
        fields = "\n".join(PR_FIELDS.format(alias=f"b{i}", var=f"h{i}")
                           for i in range(len(branches)))
        variables: dict[str, Any] = {"owner": self.owner, "name": self.repo_name,
                                     "main": f"refs/heads/{self.project.default_branch}",
                                     **{f"h{i}": b for i, b in enumerate(branches)}}
        failed: set[str] = set()  # the aliases GitHub answered with an error: not seen
        try:
            data = self._graphql(POLL_QUERY.format(params=params, fields=fields), variables,
                                 errors=result.errors, failed=failed)
        except ExternalError as e:
            result.errors.append(str(e))
            result.requests = self.requests - before
            return result
        rate = data.get("rateLimit") or {}
        if isinstance(rate.get("remaining"), int):
            self.rate_remaining = rate["remaining"]
        repo = data.get("repository") or {}
        main = repo.get("main") or {}
        if main.get("oid"):  # main's head and its checks, for keeping it green (github_main.py)
            self.saw_main(str(main["oid"]), _checks_from_graphql({"commits": {"nodes": [
                {"commit": main}]}}).checks)
        for i, branch in enumerate(branches):
            if f"b{i}" in failed:  # "no PR" must not stand in for "could not look"
                continue
            connection = repo.get(f"b{i}")
            result.prs[branch] = _own_pr(connection, self.trusted)
            nodes = (connection or {}).get("nodes") or []
            if result.prs[branch] is None and len(nodes) >= FIRST:
                # as many newer PRs from forks as a poll reads, all with this head branch name:
                # ours may be older (REST filters by the head's owner)
                try:
                    result.prs[branch] = self._own_pr_beyond_forks(branch)
                except ExternalError as e:
                    result.errors.append(str(e))
                    del result.prs[branch]
        for branch, pr in result.prs.items():
            if pr is not None and pr.merge_state == "blocked" and pr.review_decision not in (
                    "review_required", "changes_requested"):  # the gate names those already
                result.prs[branch] = replace(pr, blocked_by=self.blocked_by(pr))
        result.requests = self.requests - before
        result.rate_remaining = self.rate_remaining
        return result

    def _own_pr_beyond_forks(self, branch: str) -> PullRequest | None:
        found = self._call("find the PR of " + branch, lambda: [p.number for p in list(
            self.repo.get_pulls(state="all", head=f"{self.owner}:{branch}"))[:1]])
        if not found:
            return None
        data = self._graphql(PR_BY_NUMBER, {"owner": self.owner, "name": self.repo_name,
                                            "number": found[0]})
        node = (data.get("repository") or {}).get("pullRequest")
        return _pr_from_graphql(node, self.trusted) if node else None

    def find_pr(self, branch: str) -> PullRequest | None:
        result = self.poll([branch])
        if result.errors:  # "no PR" must not stand in for "could not look"
            raise ExternalError(result.errors[0], "see `ao events -t forge`")
        return result.prs.get(branch)

    def create_pr(self, branch: str, title: str, body: str) -> PullRequest:
        def made(raw: Any) -> PullRequest:
            return PullRequest(number=raw.number, url=raw.html_url, state="open",
                               head_branch=branch, head_sha=raw.head.sha,
                               base=self.project.default_branch, title=title)

        def applied() -> PullRequest | None:
            found = list(self.repo.get_pulls(state="open", head=f"{self.owner}:{branch}"))
            return made(found[0]) if found else None

        try:
            return self._write("create PR", lambda: made(self.repo.create_pull(
                title=title, body=body, head=branch, base=self.project.default_branch)),
                applied)
        except ForgeError as e:
            if e.status == 422 and "No commits between" in e.message:
                raise NothingToReview(branch, self.project.default_branch) from None
            raise

    def update_branch(self, pr: PullRequest, expected_sha: str) -> None:
        url = f"{self.repo.url}/pulls/{pr.number}/update-branch"

        def applied() -> bool | None:  # answered 502 and done anyway: the head moved on
            moved = self.find_pr(pr.head_branch)
            return True if moved is not None and moved.head_sha != expected_sha else None

        self._write(f"update the branch of PR #{pr.number}", lambda: bool(
            self.gh.requester.requestJsonAndCheck(
                "PUT", url, input={"expected_head_sha": expected_sha})), applied)

    def merge(self, pr: PullRequest, expected_sha: str) -> str:
        """Merge at `expected_sha`; where the base requires the merge queue, enqueue it
        instead and raise `Enqueued` (GitHub merges it after the queue's checks)."""
        if self.queue_required(pr.base):
            raise self.enqueue(pr, expected_sha)
        method = self._merge_method()
        self._main_seen = None  # main moves: what the poll read of it is old

        def applied() -> str | None:
            raw = self.repo.get_pull(pr.number)
            return str(raw.merge_commit_sha) if raw.merged else None

        def do() -> str:
            status = self.repo.get_pull(pr.number).merge(sha=expected_sha, merge_method=method)
            if not status.merged:
                raise ExternalError(f"PR #{pr.number} was not merged: {status.message}",
                                    "look at the PR")
            return str(status.sha)

        return self._write(f"merge #{pr.number}", do, applied)

    def _merge_method(self) -> str:
        """The configured method; `auto` is the first the repository allows (read once)."""
        if self.project.merge_method != "auto":
            return self.project.merge_method
        if self._method is None:
            flags = self._call("read the repository's merge methods", lambda: (
                self.repo.allow_merge_commit, self.repo.allow_squash_merge,
                self.repo.allow_rebase_merge))
            allowed = [m for m, ok in zip(("merge", "squash", "rebase"), flags, strict=True)
                       if ok]
            self._method = allowed[0] if allowed else "merge"
        return self._method

    def serve(self, prs: dict[str, PullRequest | None]) -> None:
        """GitHub runs checks and closes PRs on its own servers: nothing to do here."""

    def review_comments(self, pr: PullRequest) -> list[ReviewComment]:
        data = self._graphql(THREADS_QUERY, {"owner": self.owner, "name": self.repo_name,
                                             "number": pr.number})
        node = ((data.get("repository") or {}).get("pullRequest") or {})
        return [c for c in (*_asking_reviews(node), *_open_thread_comments(node))
                if c.standing in WRITERS or c.author.lower() in self.trusted]

    @property
    def trusted(self) -> frozenset[str]:
        """Logins the project trusts besides accounts with write access (lower-cased)."""
        return frozenset(self.project.trusted_reviewers)


def _asking_reviews(node: dict[str, Any]) -> list[ReviewComment]:
    """The bodies of reviews that request changes, a reviewer agent's request posted as a
    COMMENT included (GitHub lets no author request changes on their own PR)."""
    out = []
    for review in (node.get("reviews") or {}).get("nodes") or []:
        body = review.get("body") or ""
        agent_asked = review.get("state") == "COMMENTED" and AGENT_MARK in body and \
            CHANGES_REQUESTED_HEAD in body
        if body and (review.get("state") == "CHANGES_REQUESTED" or agent_asked):
            out.append(ReviewComment(id=str(review["id"]), author=login_of(review), body=body,
                                     created_at=review.get("submittedAt") or "",
                                     standing=review.get("authorAssociation") or "NONE"))
    return out


def _open_thread_comments(node: dict[str, Any]) -> list[ReviewComment]:
    """The comments of review threads nobody resolved."""
    return [ReviewComment(id=str(c["id"]), author=login_of(c), body=c["body"],
                          path=c.get("path"), line=c.get("line"), resolved=False,
                          created_at=c.get("createdAt") or "",
                          standing=c.get("authorAssociation") or "NONE")
            for thread in (node.get("reviewThreads") or {}).get("nodes") or []
            if not thread.get("isResolved")
            for c in (thread.get("comments") or {}).get("nodes") or []]


AGENT_MARK = "<!-- ao-review "
CHANGES_REQUESTED_HEAD = "**Changes requested**"


_STATE = {"OPEN": "open", "CLOSED": "closed", "MERGED": "merged"}
_MERGEABLE = {"MERGEABLE": "mergeable", "CONFLICTING": "conflicting"}
_CHECK_STATE = {"SUCCESS": "success", "FAILURE": "failure", "ERROR": "error",
                "PENDING": "pending", "EXPECTED": "pending"}


def _own_pr(connection: dict[str, Any] | None,
            trusted: frozenset[str] = frozenset()) -> PullRequest | None:
    """The first PR of a branch's connection that is not from a fork, if any."""
    nodes = [n for n in (connection or {}).get("nodes") or []
             if n and not n.get("isCrossRepository")]
    return _pr_from_graphql(nodes[0], trusted) if nodes else None


def _opinions(n: dict[str, Any], trusted: frozenset[str] = frozenset()
              ) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """(login, approved | changes_requested) of each reviewer's latest opinionated review:
    those that count (accounts with write access, GitHub's `writersOnly`, and the project's
    trusted reviewers), and the others (shown to people, never acted on)."""
    def pairs(key: str) -> list[tuple[str, str]]:
        return [(((r.get("author") or {}).get("login") or "ghost"), str(r["state"]).lower())
                for r in (n.get(key) or {}).get("nodes") or []
                if r and r.get("state") in ("APPROVED", "CHANGES_REQUESTED")]

    counted = pairs("latestOpinionatedReviews")
    writers = {login for login, _ in counted}
    others = [x for x in pairs("others") if x[0] not in writers]
    counted += [x for x in others if x[0].lower() in trusted]
    return tuple(counted), tuple(x for x in others if x[0].lower() not in trusted)


def _pr_from_graphql(n: dict[str, Any], trusted: frozenset[str] = frozenset()) -> PullRequest:
    decision = n.get("reviewDecision")
    reviews, untrusted = _opinions(n, trusted)
    merge_state = n.get("mergeStateStatus")
    return PullRequest(
        number=int(n["number"]), url=n.get("url") or "", state=_STATE.get(n["state"], "open"),
        head_branch=n.get("headRefName") or "", head_sha=n.get("headRefOid") or "",
        base=n.get("baseRefName") or "main", title=n.get("title") or "",
        mergeable=_MERGEABLE.get(n.get("mergeable") or "", "unknown"),
        review_decision=decision.lower() if decision else None,
        checks=_checks_from_graphql(n), draft=bool(n.get("isDraft")),
        merge_state=merge_state.lower() if merge_state else "unknown", reviews=reviews,
        untrusted_reviews=untrusted,
        created_at=_epoch(n.get("createdAt")),
        review_count=int((n.get("reviews") or {}).get("totalCount") or 0),
        cross_repository=bool(n.get("isCrossRepository")), node_id=str(n.get("id") or ""),
        queue=str(entry.get("state") or "queued").lower()
        if (entry := n.get("mergeQueueEntry")) else None)


def _checks_from_graphql(n: dict[str, Any]) -> CheckSummary:
    """The head commit's status check rollup: its contexts (check runs and commit statuses)
    and the rollup's own state, which is the truth (contexts are only the first page)."""
    commits = (n.get("commits") or {}).get("nodes") or []
    rollup = ((commits[0].get("commit") or {}).get("statusCheckRollup") if commits else None) \
        or {}
    summary = CheckSummary.of([_check(c) for c in (rollup.get("contexts") or {}).get("nodes")
                               or []])
    state = rollup.get("state")
    if state in ("FAILURE", "ERROR") and summary.overall != "failing":
        return CheckSummary("failing", summary.checks)
    if state in ("PENDING", "EXPECTED") and summary.overall == "passing":
        return CheckSummary("pending", summary.checks)
    return summary


def _check(c: dict[str, Any]) -> Check:
    """A CheckRun (conclusion once COMPLETED) or a StatusContext (its state)."""
    if c.get("__typename") == "CheckRun":
        conclusion = (c.get("conclusion") or "").lower() or "pending"
        if c.get("status") not in (None, "COMPLETED"):
            conclusion = "pending"
        return Check(c.get("name") or "check", conclusion, c.get("detailsUrl") or "")
    return Check(c.get("context") or "status", _CHECK_STATE.get(c.get("state") or "", "pending"),
                 c.get("targetUrl") or "", c.get("description") or "")


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


