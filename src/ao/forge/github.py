"""GitHub through PyGithub: one GraphQL query per project per poll for every tracked branch's
PR facts; REST for writes and for details on demand. The only module that imports PyGithub.

Rate limits are read from every answer; when the remaining budget runs low the caller is told
to stretch its poll interval. 5xx answers, timeouts and secondary rate limits are retried with
jittered backoff a few times, then reported, never raised out of `poll`.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import github
from github import Auth, Github, GithubException

from ..config import ProjectConfig
from ..errors import BadInput, ExternalError, NotFound
from ..sanitize import clean
from ..store import Store
from .base import (
    Annotation,
    Check,
    CheckSummary,
    FailureDetail,
    Issue,
    PollResult,
    PullRequest,
    ReviewComment,
)

T = TypeVar("T")
LOW_BUDGET = 200
RETRIES = 3
LOG_TAIL_LINES = 80
_KEY_IN_TITLE = re.compile(r"^\s*\[([A-Za-z0-9._-]+)\]")

POLL_QUERY = """query AoPoll($owner: String!, $name: String!, {params}) {{
  rateLimit {{ remaining resetAt }}
  repository(owner: $owner, name: $name) {{
{fields}
  }}
}}"""
# several nodes per branch: a fork's PR can carry the same head branch name, and only a
# same-repository PR is ours (isCrossRepository false)
PR_FIELDS = """    {alias}: pullRequests(headRefName: ${var}, first: 5,
        orderBy: {{field: CREATED_AT, direction: DESC}}) {{
      nodes {{ number url state title headRefName headRefOid baseRefName mergeable
        reviewDecision isDraft mergeStateStatus isCrossRepository createdAt
        latestOpinionatedReviews(first: 20) {{ nodes {{ state author {{ login }} }} }}
        commits(last: 1) {{ nodes {{ commit {{ statusCheckRollup {{ state
          contexts(first: 100) {{ nodes {{ __typename
            ... on CheckRun {{ name status conclusion detailsUrl databaseId }}
            ... on StatusContext {{ context state targetUrl description }} }} }} }} }} }} }} }}
    }}"""
THREADS_QUERY = """query AoThreads($owner: String!, $name: String!, $number: Int!) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviews(last: 50) { nodes { id state body author { login } submittedAt } }
      reviewThreads(first: 100) { nodes { isResolved
        comments(first: 50) { nodes { id body path line author { login } createdAt } } } }
    }
  }
}"""


def token_from_env() -> str:
    for var in ("GITHUB_TOKEN", "GH_TOKEN"):
        if os.environ.get(var):
            return os.environ[var]
    if shutil.which("gh"):
        proc = subprocess.run(["gh", "auth", "token"], capture_output=True, text=True,
                              timeout=20)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
    raise BadInput("no GitHub token", "set GITHUB_TOKEN or GH_TOKEN, or run `gh auth login`")


class GitHubForge:
    name = "github"

    def __init__(self, project: ProjectConfig, store: Store, token: str,
                 base_url: str = "https://api.github.com",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not project.repo:
            raise BadInput(f"project {project.name} has no `repo`", "set repo: owner/name")
        self.project = project
        self.store = store
        self.owner, self.repo_name = project.repo.split("/", 1)
        self._sleep = sleep
        # PyGithub retries and throttles on its own; ao does both itself (jittered, bounded),
        # so that a poll never stalls for minutes
        self.gh = Github(auth=Auth.Token(token), base_url=base_url, timeout=15, retry=0,
                         seconds_between_requests=0, seconds_between_writes=0, lazy=True)
        self.repo = self.gh.get_repo(project.repo)
        self.requests = 0
        self.rate_remaining: int | None = None
        self._issues_by_key: dict[str, Issue] | None = None
        self._etags: dict[str, tuple[str, Any]] = {}
        self._method: str | None = None

    @classmethod
    def from_env(cls, project: ProjectConfig, store: Store) -> GitHubForge:
        base = os.environ.get("AO_GITHUB_API_URL", "https://api.github.com")
        return cls(project, store, token_from_env(), base)

    # ---- calling GitHub -------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one API call with bounded, jittered retries on 5xx, timeouts and secondary
        rate limits; other errors (404, 422) go straight to the caller."""
        delay = 0.5
        for attempt in range(RETRIES + 1):
            self.requests += 1
            try:
                out = fn()
                self._note_rate()
                return out
            except GithubException as e:
                retryable = e.status >= 500 or (e.status in (403, 429) and _secondary(e))
                if not retryable or attempt == RETRIES:
                    raise ExternalError(f"GitHub {what} failed: {e.status} "
                                        f"{_message(e)}", "see `ao events -t forge`") from None
            except (OSError, github.GithubException) as e:  # timeouts, resets
                if attempt == RETRIES:
                    raise ExternalError(f"GitHub {what} failed: {type(e).__name__}",
                                        "is the network up?") from None
            self._sleep(delay * (1 + random.random()))
            delay *= 2
        raise AssertionError("unreachable")

    def _note_rate(self) -> None:
        headers = getattr(self.gh.requester, "_Requester__last_headers", None) or {}
        remaining = headers.get("x-ratelimit-remaining")
        if remaining is not None and str(remaining).isdigit():
            self.rate_remaining = int(remaining)

    def low_budget(self) -> bool:
        return self.rate_remaining is not None and self.rate_remaining < LOW_BUDGET

    def _graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        _, data = self._call("graphql", lambda: self.gh.requester.graphql_query(query,
                                                                                 variables))
        if data.get("errors"):
            raise ExternalError(f"GitHub GraphQL: {data['errors'][0].get('message')}", "")
        result: dict[str, Any] = data.get("data") or {}
        return result

    # ---- tasks ----------------------------------------------------------------------------

    def _issue(self, raw: Any) -> Issue:
        return Issue(number=raw.number, title=raw.title, body=raw.body or "", state=raw.state,
                     state_reason=getattr(raw, "state_reason", None), url=raw.html_url,
                     labels=tuple(label.name for label in raw.labels))

    def resolve_task(self, key: str) -> Issue:
        key = key.lstrip("#")
        if key.isdigit():
            try:
                # the object is lazy: fetch and read it inside the retried call
                return self._call(f"issue #{key}",
                                  lambda: self._issue(self.repo.get_issue(int(key))))
            except ExternalError as e:
                if " 404 " in str(e):
                    raise NotFound(f"no issue #{key} in {self.project.repo}",
                                   "check the number") from None
                raise
        if self._issues_by_key is None:
            found: dict[str, Issue] = {}
            dupes: dict[str, list[int]] = {}

            def listing() -> list[Any]:
                return [i for i in self.repo.get_issues(state="all") if not i.pull_request]

            for raw in self._call("issues", listing):
                m = _KEY_IN_TITLE.match(raw.title)
                if m:
                    k = m.group(1)
                    dupes.setdefault(k, []).append(raw.number)
                    found.setdefault(k, self._issue(raw))
            self._dupes = {k: v for k, v in dupes.items() if len(v) > 1}
            self._issues_by_key = found
        if key in getattr(self, "_dupes", {}):
            nums = ", ".join(f"#{n}" for n in self._dupes[key])
            raise BadInput(f"{key} names several issues: {nums}", "use the issue number")
        if key not in self._issues_by_key:
            near = [k for k in self._issues_by_key if k.split("-")[0] == key.split("-")[0]][:8]
            raise NotFound(f"no issue titled [{key}] in {self.project.repo}",
                           f"candidates: {', '.join(near)}" if near else "run `ao plan push`")
        return self._issues_by_key[key]

    def create_issue(self, title: str, body: str, labels: list[str] | None = None) -> Issue:
        raw = self._call("create issue", lambda: self.repo.create_issue(
            title=title, body=body, labels=labels or []))
        self._issues_by_key = None
        return self._issue(raw)

    def close_issue(self, number: int) -> None:
        self._call(f"close #{number}", lambda: self.repo.get_issue(number).edit(
            state="closed", state_reason="completed"))

    def comment(self, number: int, body: str) -> None:
        self._call(f"comment on #{number}",
                   lambda: self.repo.get_issue(number).create_comment(body))

    def label(self, number: int, labels: list[str]) -> None:
        self._call(f"label #{number}", lambda: self.repo.get_issue(number).add_to_labels(*labels))

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
                                     **{f"h{i}": b for i, b in enumerate(branches)}}
        try:
            data = self._graphql(POLL_QUERY.format(params=params, fields=fields), variables)
        except ExternalError as e:
            result.errors.append(str(e))
            result.requests = self.requests - before
            return result
        rate = data.get("rateLimit") or {}
        if isinstance(rate.get("remaining"), int):
            self.rate_remaining = rate["remaining"]
        repo = data.get("repository") or {}
        for i, branch in enumerate(branches):
            nodes = [n for n in (repo.get(f"b{i}") or {}).get("nodes") or []
                     if n and not n.get("isCrossRepository")]
            result.prs[branch] = _pr_from_graphql(nodes[0]) if nodes else None
        result.requests = self.requests - before
        result.rate_remaining = self.rate_remaining
        return result

    def find_pr(self, branch: str) -> PullRequest | None:
        return self.poll([branch]).prs.get(branch)

    def create_pr(self, branch: str, title: str, body: str) -> PullRequest:
        raw = self._call("create PR", lambda: self.repo.create_pull(
            title=title, body=body, head=branch, base=self.project.default_branch))
        return PullRequest(number=raw.number, url=raw.html_url, state="open",
                           head_branch=branch, head_sha=raw.head.sha,
                           base=self.project.default_branch, title=title)

    def merge(self, pr: PullRequest, expected_sha: str) -> str:
        raw = self.repo.get_pull(pr.number)
        method = self._merge_method()
        status = self._call(f"merge #{pr.number}", lambda: raw.merge(
            sha=expected_sha, merge_method=method))
        if not status.merged:
            raise ExternalError(f"PR #{pr.number} was not merged: {status.message}",
                                "look at the PR")
        return str(status.sha)

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

    def _get(self, what: str, path: str) -> Any:
        """A REST GET through PyGithub's requester, conditional on the ETag of the last answer
        for the same URL: an unchanged resource costs a 304 and no rate budget."""
        url = f"{self.repo.url}{path}"
        cached = self._etags.get(url)

        def get() -> tuple[int, dict[str, Any], str]:
            headers = {"If-None-Match": cached[0]} if cached else {}
            status, hdrs, body = self.gh.requester.requestJson("GET", url, headers=headers)
            if status >= 400 and status != 404:
                data = json.loads(body) if body.strip().startswith("{") else {"message": body}
                raise GithubException(status, data, hdrs)
            return status, hdrs, body

        status, headers, body = self._call(what, get)
        if status == 304 and cached:
            return cached[1]
        if status == 404:
            raise ExternalError(f"GitHub {what}: not found", "")
        data = json.loads(body)
        etag = headers.get("etag")
        if etag:
            self._etags[url] = (etag, data)
        return data

    def failure_details(self, pr: PullRequest) -> list[FailureDetail]:
        out = []
        sha = pr.head_sha
        runs = self._get("check runs", f"/commits/{sha}/check-runs?per_page=100")
        for run in runs.get("check_runs", []):
            if run.get("conclusion") not in ("failure", "timed_out", "cancelled",
                                             "action_required"):
                continue
            raw = self._get("annotations", f"/check-runs/{run['id']}/annotations")
            annotations = [Annotation(a.get("path", ""), a.get("start_line"),
                                      clean(a.get("message") or "")[:300],
                                      a.get("annotation_level", "failure")) for a in raw]
            output = run.get("output") or {}
            text = "\n".join(str(x) for x in (output.get("title"), output.get("summary"),
                                               output.get("text")) if x)
            out.append(FailureDetail(check=str(run.get("name")), url=run.get("html_url") or "",
                                     output=clean(text)[:4000],
                                     annotations=tuple(annotations[:30]),
                                     log_tail=self._job_log_tail(int(run["id"]))))
        status = self._get("statuses", f"/commits/{sha}/status")
        for st in status.get("statuses", []):
            if st.get("state") in ("failure", "error"):
                out.append(FailureDetail(check=str(st.get("context")),
                                         url=st.get("target_url") or "",
                                         output=clean(st.get("description") or "")))
        return out

    def _job_log_tail(self, job_id: int) -> str:
        url = f"{self.repo.url}/actions/jobs/{job_id}/logs"
        try:
            status, headers, body = self._call("job log", lambda: self.gh.requester.requestJson(
                "GET", url))
            if status in (301, 302, 307) and headers.get("location"):
                with urllib.request.urlopen(headers["location"], timeout=15) as resp:
                    body = resp.read().decode("utf-8", "replace")
            elif status != 200:
                return ""
        except (ExternalError, OSError):
            return ""
        lines = clean(body or "").splitlines()
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def review_comments(self, pr: PullRequest) -> list[ReviewComment]:
        data = self._graphql(THREADS_QUERY, {"owner": self.owner, "name": self.repo_name,
                                             "number": pr.number})
        node = ((data.get("repository") or {}).get("pullRequest") or {})
        out = []
        for review in (node.get("reviews") or {}).get("nodes") or []:
            if review.get("state") == "CHANGES_REQUESTED" and review.get("body"):
                out.append(ReviewComment(id=str(review["id"]), author=_login(review),
                                         body=review["body"],
                                         created_at=review.get("submittedAt") or ""))
        for thread in (node.get("reviewThreads") or {}).get("nodes") or []:
            for c in (thread.get("comments") or {}).get("nodes") or []:
                out.append(ReviewComment(id=str(c["id"]), author=_login(c), body=c["body"],
                                         path=c.get("path"), line=c.get("line"),
                                         resolved=bool(thread.get("isResolved")),
                                         created_at=c.get("createdAt") or ""))
        return [c for c in out if not c.resolved]


def _login(node: dict[str, Any]) -> str:
    return str((node.get("author") or {}).get("login") or "someone")


def _secondary(e: GithubException) -> bool:
    text = str(e.data).lower() if e.data else ""
    return "secondary rate limit" in text or "abuse" in text or e.status == 429


def _message(e: GithubException) -> str:
    if isinstance(e.data, dict):
        return str(e.data.get("message", ""))[:200]
    return ""


_STATE = {"OPEN": "open", "CLOSED": "closed", "MERGED": "merged"}
_MERGEABLE = {"MERGEABLE": "mergeable", "CONFLICTING": "conflicting"}
_CHECK_STATE = {"SUCCESS": "success", "FAILURE": "failure", "ERROR": "error",
                "PENDING": "pending", "EXPECTED": "pending"}


def _pr_from_graphql(n: dict[str, Any]) -> PullRequest:
    checks: list[Check] = []
    commits = (n.get("commits") or {}).get("nodes") or []
    rollup = (commits[0].get("commit") or {}).get("statusCheckRollup") if commits else None
    for c in ((rollup or {}).get("contexts") or {}).get("nodes") or []:
        if c.get("__typename") == "CheckRun":
            conclusion = (c.get("conclusion") or "").lower() or "pending"
            if c.get("status") not in (None, "COMPLETED"):
                conclusion = "pending"
            checks.append(Check(c.get("name") or "check", conclusion, c.get("detailsUrl") or ""))
        else:
            checks.append(Check(c.get("context") or "status",
                                _CHECK_STATE.get(c.get("state") or "", "pending"),
                                c.get("targetUrl") or "", c.get("description") or ""))
    decision = n.get("reviewDecision")
    reviews = tuple(((r.get("author") or {}).get("login") or "ghost", str(r["state"]).lower())
                    for r in (n.get("latestOpinionatedReviews") or {}).get("nodes") or []
                    if r and r.get("state") in ("APPROVED", "CHANGES_REQUESTED"))
    summary = CheckSummary.of(checks)
    # the rollup's own state is the truth: contexts are only the first page of them
    state = (rollup or {}).get("state")
    if state in ("FAILURE", "ERROR") and summary.overall != "failing":
        summary = CheckSummary("failing", summary.checks)
    elif state in ("PENDING", "EXPECTED") and summary.overall == "passing":
        summary = CheckSummary("pending", summary.checks)
    merge_state = n.get("mergeStateStatus")
    return PullRequest(
        number=int(n["number"]), url=n.get("url") or "", state=_STATE.get(n["state"], "open"),
        head_branch=n.get("headRefName") or "", head_sha=n.get("headRefOid") or "",
        base=n.get("baseRefName") or "main", title=n.get("title") or "",
        mergeable=_MERGEABLE.get(n.get("mergeable") or "", "unknown"),
        review_decision=decision.lower() if decision else None,
        checks=summary, draft=bool(n.get("isDraft")),
        merge_state=merge_state.lower() if merge_state else "unknown", reviews=reviews,
        created_at=_epoch(n.get("createdAt")),
        cross_repository=bool(n.get("isCrossRepository")))


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def push_plan(forge: GitHubForge, plan: Any, store: Store) -> list[tuple[str, int, str]]:
    """Create the plan's issues as `[KEY] title` with a "Depends on #N" list, in dependency
    order, skipping those that exist already; record each issue number on the task."""
    from ..plan import topo_order

    numbers: dict[str, int] = {}
    out: list[tuple[str, int, str]] = []
    for key in topo_order(plan):
        t = plan.tasks[key]
        try:
            existing = forge.resolve_task(key)
            numbers[key] = existing.number
            out.append((key, existing.number, "exists"))
        except NotFound:
            deps = [f"#{numbers[d]}" for d in t.deps if d in numbers]
            body = t.body + ("\n\n" if t.body else "") + (
                f"Depends on {', '.join(deps)}" if deps else "")
            issue = forge.create_issue(f"[{key}] {t.title}", body.strip(), ["ao"])
            numbers[key] = issue.number
            out.append((key, issue.number, "created"))
        store.put_task(forge.project.name, key, t.title, body=t.body, deps=t.deps,
                       estimate=t.estimate, issue_number=numbers[key])
    return out
