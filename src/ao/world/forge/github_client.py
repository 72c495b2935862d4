"""GitHub over PyGithub: every request with retries on transient failures, GitHub's
documented waits (Retry-After, secondary limits), the rate-limit budget, and the one
GraphQL call. The first layer of `GitHubForge`."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self, TypeVar

import github
from github import Auth, Github, GithubException

from ao.errors import BadInput, ConfigError, ExternalError, ForgeError
from ao.sanitize import clean

if TYPE_CHECKING:  # a store is handed in: its type only
    from ao.config import ProjectConfig
    from ao.record.forge import Issue
    from ao.record.store import Store


log = logging.getLogger(__name__)

T = TypeVar("T")
LOW_BUDGET = 200
RETRIES = 3
AUTH_RETRY = 600.0  # seconds between tries of a token GitHub rejected (a config change: at once)


class GitHubClient:
    """Requests to one repository, with GitHub's rules for retrying and waiting."""

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
        # why GitHub cannot be read now, and who must act (waiting.py), until a call succeeds
        self.trouble: tuple[str, str] | None = None
        # longest rate-limit wait a call sits out itself; the daemon sets 0 and skips the
        # project's polls until `blocked_until` instead
        self.max_wait = 120.0

    @classmethod
    def from_env(cls, project: ProjectConfig, store: Store) -> Self:
        base = os.environ.get("AO_GITHUB_API_URL", "https://api.github.com").rstrip("/")
        if not re.match(r"^https?://[^/\s]+", base):
            raise ConfigError(f"AO_GITHUB_API_URL {base!r} is not an http(s) URL",
                              "e.g. https://github.example.com/api/v3, or unset it")
        return cls(project, store, token_from_env(), base)

    def _call(self, what: str, fn: Callable[[], T], resource: str = "core") -> T:
        """A read: bounded, jittered retries on 5xx and timeouts; a rate limit is waited out
        as GitHub asks (`Retry-After`, the reset time; a secondary limit at least a minute)
        when that is short enough, else reported; other errors go straight to the caller."""
        delay = 0.5
        for attempt in range(RETRIES + 1):
            try:
                return self._once(what, fn, resource)
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

    def _once(self, what: str, fn: Callable[[], T], resource: str = "core") -> T:
        """One request; `resource` is the rate-limit budget it is counted against (REST's
        `core`, or `graphql`)."""
        self.requests += 1
        try:
            out = fn()
            self._note_rate(resource)
            self.trouble = None
            return out
        except GithubException as e:
            headers = {k.lower(): v for k, v in (e.headers or {}).items()}
            if e.status == 401:
                # a revoked token is not asked again every poll: every AUTH_RETRY, or at once
                # when the config (and so this client) is made again
                self.blocked_until = time.time() + AUTH_RETRY
                self.trouble = ("GitHub rejected the token (401 Bad credentials): set "
                                "GITHUB_TOKEN or GH_TOKEN to a valid one", "person")
                raise ForgeError("GitHub rejected the token (401 Bad credentials)",
                                 "set GITHUB_TOKEN or GH_TOKEN to a valid token, or run "
                                 "`gh auth login`", 401) from None
            limited = e.status == 429 or (e.status == 403 and (
                _secondary(e) or headers.get("x-ratelimit-remaining") == "0"))
            error = ForgeError(f"GitHub {what} failed: {e.status} {_message(e)}",
                               _hint(e.status), e.status)
            if limited:
                wait = _wait(headers, secondary=_secondary(e))
                resource = headers.get("x-ratelimit-resource", "core")
                error = ForgeError(f"GitHub rate limit ({resource}): it asks to wait "
                                   f"{wait:.0f}s before {what}", "ao waits and goes on",
                                   e.status)
                if wait > self.max_wait:
                    self.blocked_until = time.time() + wait  # the caller skips until then
                    until = time.strftime("%H:%M", time.localtime(self.blocked_until))
                    self.trouble = (f"rate-limited ({resource}) until {until}", "github")
                    raise error from None
                log.warning("GitHub rate limit (%s): waiting %.0fs before %s", resource, wait,
                            what)
                sys.stderr.write(f"ao: GitHub rate limit: waiting {wait:.0f}s as it asks\n")
                raise _Transient(error, wait) from None
            if e.status >= 500:
                raise _Transient(error, None) from None
            raise error from None
        except (OSError, github.GithubException) as e:  # timeouts, resets
            raise _Transient(ExternalError(f"GitHub {what} failed: {type(e).__name__}",
                                           "is the network up?"), None) from None

    def _note_rate(self, resource: str) -> None:
        """Remember the budget left, per resource (REST `core` and `graphql` are counted
        apart): PyGithub keeps the last answer's x-ratelimit-remaining and -limit."""
        remaining, limit = self.gh.requester.rate_limiting
        if limit >= 0:
            self.budgets[resource] = remaining
            self.rate_remaining = min(self.budgets.values())

    def low_budget(self) -> bool:
        return self.rate_remaining is not None and self.rate_remaining < LOW_BUDGET

    def _graphql(self, query: str, variables: dict[str, Any], errors: list[str] | None = None,
                 failed: set[str] | None = None) -> dict[str, Any]:
        """The data of a GraphQL answer. Its `errors[]` (type and message each) are raised
        when there is no data; with partial data they go to `errors`, the top-level fields
        under `repository` they name go to `failed`, and the data is used (GitHub's
        documented partial answers; PyGithub's graphql_query raises them all as a 400).

        A primary rate limit comes as HTTP 200 with `errors[].type == "RATE_LIMITED"` and
        x-ratelimit-remaining 0: waited for, or reported until x-ratelimit-reset, as REST's."""
        requester = self.gh.requester

        def ask() -> tuple[dict[str, Any], dict[str, Any]]:
            headers, data = requester.requestJsonAndCheck(
                "POST", requester.graphql_url, input={"query": query, "variables": variables})
            if any(x.get("type") == "RATE_LIMITED" for x in data.get("errors") or []):
                raise GithubException(403, {"message": "API rate limit exceeded (GraphQL "
                                                       "RATE_LIMITED)"},
                                      {**headers, "x-ratelimit-remaining": "0"})
            return headers, data

        _, data = self._call("graphql", ask, resource="graphql")
        problems = ["{}: {}".format(x.get("type") or "ERROR", x.get("message") or "")
                    for x in data.get("errors") or []]
        if failed is not None:
            failed.update(str(p[1]) for x in data.get("errors") or []
                          if isinstance(p := x.get("path"), list) and len(p) > 1)
        result: dict[str, Any] = data.get("data") or {}
        if problems and (not result or errors is None):
            raise ExternalError("GitHub GraphQL: " + "; ".join(problems)[:300],
                                "check the token's scopes and the repository name")
        if problems and errors is not None:
            errors.extend(problems)
        return result

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


def login_of(node: dict[str, Any]) -> str:
    return str((node.get("author") or {}).get("login") or "someone")


def required_contexts(rules: list[dict[str, Any]], classic: list[str]) -> list[str]:
    """The checks the branch requires: its classic protection's, then its rulesets'."""
    return list(dict.fromkeys([*classic, *(
        str(c.get("context")) for r in rules if r.get("type") == "required_status_checks"
        for c in (r.get("parameters") or {}).get("required_status_checks") or []
        if isinstance(c, dict))]))


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
