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
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import github
from github import Auth, Github, GithubException

from ..config import ProjectConfig
from ..errors import BadInput, ConfigError, ExternalError, NotFound
from ..sanitize import clean
from ..store import Store
from .base import (
    AgentReview,
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
        self.budgets: dict[str, int] = {}
        self.blocked_until = 0.0  # a rate limit asked to wait until then
        # longest rate-limit wait a call sits out itself; the daemon sets 0 and skips the
        # project's polls until `blocked_until` instead
        self.max_wait = 120.0

    @classmethod
    def from_env(cls, project: ProjectConfig, store: Store) -> GitHubForge:
        base = os.environ.get("AO_GITHUB_API_URL", "https://api.github.com").rstrip("/")
        if not re.match(r"^https?://[^/\s]+", base):
            raise ConfigError(f"AO_GITHUB_API_URL {base!r} is not an http(s) URL",
                              "e.g. https://github.example.com/api/v3, or unset it")
        return cls(project, store, token_from_env(), base)

    # ---- calling GitHub -------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """A read: bounded, jittered retries on 5xx and timeouts; a rate limit is waited out
        as GitHub asks (`Retry-After`, the reset time; a secondary limit at least a minute)
        when that is short enough, else reported; other errors go straight to the caller."""
        delay = 0.5
        for attempt in range(RETRIES + 1):
            try:
                return self._once(what, fn)
            except _Transient as t:
                if attempt == RETRIES:
                    raise t.error from None
                wait = t.wait if t.wait is not None else delay * (1 + random.random())
                self._sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")

    def _write(self, what: str, fn: Callable[[], T], applied: Callable[[], T | None]) -> T:
        """A write, never repeated blindly: GitHub may apply a write and still answer 502 or
        time out, so before trying again `applied` looks for what the first try would have
        made (an issue or PR with our marker, a merged PR), and returns it if it is there."""
        try:
            return self._once(what, fn)
        except _Transient as t:
            if t.wait is not None:
                self._sleep(t.wait)
            found = self._call(f"check whether {what} happened", applied)
            if found is not None:
                return found
            try:
                return self._once(what, fn)
            except _Transient as again:
                raise again.error from None

    def _once(self, what: str, fn: Callable[[], T]) -> T:
        self.requests += 1
        try:
            out = fn()
            self._note_rate()
            return out
        except GithubException as e:
            headers = {k.lower(): v for k, v in (e.headers or {}).items()}
            if e.status == 401:
                raise ExternalError("GitHub rejected the token (401 Bad credentials)",
                                    "set GITHUB_TOKEN or GH_TOKEN to a valid token, or run "
                                    "`gh auth login`") from None
            limited = e.status == 429 or (e.status == 403 and (
                _secondary(e) or headers.get("x-ratelimit-remaining") == "0"))
            error = ExternalError(f"GitHub {what} failed: {e.status} {_message(e)}",
                                  _hint(e.status))
            if limited:
                wait = _wait(headers, secondary=_secondary(e))
                resource = headers.get("x-ratelimit-resource", "core")
                error = ExternalError(f"GitHub rate limit ({resource}): it asks to wait "
                                      f"{wait:.0f}s before {what}", "ao waits and goes on")
                if wait > self.max_wait:
                    self.blocked_until = time.time() + wait  # the caller skips until then
                    raise error from None
                sys.stderr.write(f"ao: GitHub rate limit: waiting {wait:.0f}s as it asks\n")
                raise _Transient(error, wait) from None
            if e.status >= 500:
                raise _Transient(error, None) from None
            raise error from None
        except (OSError, github.GithubException) as e:  # timeouts, resets
            raise _Transient(ExternalError(f"GitHub {what} failed: {type(e).__name__}",
                                           "is the network up?"), None) from None

    def _note_rate(self) -> None:
        """Remember the budget left, per resource (REST `core` and `graphql` are apart)."""
        headers = getattr(self.gh.requester, "_Requester__last_headers", None) or {}
        remaining = headers.get("x-ratelimit-remaining")
        if remaining is not None and str(remaining).isdigit():
            resource = str(headers.get("x-ratelimit-resource") or "core")
            self.budgets[resource] = int(remaining)
            self.rate_remaining = min(self.budgets.values())

    def low_budget(self) -> bool:
        return self.rate_remaining is not None and self.rate_remaining < LOW_BUDGET

    def _graphql(self, query: str, variables: dict[str, Any],
                 errors: list[str] | None = None) -> dict[str, Any]:
        """The data of a GraphQL answer. Its `errors[]` (type and message each) are raised
        when there is no data; with partial data they go to `errors` and the data is used."""
        _, data = self._call("graphql", lambda: self.gh.requester.graphql_query(query,
                                                                                 variables))
        problems = ["{}: {}".format(x.get("type") or "ERROR", x.get("message") or "")
                    for x in data.get("errors") or []]
        result: dict[str, Any] = data.get("data") or {}
        if problems and (not result or errors is None):
            raise ExternalError("GitHub GraphQL: " + "; ".join(problems)[:300],
                                "check the token's scopes and the repository name")
        if problems and errors is not None:
            errors.extend(problems)
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
            for raw in self._list_issues():
                k = self._key_of(raw)
                if k:
                    dupes.setdefault(k, []).append(int(raw["number"]))
                    found.setdefault(k, _issue_json(raw))
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

    def _list_issues(self, pages: int | None = None) -> list[dict[str, Any]]:
        """Issues (not PRs), newest first, 100 a page, as GitHub's JSON: one request a page
        (reading PyGithub's `pull_request` would fetch every issue again)."""
        out: list[dict[str, Any]] = []
        page = 1
        while pages is None or page <= pages:
            _, batch = self._call("list issues", lambda p=page: self.gh.requester.  # type: ignore[misc]
                                  requestJsonAndCheck(
                                      "GET", f"/repos/{self.project.repo}/issues",
                                      parameters={"state": "all", "per_page": 100, "page": p,
                                                  "sort": "created", "direction": "desc"}))
            if not isinstance(batch, list):
                break
            out += [i for i in batch if not i.get("pull_request")]
            if len(batch) < 100:
                break
            page += 1
        return out

    def marker(self, key: str) -> str:
        """Hidden in what ao creates, so a create that GitHub applied but answered with an
        error is found instead of made twice."""
        return f"<!-- ao:{self.project.name}/{key} -->"

    def _key_of(self, raw: dict[str, Any]) -> str | None:
        m = re.search(r"<!-- ao:[^/]+/([A-Za-z0-9._-]+) -->", raw.get("body") or "")
        if m:
            return m.group(1)
        t = _KEY_IN_TITLE.match(raw.get("title") or "")
        return t.group(1) if t else None

    def create_issue(self, title: str, body: str, labels: list[str] | None = None,
                     key: str | None = None) -> Issue:
        if key:
            body = f"{body}\n\n{self.marker(key)}".strip()

        def applied() -> Issue | None:
            if not key:
                return None
            for raw in self._list_issues(pages=1):
                if self.marker(key) in (raw.get("body") or ""):
                    return _issue_json(raw)
            return None

        issue = self._write("create issue", lambda: self._issue(self.repo.create_issue(
            title=title, body=body, labels=labels or [])), applied)
        if key and self._issues_by_key is not None:
            self._issues_by_key[key] = issue  # known now: no listing again
        return issue

    def close_issue(self, number: int) -> None:
        # setting a state is idempotent: a plain retry is safe
        self._call(f"close #{number}", lambda: self.repo.get_issue(number).edit(
            state="closed", state_reason="completed"))

    def comment(self, number: int, body: str) -> None:
        def applied() -> bool | None:
            recent = self.repo.get_issue(number).get_comments()
            return True if any(c.body == body for c in list(recent)[-10:]) else None

        self._write(f"comment on #{number}",
                    lambda: bool(self.repo.get_issue(number).create_comment(body)), applied)

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
            data = self._graphql(POLL_QUERY.format(params=params, fields=fields), variables,
                                 errors=result.errors)
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

        return self._write("create PR", lambda: made(self.repo.create_pull(
            title=title, body=body, head=branch, base=self.project.default_branch)), applied)

    def merge(self, pr: PullRequest, expected_sha: str) -> str:
        method = self._merge_method()

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
            body = review.get("body") or ""
            # a reviewer agent's request posted as a COMMENT (GitHub lets no author request
            # changes on their own PR) counts as one
            agent_asked = review.get("state") == "COMMENTED" and AGENT_MARK in body and \
                CHANGES_REQUESTED_HEAD in body
            if body and (review.get("state") == "CHANGES_REQUESTED" or agent_asked):
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


AGENT_MARK = "<!-- ao-review "
CHANGES_REQUESTED_HEAD = "**Changes requested**"


def _login(node: dict[str, Any]) -> str:
    return str((node.get("author") or {}).get("login") or "someone")


class _Transient(Exception):
    """A failure worth another try, after `wait` seconds when GitHub said how long."""

    def __init__(self, error: ExternalError, wait: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait


def _wait(headers: dict[str, str], secondary: bool) -> float:
    """How long GitHub asks us to wait: Retry-After, else the reset time when the budget is
    spent; a secondary limit at least 60 s (GitHub's documented minimum)."""
    retry_after = headers.get("retry-after", "")
    if retry_after.isdigit():
        wait = float(retry_after)
    elif headers.get("x-ratelimit-remaining") == "0" and \
            headers.get("x-ratelimit-reset", "").isdigit():
        wait = max(1.0, float(headers["x-ratelimit-reset"]) - time.time())
    else:
        wait = 60.0
    return max(wait, 60.0) if secondary else wait


def _hint(status: int) -> str:
    return {403: "the token may lack a scope (repo, workflow) or access to the repository",
            404: "check `repo` in the config and the token's access to it",
            405: "GitHub refused: see the message (branch protection, merge method)",
            409: "the PR's head moved; ao looks again",
            422: "GitHub rejected the request: see the details"}.get(
        status, "see `ao events -t forge`")


def _secondary(e: GithubException) -> bool:
    text = str(e.data).lower() if e.data else ""
    return "secondary rate limit" in text or "abuse" in text or e.status == 429


def _message(e: GithubException) -> str:
    """GitHub's message with the nested `errors[]` details REST puts beside it (422)."""
    if not isinstance(e.data, dict):
        return ""
    text = str(e.data.get("message", ""))
    details = []
    for d in e.data.get("errors") or []:
        if isinstance(d, dict):
            details.append(d.get("message") or " ".join(
                str(d.get(k)) for k in ("resource", "field", "code") if d.get(k)))
        else:
            details.append(str(d))
    if details:
        text += ": " + "; ".join(x for x in details if x)
    return clean(text)[:300]


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


def _issue_json(raw: dict[str, Any]) -> Issue:
    return Issue(number=int(raw["number"]), title=raw.get("title") or "",
                 body=raw.get("body") or "", state=raw.get("state") or "open",
                 state_reason=raw.get("state_reason"), url=raw.get("html_url") or "",
                 labels=tuple(x.get("name", "") for x in raw.get("labels") or []))


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
            issue = forge.create_issue(f"[{key}] {t.title}", body.strip(), ["ao"], key=key)
            numbers[key] = issue.number
            out.append((key, issue.number, "created"))
        store.put_task(forge.project.name, key, t.title, body=t.body, deps=t.deps,
                       estimate=t.estimate, issue_number=numbers[key])
    return out
