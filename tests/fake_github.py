"""A small git-backed fake GitHub that PyGithub talks to over real HTTP on 127.0.0.1.

PR head shas are read live from a real bare repository (an agent's `git push` moves the PR),
mergeability comes from `git merge-tree --write-tree`, and a merge writes a real merge commit.
It serves issues, labels, comments, pulls (with the `head=` filter), merges guarded by sha,
commit statuses, check runs with output and annotations, Actions job logs, reviews, review
comments and threads, "Closes #N" on merge, rate-limit headers, ETags, and the GraphQL queries
ao sends. It counts requests by kind and can fail a chosen fraction of them."""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from .helpers import http_server


def _git(bare: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(bare), *args], capture_output=True, text=True,
                          check=check)


@dataclass
class Repo:
    owner: str
    name: str
    bare: Path
    default_branch: str = "main"
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_number: int = 1
    check_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    threads: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    job_logs: dict[int, str] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    comment_edits: int = 0
    # branch protection, as GitHub documents it: with required reviews, reviewDecision is set
    # (APPROVED / CHANGES_REQUESTED / REVIEW_REQUIRED) and merges without approval are refused
    # with 405; without, reviewDecision is null whatever the reviews say
    require_reviews: bool = False
    # accounts with write access (collaborators with push, as `GET /collaborators` lists
    # them); GitHub counts only their reviews toward reviewDecision and `writersOnly`, and
    # answers authorAssociation OWNER for the owner, COLLABORATOR for these, NONE otherwise
    writers: set[str] = field(default_factory=lambda: {"reviewer", "ao-bot", "maintainer"})
    require_up_to_date: bool = False
    # required status checks (branch protection's `contexts`, as `GET /branches/{b}` shows
    # them): one that has not passed makes a PR BLOCKED and its merge refused; other failing
    # checks only make it UNSTABLE
    required_checks: tuple[str, ...] = ()
    # ruleset rules on the default branch, as `GET /rules/branches/{b}` lists them
    # ({"type": "required_signatures"}, ...); a required_status_checks rule adds its contexts
    # to the required checks, and every other rule here is one the fake's PRs do not meet
    rules: list[dict[str, Any]] = field(default_factory=list)
    allowed_methods: tuple[str, ...] = ("merge", "squash", "rebase")
    # GitHub's merge queue (a `merge_queue` rule in `rules`): the PR numbers queued, in order,
    # and each PR's RemovedFromMergeQueueEvents ({reason, createdAt, beforeCommit})
    queue: list[int] = field(default_factory=list)
    removals: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    # GitHub computes mergeability in the background: `mergeable` reads UNKNOWN for this many
    # polls after each new head
    unknown_polls: int = 0
    _unknown_left: dict[str, int] = field(default_factory=dict)

    @property
    def full(self) -> str:
        return f"{self.owner}/{self.name}"

    def head_sha(self, branch: str) -> str | None:
        p = _git(self.bare, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}",
                 check=False)
        return p.stdout.strip() or None


@dataclass
class FakeGitHub:
    url: str = ""
    repos: dict[str, Repo] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ("500", "timeout", "secondary")
    rate_limit: int = 5000
    valid_token: str | None = None  # when set, any other token is answered 401
    # GraphQL's primary rate limit, as GitHub documents it: HTTP 200, `errors[].type ==
    # "RATE_LIMITED"`, x-ratelimit-remaining 0 and the reset time; until this epoch second
    graphql_limited_until: float = 0.0
    # head branch names whose PR lookup GitHub answers with an error beside the others'
    # data (a partial answer: the field null, an error with its `path`)
    graphql_failing_heads: set[str] = field(default_factory=set)
    # the token's user: PRs opened through the API are theirs, and GitHub answers 422 to
    # their APPROVE or REQUEST_CHANGES on them ("Can not approve your own pull request")
    token_login: str = "ao-bot"
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    lock: threading.RLock = field(default_factory=threading.RLock)
    ids: Iterator[int] = field(default_factory=lambda: iter(range(1000, 10**9)))
    # a stand-in for GitHub Actions: called once for each new PR head, it returns
    # (conclusion, summary, log) and the result is posted as a check run named "ci"
    auto_ci: Callable[[Repo, str], tuple[str, str, str]] | None = None

    # ---- set-up helpers for tests --------------------------------------------------------

    def add_repo(self, full: str, bare: Path, default_branch: str = "main") -> Repo:
        owner, name = full.split("/")
        r = Repo(owner, name, bare, default_branch)
        self.repos[full] = r
        return r

    def api(self, path: str) -> str:
        return f"{self.url}{path}"

    def add_issue(self, repo: Repo, title: str, body: str = "",
                  login: str = "maintainer") -> dict[str, Any]:
        with self.lock:
            n = repo.next_number
            repo.next_number += 1
            issue = {"number": n, "title": title, "body": body, "state": "open",
                     "state_reason": None, "labels": [], "user": {"login": login}}
            repo.issues[n] = issue
            return issue

    def add_check_run(self, repo: Repo, sha: str, name: str, conclusion: str | None,
                      summary: str = "", annotations: list[dict[str, Any]] | None = None,
                      log: str = "") -> int:
        rid = next(self.ids)
        repo.check_runs.setdefault(sha, []).append({
            "id": rid, "name": name, "status": "completed" if conclusion else "in_progress",
            "conclusion": conclusion, "summary": summary, "annotations": annotations or []})
        if log:
            repo.job_logs[rid] = log
        return rid

    def add_status(self, repo: Repo, sha: str, context: str, state: str,
                   description: str = "") -> None:
        repo.statuses.setdefault(sha, []).append(
            {"context": context, "state": state, "description": description,
             "target_url": f"{self.url}/ci/{context}"})

    def add_review(self, repo: Repo, pr: int, state: str, body: str = "",
                   comments: list[tuple[str, int, str]] = (),  # type: ignore[assignment]
                   login: str = "reviewer") -> None:
        repo.reviews.setdefault(pr, []).append(
            {"id": f"R_{next(self.ids)}", "state": state, "body": body,
             "user": {"login": login}, "submitted_at": _now()})
        for path, line, text in comments:
            repo.threads.setdefault(pr, []).append(
                {"isResolved": False, "comments": {"nodes": [{
                    "id": f"C_{next(self.ids)}", "body": text, "path": path, "line": line,
                    "author": {"login": login}, "createdAt": _now()}]}})

    # ---- JSON shapes ---------------------------------------------------------------------

    def _issue_json(self, repo: Repo, i: dict[str, Any]) -> dict[str, Any]:
        base = f"/repos/{repo.full}/issues/{i['number']}"
        return {**i, "id": i["number"], "url": self.api(base),
                "author_association": self.association(repo, i["user"]["login"]),
                "html_url": f"{self.url}/{repo.full}/issues/{i['number']}",
                "labels": [{"name": n, "url": self.api(f"/repos/{repo.full}/labels/{n}")}
                           for n in i["labels"]],
                "comments_url": self.api(base + "/comments"),
                "repository_url": self.api(f"/repos/{repo.full}")}

    def _pr_live(self, repo: Repo, pr: dict[str, Any]) -> dict[str, Any]:
        if pr["state"] == "open":
            live = repo.head_sha(pr["head"])
            if live:
                pr["head_sha"] = live
        return pr

    def _mergeable(self, repo: Repo, pr: dict[str, Any]) -> bool | None:
        if pr["state"] != "open":
            return None
        base = repo.head_sha(repo.default_branch)
        p = _git(repo.bare, "merge-tree", "--write-tree", base or "", pr["head_sha"],
                 check=False)
        return p.returncode == 0

    def _create_review(self, repo: Repo, pr: dict[str, Any], body: dict[str, Any]
                       ) -> tuple[int, Any, dict[str, str]]:
        """POST /repos/{o}/{r}/pulls/{n}/reviews as GitHub documents it: event APPROVE,
        REQUEST_CHANGES or COMMENT; a body is required for the last two; each comment needs
        path, body and line (or subject_type file); a PR's author cannot approve or request
        changes on their own PR (422)."""
        event = body.get("event")
        if event not in ("APPROVE", "REQUEST_CHANGES", "COMMENT"):
            return 422, {"message": "Unprocessable Entity",
                         "errors": ["event must be APPROVE, REQUEST_CHANGES or COMMENT"]}, {}
        if event != "APPROVE" and not (body.get("body") or "").strip():
            return 422, {"message": "Unprocessable Entity",
                         "errors": [f"Body is required for {event}"]}, {}
        if event != "COMMENT" and pr.get("user", "agent") == self.token_login:
            verb = "approve" if event == "APPROVE" else "request changes on"
            return 422, {"message": "Unprocessable Entity",
                         "errors": [f"Can not {verb} your own pull request"]}, {}
        for c in body.get("comments") or []:
            if not c.get("path") or not c.get("body") or (
                    not c.get("line") and c.get("subject_type") != "file"):
                return 422, {"message": "Unprocessable Entity",
                             "errors": ["Pull request review thread line must be part of "
                                        "the diff"]}, {}
        state = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED",
                 "COMMENT": "COMMENTED"}[event]
        self.add_review(repo, pr["number"], state, body.get("body") or "",
                        [(c["path"], c.get("line"), c["body"]) for c in
                         body.get("comments") or []], login=self.token_login)
        r = repo.reviews[pr["number"]][-1]
        return 200, {"id": r["id"], "state": state, "body": r["body"],
                     "user": r["user"], "commit_id": body.get("commit_id")}, {}

    def _pr_json(self, repo: Repo, pr: dict[str, Any]) -> dict[str, Any]:
        pr = self._pr_live(repo, pr)
        n = pr["number"]
        return {
            "id": n, "number": n, "url": self.api(f"/repos/{repo.full}/pulls/{n}"),
            "html_url": f"{self.url}/{repo.full}/pull/{n}", "state": pr["state"] if
            pr["state"] != "merged" else "closed", "title": pr["title"], "body": pr["body"],
            "merged": pr["state"] == "merged", "mergeable": self._mergeable(repo, pr),
            "merge_commit_sha": pr.get("merge_sha"), "user": {"login": pr.get("user", "agent")},
            "head": {"ref": pr["head"], "sha": pr["head_sha"],
                     "label": f"{repo.owner}:{pr['head']}"},
            "base": {"ref": pr.get("base") or repo.default_branch,
                     "sha": repo.head_sha(repo.default_branch) or ""},
        }

    def _rules_json(self, repo: Repo) -> list[dict[str, Any]]:
        """`GET /rules/branches/{b}`: every active ruleset rule on the branch, each with the
        ruleset it comes from."""
        rules = list(repo.rules)
        if repo.require_reviews:
            rules.insert(0, {"type": "pull_request", "parameters": {
                "required_approving_review_count": 1, "dismiss_stale_reviews_on_push": False,
                "require_code_owner_review": False, "require_last_push_approval": False,
                "required_review_thread_resolution": False}})
        return [{**r, "ruleset_source_type": "Repository", "ruleset_source": repo.full,
                 "ruleset_id": 7} for r in rules]

    def _branch_json(self, repo: Repo, name: str) -> dict[str, Any]:
        """`GET /branches/{b}`: classic branch protection's summary (readable with read
        access): `protected`, and the required status checks' contexts."""
        protected = bool(repo.required_checks)
        return {"name": name, "commit": {"sha": repo.head_sha(name) or ""},
                "protected": protected, "protection": {
                    "enabled": protected, "required_status_checks": {
                        "enforcement_level": "non_admins" if protected else "off",
                        "contexts": list(repo.required_checks),
                        "checks": [{"context": c, "app_id": None}
                                   for c in repo.required_checks]}}}

    def _comment_json(self, repo: Repo, c: dict[str, Any]) -> dict[str, Any]:
        url = self.api(f"/repos/{repo.full}/issues/comments/{c['id']}")
        return {"id": c["id"], "body": c["body"], "user": c["user"], "url": url,
                "html_url": f"{self.url}/{repo.full}/issues/{c['issue']}#issuecomment-{c['id']}",
                "issue_url": self.api(f"/repos/{repo.full}/issues/{c['issue']}"),
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                "author_association": self.association(repo, c["user"]["login"])}

    def _check_run_json(self, repo: Repo, sha: str, c: dict[str, Any]) -> dict[str, Any]:
        rid = c["id"]
        url = self.api(f"/repos/{repo.full}/check-runs/{rid}")
        return {"id": rid, "name": c["name"], "status": c["status"],
                "conclusion": c["conclusion"], "head_sha": sha, "url": url,
                "html_url": f"{self.url}/{repo.full}/actions/runs/1/job/{rid}",
                "details_url": f"{self.url}/{repo.full}/actions/runs/1/job/{rid}",
                "output": {"title": c["name"], "summary": c["summary"], "text": None,
                           "annotations_count": len(c["annotations"]),
                           "annotations_url": url + "/annotations"}}

    def _rollup(self, repo: Repo, sha: str) -> dict[str, Any] | None:
        nodes: list[dict[str, Any]] = []
        for c in repo.check_runs.get(sha, []):
            nodes.append({"__typename": "CheckRun", "name": c["name"],
                          "status": c["status"].upper(),
                          "conclusion": (c["conclusion"] or "").upper() or None,
                          "detailsUrl": f"{self.url}/job/{c['id']}", "databaseId": c["id"]})
        for s in repo.statuses.get(sha, []):
            nodes.append({"__typename": "StatusContext", "context": s["context"],
                          "state": s["state"].upper(), "targetUrl": s["target_url"],
                          "description": s["description"]})
        if not nodes:
            return None
        states = [n.get("conclusion") or n.get("state") for n in nodes]
        if any(x in ("FAILURE", "ERROR", "TIMED_OUT", "CANCELLED") for x in states):
            overall = "FAILURE"
        elif any(x in (None, "PENDING") for x in states):
            overall = "PENDING"
        else:
            overall = "SUCCESS"
        # `contexts(first: 100)`: GitHub gives the first page; the state covers them all
        return {"state": overall, "contexts": {"nodes": nodes[:100],
                                               "totalCount": len(nodes)}}

    def _latest_opinions(self, repo: Repo, n: int, writers_only: bool = False
                         ) -> dict[str, str]:
        """The latest APPROVED / CHANGES_REQUESTED review of each reviewer (GraphQL's
        latestOpinionatedReviews; `writersOnly`: of accounts with write access only)."""
        out: dict[str, str] = {}
        for r in repo.reviews.get(n, []):
            if r["state"] in ("APPROVED", "CHANGES_REQUESTED") and (
                    not writers_only or self._can_write(repo, r["user"]["login"])):
                out[r["user"]["login"]] = r["state"]
        return out

    def _can_write(self, repo: Repo, login: str) -> bool:
        return login == repo.owner or login in repo.writers

    def association(self, repo: Repo, login: str) -> str:
        """GitHub's CommentAuthorAssociation of `login` on the repository."""
        return "OWNER" if login == repo.owner else \
            "COLLABORATOR" if login in repo.writers else "NONE"

    def _decision(self, repo: Repo, n: int) -> str | None:
        if not repo.require_reviews:
            return None  # GitHub: null when the base branch requires no review
        # only reviews by accounts with write access count toward required approvals
        opinions = set(self._latest_opinions(repo, n, writers_only=True).values())
        if "CHANGES_REQUESTED" in opinions:
            return "CHANGES_REQUESTED"
        return "APPROVED" if "APPROVED" in opinions else "REVIEW_REQUIRED"

    def _merge_state(self, repo: Repo, pr: dict[str, Any], mergeable: str,
                     rollup: dict[str, Any] | None) -> str:
        if pr["state"] != "open":
            return "UNKNOWN"
        if pr.get("draft"):
            return "DRAFT"
        if mergeable == "UNKNOWN":
            return "UNKNOWN"
        if mergeable == "CONFLICTING":
            return "DIRTY"
        if repo.require_reviews and self._decision(repo, pr["number"]) != "APPROVED":
            return "BLOCKED"
        if self._unmet(repo, pr["head_sha"]) or self._other_rules(repo):
            return "BLOCKED"
        base = repo.head_sha(repo.default_branch) or ""
        if repo.require_up_to_date and _git(repo.bare, "merge-base", "--is-ancestor", base,
                                            pr["head_sha"], check=False).returncode != 0:
            return "BEHIND"
        if rollup is not None and rollup["state"] in ("FAILURE", "ERROR"):
            return "UNSTABLE"  # no required checks here: failing ones only make it unstable
        return "CLEAN"

    @staticmethod
    def _required(repo: Repo) -> list[str]:
        by_rules = [c["context"] for r in repo.rules if r["type"] == "required_status_checks"
                    for c in r.get("parameters", {}).get("required_status_checks", [])]
        return list(dict.fromkeys([*repo.required_checks, *by_rules]))

    @staticmethod
    def _other_rules(repo: Repo) -> list[dict[str, Any]]:
        return [r for r in repo.rules if r["type"] not in ("required_status_checks",
                                                            "pull_request", "merge_queue")]

    @staticmethod
    def queue_required(repo: Repo) -> bool:
        return any(r["type"] == "merge_queue" for r in repo.rules)

    def process_queue(self, repo: Repo, failing: set[int] = frozenset()  # type: ignore[assignment]
                      ) -> list[int]:
        """What GitHub's merge queue does once the checks of its merge groups are in: each
        queued PR, in order, merged onto the base (and the groups ahead of it); a group whose
        PR is in `failing` gets a failing "ci" check run on its commit and the PR is removed
        (`failed_checks`), as is one that no longer merges (`merge_conflict`). Every removal,
        a merge's too, is a RemovedFromMergeQueueEvent on the PR's timeline. The merged PRs."""
        merged = []
        with self.lock:
            for n in list(repo.queue):
                pr = repo.pulls[n]
                base = repo.head_sha(repo.default_branch) or ""
                group = self._merge_commit(repo, pr, base, f"Merge group: PR #{n}")
                repo.queue.remove(n)
                reason = "merged"
                if group is None:
                    reason = "merge_conflict"
                elif n in failing:
                    reason = "failed_checks"
                    self.add_check_run(repo, group, "ci", "failure", "tests fail on the group",
                                       log="FAILED test_main.py::test_all - the group breaks")
                else:
                    _git(repo.bare, "update-ref", f"refs/heads/{repo.default_branch}", group,
                         base)
                    pr.update(state="merged", merge_sha=group)
                    merged.append(n)
                repo.removals.setdefault(n, []).append({
                    "reason": reason, "createdAt": _now(),  # GitHub's words: failed_checks...
                    "beforeCommit": {"oid": group} if group else None})
        return merged

    def _merge_commit(self, repo: Repo, pr: dict[str, Any], base: str, message: str
                      ) -> str | None:
        """The merge of the PR's head onto `base` (None when it conflicts)."""
        p = _git(repo.bare, "merge-tree", "--write-tree", base, pr["head_sha"], check=False)
        if p.returncode != 0:
            return None
        return subprocess.run(
            ["git", "-C", str(repo.bare), "-c", "user.name=fake", "-c",
             "user.email=fake@example.invalid", "commit-tree", p.stdout.split("\n", 1)[0],
             "-p", base, "-p", pr["head_sha"], "-m", message],
            capture_output=True, text=True, check=True).stdout.strip()

    def _enqueue(self, variables: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        """`enqueuePullRequest`, as GitHub's schema and docs define it: the PR by its node id,
        refused (UNPROCESSABLE) when the head is not `expectedHeadOid`, the branch has no merge
        queue, or the PR does not meet the branch's rules."""
        def refused(message: str) -> tuple[int, Any, dict[str, str]]:
            return 200, {"data": {"enqueuePullRequest": None}, "errors": [
                {"type": "UNPROCESSABLE", "path": ["enqueuePullRequest"], "message": message}]}, {}

        for repo in self.repos.values():
            for pr in repo.pulls.values():
                if _node_id(repo, pr["number"]) != variables.get("pr"):
                    continue
                self._pr_live(repo, pr)
                if not self.queue_required(repo):
                    return refused("Merge queue is not enabled for this branch")
                if variables.get("sha") and variables["sha"] != pr["head_sha"]:
                    return refused("Head sha didn't match expected head sha")
                if pr["state"] != "open" or self._unmet(repo, pr["head_sha"]) or (
                        repo.require_reviews and self._decision(repo, pr["number"]) != "APPROVED"):
                    return refused(f"Pull request #{pr['number']} is not mergeable")
                if pr["number"] not in repo.queue:
                    repo.queue.append(pr["number"])
                return 200, {"data": {"enqueuePullRequest": {"mergeQueueEntry": self._entry(
                    repo, pr["number"])}}}, {}
        return 200, {"data": {"enqueuePullRequest": None}, "errors": [
            {"type": "NOT_FOUND", "path": ["enqueuePullRequest"],
             "message": "Could not resolve to a node with the global id of "
                        f"'{variables.get('pr')}'"}]}, {}

    @staticmethod
    def _entry(repo: Repo, n: int) -> dict[str, Any] | None:
        return {"state": "QUEUED", "position": repo.queue.index(n) + 1} \
            if n in repo.queue else None

    def _unmet(self, repo: Repo, sha: str) -> list[tuple[str, str]]:
        """Required checks that have not passed: (context, "failing" | "pending" |
        "expected"), as GitHub's merge refusal names them."""
        states = {c["name"]: c["conclusion"] or "pending" for c in repo.check_runs.get(sha, [])}
        states |= {s["context"]: s["state"] for s in repo.statuses.get(sha, [])}
        out = []
        for name in self._required(repo):
            st = states.get(name)
            if st != "success":
                out.append((name, "expected" if st is None else "pending"
                            if st == "pending" else "failing"))
        return out

    @staticmethod
    def _opinion_fields(query: str) -> list[tuple[str, bool]]:
        """The query's latestOpinionatedReviews fields: (alias or name, writersOnly)."""
        found = re.findall(r"(?:(\w+): )?latestOpinionatedReviews\(([^)]*)\)", query)
        return [(alias or "latestOpinionatedReviews", "writersOnly: true" in args)
                for alias, args in found] or [("latestOpinionatedReviews", False)]

    def _pr_graphql(self, repo: Repo, pr: dict[str, Any], query: str = "") -> dict[str, Any]:
        pr = self._pr_live(repo, pr)
        if self.auto_ci and pr["state"] == "open" and pr["head_sha"] not in repo.check_runs:
            conclusion, summary, log = self.auto_ci(repo, pr["head_sha"])
            self.add_check_run(repo, pr["head_sha"], "ci", conclusion, summary, log=log)
        m = self._mergeable(repo, pr)
        mergeable = "UNKNOWN" if m is None else "MERGEABLE" if m else "CONFLICTING"
        key = f"{pr['number']}:{pr['head_sha']}"
        left = repo._unknown_left.setdefault(key, repo.unknown_polls)
        if left > 0 and pr["state"] == "open":
            repo._unknown_left[key] = left - 1
            mergeable = "UNKNOWN"
        rollup = self._rollup(repo, pr["head_sha"])
        return {
            "id": _node_id(repo, pr["number"]), "mergeQueueEntry": self._entry(repo, pr["number"]),
            "number": pr["number"], "url": f"{self.url}/{repo.full}/pull/{pr['number']}",
            "state": pr["state"].upper(), "title": pr["title"], "headRefName": pr["head"],
            "headRefOid": pr["head_sha"], "baseRefName": pr.get("base") or repo.default_branch,
            "mergeable": mergeable,
            "reviewDecision": self._decision(repo, pr["number"]),
            "isDraft": bool(pr.get("draft")), "isCrossRepository": bool(pr.get("fork")),
            "createdAt": pr.get("created_at") or "2026-01-01T00:00:00Z",
            "mergeStateStatus": self._merge_state(repo, pr, mergeable, rollup),
            **{alias: {"nodes": [
                {"state": st, "author": {"login": who},
                 "authorAssociation": self.association(repo, who)}
                for who, st in self._latest_opinions(repo, pr["number"], writers).items()]}
               for alias, writers in self._opinion_fields(query)},
            "commits": {"nodes": [{"commit": {"statusCheckRollup": rollup}}]},
            "reviews": {"totalCount": len(repo.reviews.get(pr["number"], []))},
        }

    # ---- request handling ----------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               body: Any) -> tuple[int, Any, dict[str, str]]:
        if path == "/graphql":
            return self._graphql(body)
        if path == "/user":  # the token's own account
            return 200, {"login": self.token_login, "id": 1, "type": "User",
                         "url": self.api(f"/users/{self.token_login}")}, {}
        if path == "/rate_limit":
            return 200, {"resources": {"core": {"remaining": self.rate_limit}}}, {}
        m = re.match(r"^/_logs/(\d+)$", path)
        if m:
            for repo in self.repos.values():
                if int(m.group(1)) in repo.job_logs:
                    return 200, repo.job_logs[int(m.group(1))], {"content-type": "text/plain"}
            return 404, {"message": "Not Found"}, {}
        m = re.match(r"^/repos/([^/]+/[^/]+)(/.*)?$", path)
        if not m or m.group(1) not in self.repos:
            return 404, {"message": "Not Found"}, {}
        repo = self.repos[m.group(1)]
        rest = m.group(2) or ""
        with self.lock:
            return self._repo_route(repo, method, rest, query, body)

    def _repo_route(self, repo: Repo, method: str, rest: str, query: dict[str, list[str]],
                    body: Any) -> tuple[int, Any, dict[str, str]]:
        q = {k: v[0] for k, v in query.items()}
        if rest == "" and method == "GET":
            return 200, {"full_name": repo.full, "name": repo.name, "owner": {
                "login": repo.owner}, "url": self.api(f"/repos/{repo.full}"),
                "default_branch": repo.default_branch,
                "allow_merge_commit": "merge" in repo.allowed_methods,
                "allow_squash_merge": "squash" in repo.allowed_methods,
                "allow_rebase_merge": "rebase" in repo.allowed_methods}, {}
        if rest == "/issues" and method == "GET":
            # `labels=a,b`: issues carrying every label named (GitHub's documented filter)
            wanted = [x for x in q.get("labels", "").split(",") if x]
            items = [self._issue_json(repo, i) for i in sorted(repo.issues.values(),
                                                                key=lambda i: -i["number"])
                     if q.get("state", "open") in ("all", i["state"])
                     and all(w in i["labels"] for w in wanted)]
            return self._page(f"/repos/{repo.full}/issues", items, q)
        if rest == "/issues" and method == "POST":
            issue = self.add_issue(repo, body["title"], body.get("body") or "",
                                   login=self.token_login)
            issue["labels"] = list(body.get("labels") or [])
            return 201, self._issue_json(repo, issue), {}
        m = re.match(r"^/issues/comments/(\d+)$", rest)
        if m:  # one comment: GET it, or PATCH its body (its author's token only)
            found = next((c for cs in repo.comments.values() for c in cs
                          if c["id"] == int(m.group(1))), None)
            if found is None:
                return 404, {"message": "Not Found"}, {}
            if method == "PATCH":
                if found["user"]["login"] != self.token_login:
                    return 403, {"message": "Must have admin rights to Repository."}, {}
                found["body"] = body["body"]
                repo.comment_edits += 1
            return 200, self._comment_json(repo, found), {}
        m = re.match(r"^/issues/(\d+)(/comments|/labels|/dependencies/blocked_by|"
                     r"/sub_issues)?$", rest)
        if m:
            n = int(m.group(1))
            issue = repo.issues.get(n)
            if issue is None:
                return 404, {"message": "Not Found"}, {}
            if m.group(2) in ("/dependencies/blocked_by", "/sub_issues") and method == "GET":
                # the issues blocking this one / its sub-issues, as issue objects, paginated
                key = "blocked_by" if m.group(2).startswith("/dep") else "sub_issues"
                items = [self._issue_json(repo, repo.issues[k]) for k in issue.get(key, [])
                         if k in repo.issues]
                return self._page(f"/repos/{repo.full}/issues/{n}{m.group(2)}", items, q)
            if m.group(2) == "/comments" and method == "POST":
                c = {"id": next(self.ids), "body": body["body"], "issue": n,
                     "user": {"login": self.token_login}}
                repo.comments.setdefault(n, []).append(c)
                return 201, self._comment_json(repo, c), {}
            if m.group(2) == "/comments":  # GET: the issue's comments, oldest first, paginated
                return self._page(f"/repos/{repo.full}/issues/{n}/comments",
                                  [self._comment_json(repo, c) for c in
                                   repo.comments.get(n, [])], q)
            if m.group(2) == "/labels" and method == "POST":
                names = body if isinstance(body, list) else body.get("labels", [])
                issue["labels"] = sorted(set(issue["labels"]) | set(names))
                return 200, self._issue_json(repo, issue)["labels"], {}
            if method == "PATCH":
                for k in ("state", "state_reason", "title", "body"):
                    if k in body:
                        issue[k] = body[k]
            return 200, self._issue_json(repo, issue), {}
        if rest == "/pulls" and method == "GET":
            head = q.get("head", "")
            owner, branch = head.split(":", 1) if ":" in head else ("", head)
            # `head=owner:branch` filters by the head's owner: a fork's PR has another one
            items = [self._pr_json(repo, p) for p in repo.pulls.values()
                     if (not branch or p["head"] == branch)
                     and (not owner or (owner == repo.owner) != bool(p.get("fork")))
                     and q.get("state", "open") in ("all", self._pr_json(repo, p)["state"])]
            return self._page(f"/repos/{repo.full}/pulls", items, q)
        if rest == "/pulls" and method == "POST":
            sha = repo.head_sha(body["head"])
            if sha is None:
                return 422, {"message": "Validation Failed", "errors": [
                    {"message": f"No commits between main and {body['head']}"}]}, {}
            n = repo.next_number
            repo.next_number += 1
            repo.pulls[n] = {"number": n, "title": body["title"], "body": body.get("body") or "",
                             "head": body["head"], "head_sha": sha, "state": "open",
                             "base": body.get("base") or repo.default_branch,
                             "draft": bool(body.get("draft")), "fork": False,
                             "user": self.token_login,
                             "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            return 201, self._pr_json(repo, repo.pulls[n]), {}
        m = re.match(r"^/pulls/(\d+)(/merge|/reviews|/comments|/update-branch)?$", rest)
        if m:
            pr = repo.pulls.get(int(m.group(1)))
            if pr is None:
                return 404, {"message": "Not Found"}, {}
            if m.group(2) == "/merge" and method == "PUT":
                return self._merge(repo, pr, body or {})
            if m.group(2) == "/update-branch" and method == "PUT":
                return self._update_branch(repo, pr, body or {})
            if m.group(2) == "/reviews" and method == "POST":
                return self._create_review(repo, pr, body or {})
            if m.group(2) == "/reviews":
                return 200, [{"id": i, "state": r["state"], "body": r["body"],
                              "user": r["user"]} for i, r in
                             enumerate(repo.reviews.get(pr["number"], []))], {}
            if m.group(2) == "/comments":
                return 200, [c for t in repo.threads.get(pr["number"], [])
                             for c in t["comments"]["nodes"]], {}
            return 200, self._pr_json(repo, pr), {}
        m = re.match(r"^/compare/([0-9a-f]{7,40})\.\.\.([0-9a-f]{7,40})$", rest)
        if m:  # the commits reachable from head and not from base, oldest first, parents
            out = _git(repo.bare, "rev-list", "--reverse", "--parents",
                       f"{m.group(1)}..{m.group(2)}", check=False).stdout.split("\n")
            commits = [{"sha": line.split()[0], "parents": [{"sha": p} for p in
                                                            line.split()[1:]]}
                       for line in out if line.strip()]
            return 200, {"status": "ahead", "ahead_by": len(commits),
                         "total_commits": len(commits), "commits": commits[-250:]}, {}
        m = re.match(r"^/commits/([0-9a-f]{7,40})(/check-runs|/status|/pulls)?$", rest)
        if m and m.group(2) == "/pulls":  # the PRs a commit belongs to (a merge's PR too)
            return 200, [self._pr_json(repo, p) | {"merged_at": "2026-01-01T00:00:00Z"}
                         for p in repo.pulls.values() if p.get("merge_sha") == m.group(1)], {}
        if m:
            sha = m.group(1)
            path = f"/repos/{repo.full}/commits/{sha}{m.group(2)}"
            if m.group(2) == "/check-runs":  # paginated: 30 a page unless per_page (≤ 100)
                runs = [self._check_run_json(repo, sha, c) for c in repo.check_runs.get(sha, [])]
                _, chunk, link = self._page(path, runs, q)
                return 200, {"total_count": len(runs), "check_runs": chunk}, link
            if m.group(2) == "/status":  # the combined status: its statuses paginated too
                sts = repo.statuses.get(sha, [])
                state = "failure" if any(s["state"] in ("failure", "error") for s in sts) \
                    else "pending" if any(s["state"] == "pending" for s in sts) else "success"
                _, chunk, link = self._page(path, sts, q)
                return 200, {"state": state, "sha": sha, "total_count": len(sts),
                             "statuses": chunk, "url": self.api(path)}, link
            return 200, {"sha": sha, "url": self.api(f"/repos/{repo.full}/commits/{sha}"),
                         "commit": {"message": ""}}, {}
        m = re.match(r"^/(rules/)?branches/([^/]+)$", rest)
        if m and method == "GET":
            return 200, (self._rules_json(repo) if m.group(1) else
                         self._branch_json(repo, m.group(2))), {}
        m = re.match(r"^/check-runs/(\d+)/annotations$", rest)
        if m:
            for runs in repo.check_runs.values():
                for c in runs:
                    if c["id"] == int(m.group(1)):
                        return 200, c["annotations"], {}
            return 404, {"message": "Not Found"}, {}
        m = re.match(r"^/actions/jobs/(\d+)/logs$", rest)
        if m:
            return 302, "", {"location": f"{self.url}/_logs/{m.group(1)}"}
        return 404, {"message": f"fake GitHub has no {method} {rest}"}, {}

    def _page(self, path: str, items: list[Any], q: dict[str, str]
              ) -> tuple[int, Any, dict[str, str]]:
        per = int(q.get("per_page", 30))
        page = int(q.get("page", 1))
        chunk = items[(page - 1) * per: page * per]
        headers = {}
        if page * per < len(items):
            rest = "&".join(f"{k}={v}" for k, v in q.items() if k != "page")
            headers["link"] = f'<{self.api(path)}?{rest}&page={page + 1}>; rel="next"'
        return 200, chunk, headers

    def _merge(self, repo: Repo, pr: dict[str, Any], body: dict[str, Any]
               ) -> tuple[int, Any, dict[str, str]]:
        self._pr_live(repo, pr)
        if pr["state"] != "open":
            return 405, {"message": "Pull Request is not mergeable"}, {}
        if body.get("sha") and body["sha"] != pr["head_sha"]:
            return 409, {"message": "Head branch was modified. Review and try the merge again."}, {}
        method = body.get("merge_method") or "merge"
        if method not in repo.allowed_methods:
            what = {"merge": "Merge commits", "squash": "Squash merges",
                    "rebase": "Rebase merges"}.get(method, method)
            return 405, {"message": f"{what} are not allowed on this repository."}, {}
        if pr.get("draft"):
            return 405, {"message": "Pull Request is still a draft"}, {}
        if pr["number"] in repo.queue:
            return 405, {"message": "Pull Request is in the merge queue"}, {}
        if self.queue_required(repo):
            return 405, {"message": "Repository rule violations found\n\nChanges must be made "
                                    "through the merge queue"}, {}
        if repo.require_reviews and self._decision(repo, pr["number"]) != "APPROVED":
            return 405, {"message": "At least 1 approving review is required by reviewers "
                                    "with write access."}, {}
        unmet = self._unmet(repo, pr["head_sha"])
        if unmet:
            return 405, {"message": f'Required status check "{unmet[0][0]}" is '
                                    f"{unmet[0][1]}."}, {}
        if self._other_rules(repo):
            return 405, {"message": "Repository rule violations found"}, {}
        base = repo.head_sha(repo.default_branch) or ""
        if repo.require_up_to_date and _git(repo.bare, "merge-base", "--is-ancestor", base,
                                            pr["head_sha"], check=False).returncode != 0:
            return 405, {"message": "Head branch is out of date. Review and try the merge "
                                    "again."}, {}
        commit = self._merge_commit(repo, pr, base,
                                    f"Merge pull request #{pr['number']} from {pr['head']}")
        if commit is None:
            return 405, {"message": "Pull Request is not mergeable"}, {}
        _git(repo.bare, "update-ref", f"refs/heads/{repo.default_branch}", commit, base)
        pr.update(state="merged", merge_sha=commit)
        for n in re.findall(r"(?i)\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s+#(\d+)",
                            pr["body"]):
            if int(n) in repo.issues:
                repo.issues[int(n)].update(state="closed", state_reason="completed")
        return 200, {"sha": commit, "merged": True,
                     "message": "Pull Request successfully merged"}, {}

    def _update_branch(self, repo: Repo, pr: dict[str, Any], body: dict[str, Any]
                       ) -> tuple[int, Any, dict[str, str]]:
        """PUT /pulls/N/update-branch, as documented: 202 and a merge of the base branch into
        the head (a new head sha); 422 when `expected_head_sha` is not the head, or the merge
        conflicts."""
        self._pr_live(repo, pr)
        if body.get("expected_head_sha") and body["expected_head_sha"] != pr["head_sha"]:
            return 422, {"message": "expected head sha didn't match current head ref."}, {}
        base = repo.head_sha(repo.default_branch) or ""
        p = _git(repo.bare, "merge-tree", "--write-tree", pr["head_sha"], base, check=False)
        if p.returncode != 0:
            return 422, {"message": "merge conflict between base and head"}, {}
        commit = subprocess.run(
            ["git", "-C", str(repo.bare), "-c", "user.name=fake", "-c",
             "user.email=fake@example.invalid", "commit-tree", p.stdout.split("\n", 1)[0],
             "-p", pr["head_sha"], "-p", base, "-m",
             f"Merge branch '{repo.default_branch}' into {pr['head']}"],
            capture_output=True, text=True, check=True).stdout.strip()
        _git(repo.bare, "update-ref", f"refs/heads/{pr['head']}", commit, pr["head_sha"])
        pr["head_sha"] = commit
        return 202, {"message": "Updating pull request branch.",
                     "url": f"{self.url}/repos/{repo.full}/pulls/{pr['number']}"}, {}

    def _graphql(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        query, variables = body["query"], body.get("variables") or {}
        if "mutation AoEnqueue" in query:
            with self.lock:
                return self._enqueue(variables)
        repo = self.repos.get(f"{variables.get('owner')}/{variables.get('name')}")
        if repo is None:
            return 200, {"errors": [{"type": "NOT_FOUND", "message": "no such repository"}]}, {}
        with self.lock:
            if time.time() < self.graphql_limited_until:
                return 200, {"errors": [{"type": "RATE_LIMITED", "message": "API rate limit "
                                         "already exceeded for user ID 1."}]}, {
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": str(int(self.graphql_limited_until))}
            if "query AoPoll" in query:
                out: dict[str, Any] = {}
                errors = []
                for alias, var in re.findall(r"(\w+): pullRequests\(headRefName: \$(\w+)", query):
                    if variables[var] in self.graphql_failing_heads:
                        out[alias] = None
                        errors.append({"type": "FORBIDDEN", "path": ["repository", alias],
                                       "locations": [{"line": 1, "column": 1}],
                                       "message": "Resource not accessible by integration"})
                        continue
                    # GitHub matches headRefName in forks too: a stranger's PR can be here
                    prs = [p for p in repo.pulls.values() if p["head"] == variables[var]]
                    prs.sort(key=lambda p: -p["number"])
                    found = re.search(rf"headRefName: \${var}, first: (\d+)", query)
                    first = int(found.group(1)) if found else 1
                    out[alias] = {"nodes": [self._pr_graphql(repo, p, query)
                                            for p in prs[:first]]}
                if "main: object(expression: $main)" in query:  # a commit's oid and checks
                    sha = repo.head_sha(str(variables["main"]).removeprefix("refs/heads/"))
                    out["main"] = {"oid": sha, "statusCheckRollup": self._rollup(repo, sha)} \
                        if sha else None
                answer: dict[str, Any] = {"data": {"rateLimit": {
                    "remaining": self.rate_limit, "resetAt": "2030-01-01T00:00:00Z"},
                    "repository": out}}
                if errors:
                    answer["errors"] = errors
                return 200, answer, {}
            if "query AoPr(" in query:
                found = repo.pulls.get(int(variables["number"]))
                return 200, {"data": {"repository": {"pullRequest": self._pr_graphql(
                    repo, found, query) if found else None}}}, {}
            if "query AoQueueRemoval" in query:
                n = int(variables["number"])
                return 200, {"data": {"repository": {"pullRequest": {
                    "mergeQueueEntry": self._entry(repo, n),
                    "timelineItems": {"nodes": repo.removals.get(n, [])[-1:]}}}}}, {}
            if "query AoThreads" in query:
                n = int(variables["number"])
                reviews = [{"id": r["id"], "state": r["state"], "body": r["body"],
                            "author": {"login": r["user"]["login"]},
                            "authorAssociation": self.association(repo, r["user"]["login"]),
                            "submittedAt": r["submitted_at"]} for r in repo.reviews.get(n, [])]
                threads = [{**t, "comments": {"nodes": [
                    {**c, "authorAssociation": self.association(repo, c["author"]["login"])}
                    for c in t["comments"]["nodes"]]}} for t in repo.threads.get(n, [])]
                return 200, {"data": {"repository": {"pullRequest": {
                    "reviews": {"nodes": reviews},
                    "reviewThreads": {"nodes": threads}}}}}, {}
        return 200, {"errors": [{"message": "fake GitHub does not know this query"}]}, {}


_ID = re.compile(r"/[0-9a-f]{40}|/\d+")


def deliver(url: str, secret: str | None, event: str, payload: dict[str, Any],
            signed_with: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A webhook delivery as GitHub sends it (its documented headers): a JSON body, the event
    name, a delivery GUID, and `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body>` with
    the webhook's secret (`signed_with` a different one forges it; None sends none)."""
    import hashlib
    import hmac
    import urllib.error
    import urllib.request
    import uuid

    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/7f3e2a1",
               "X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()),
               "X-GitHub-Hook-ID": "1"}
    key = signed_with if signed_with is not None else secret
    if key is not None:
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(
            key.encode(), body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.build_opener().open(req, timeout=10) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def _node_id(repo: Repo, number: int) -> str:
    """A PR's global node id (opaque to clients, as GitHub's are)."""
    import base64

    return "PR_" + base64.b64encode(f"{repo.full}#{number}".encode()).decode().rstrip("=")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _handler(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self, method: str) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            kind = f"{method} {_ID.sub('/N', url.path)}"
            with fake.lock:
                fake.counts[kind] += 1
                fake.counts["total"] += 1
                if isinstance(body, dict) and (q := re.search(r"query (\w+)",
                                                              body.get("query") or "")):
                    fake.counts[f"graphql {q.group(1)}"] += 1  # by the query's name
                fake.rate_limit = max(0, fake.rate_limit - 1)
                fault = fake.fault_rate and fake.rng.random() < fake.fault_rate \
                    and not url.path.startswith("/_logs")
                kind_of_fault = fake.rng.choice(fake.fault_kinds) if fault else ""
            auth = self.headers.get("authorization", "")
            if fake.valid_token and auth.split()[-1:] != [fake.valid_token]:
                kind_of_fault = "bad-token"
            if kind_of_fault == "timeout":
                self.close_connection = True
                self.connection.close()  # the client sees the connection drop
                return
            if kind_of_fault == "bad-token":
                status, payload, headers = 401, {
                    "message": "Bad credentials",
                    "documentation_url": "https://docs.github.com/rest"}, {}
            elif kind_of_fault == "500":
                status, payload, headers = 500, {"message": "Server Error"}, {}
            elif kind_of_fault == "secondary":
                # GitHub's documented secondary limit: 403 (or 429) with Retry-After
                status, payload, headers = 403, {
                    "message": "You have exceeded a secondary rate limit. Please wait a few "
                               "minutes before you try again."}, {"retry-after": "60"}
            elif kind_of_fault == "applied-502" and method != "GET":
                # the write happens, and the answer is still a 502
                fake.handle(method, url.path, parse_qs(url.query), body)
                status, payload, headers = 502, {"message": "Server Error"}, {}
            else:
                status, payload, headers = fake.handle(method, url.path, parse_qs(url.query),
                                                       body)
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            etag = '"' + hashlib.sha1(data).hexdigest() + '"'
            if method == "GET" and status == 200 and self.headers.get("if-none-match") == etag:
                status, data = 304, b""
                with fake.lock:
                    fake.counts["not modified"] += 1
            self.send_response(status)
            self.send_header("content-type", headers.pop("content-type", "application/json"))
            self.send_header("content-length", str(len(data)))
            self.send_header("etag", etag)
            defaults = {"x-ratelimit-limit": "5000",
                        "x-ratelimit-resource": "graphql" if url.path == "/graphql" else "core",
                        "x-ratelimit-remaining": str(fake.rate_limit),
                        "x-ratelimit-reset": str(int(time.time()) + 3600)}
            for k, v in {**defaults, **headers}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def do_PUT(self) -> None:
            self._serve("PUT")

    return Handler


@contextmanager
def serve(fake: FakeGitHub | None = None) -> Iterator[FakeGitHub]:
    fake = fake or FakeGitHub()
    with http_server(_handler(fake)) as url:
        fake.url = url
        yield fake
