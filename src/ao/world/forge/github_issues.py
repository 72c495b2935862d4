"""A plan's tasks as GitHub issues: found by the task key in their title, made once,
closed when the task merges; comments and labels. The second layer of `GitHubForge`."""

from __future__ import annotations

import contextlib
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ao.errors import BadInput, ExternalError, ForgeError, NotFound
from ao.record.forge import WRITERS, Issue, PickedIssue
from ao.sanitize import for_terminal
from ao.world.forge.github_client import GitHubClient

if TYPE_CHECKING:
    from ao.record.store import Store

_KEY_IN_TITLE = re.compile(r"^\s*\[([A-Za-z0-9._-]+)\]")
# `Depends on #12`, `Blocked by #3, #4`: the fallback for GitHub's own dependencies
_DEPENDS = re.compile(r"(?im)^\W*(?:depends on|blocked by)\b([^\n]*)")


DEPS_EVERY = 300.0  # seconds between reads of an unchanged picked-up issue's dependencies


class GitHubIssues(GitHubClient):
    """Issues, comments and labels."""

    _deps: dict[int, tuple[tuple[str, str], float, tuple[int, ...]]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deps = {}
        self._status: dict[int, tuple[int, str]] = {}  # issue: its status comment (id, text)
        self._login: str | None = None

    def _issue(self, raw: Any) -> Issue:
        return Issue(number=raw.number, title=raw.title, body=raw.body or "", state=raw.state,
                     state_reason=getattr(raw, "state_reason", None), url=raw.html_url,
                     labels=tuple(label.name for label in raw.labels))

    def picked_up(self, label: str) -> tuple[list[PickedIssue], list[str]]:
        """Open issues carrying `label`, opened by an account with write access (or a login
        in `trusted_reviewers`), with the open issues each waits for; and why others were not
        taken. Conditional requests: what did not change costs no rate budget."""
        rows: list[dict[str, Any]] = []
        for page in range(1, 11):  # up to 1,000 labelled issues
            chunk = self._get(f"issues labelled {label}", "/issues?state=open&labels="
                              f"{quote(label, safe='')}&per_page=100&page={page}")
            rows += [r for r in chunk if "pull_request" not in r]
            if len(chunk) < 100:
                break
        taken, problems = [], []
        open_numbers = {int(r["number"]) for r in rows}
        for r in rows:
            login = str((r.get("user") or {}).get("login") or "someone")
            if r.get("author_association") not in WRITERS and \
                    login.lower() not in self.project.trusted_reviewers:
                problems.append(f"#{r['number']} was opened by {for_terminal(login)}, who has "
                                "no write access: not taken (trusted_reviewers lets a login in)")
                continue
            n = int(r["number"])
            # an issue's dependencies are asked again when it changed, or every DEPS_EVERY
            # seconds (a dependency closed elsewhere does not touch this issue): a poll of 50
            # labelled issues was 100 requests
            stamp = (str(r.get("updated_at") or ""), str(r.get("body") or ""))
            cached = self._deps.get(n)
            if cached is None or cached[0] != stamp or \
                    time.monotonic() - cached[1] > DEPS_EVERY:
                cached = (stamp, time.monotonic(), self._blockers(
                    n, str(r.get("body") or ""), open_numbers))
                self._deps[n] = cached
            taken.append(PickedIssue(n, str(r.get("title") or ""), str(r.get("body") or ""),
                                     cached[2]))
        return taken, problems

    def open_without(self, n: int, label: str) -> bool:
        """Issue `n` is open and does not carry `label` (it was taken off)."""
        d = self._get(f"issue #{n}", f"/issues/{n}")
        return d.get("state") == "open" and label not in {
            str(x.get("name")) for x in d.get("labels") or [] if isinstance(x, dict)}

    def _blockers(self, n: int, body: str, open_numbers: set[int]) -> tuple[int, ...]:
        """The open issues issue `n` waits for."""
        found: set[int] = set()
        for path in (f"/issues/{n}/dependencies/blocked_by?per_page=100",
                     f"/issues/{n}/sub_issues?per_page=100"):  # a parent waits for its children
            # a server without the endpoint (an older GHES): the body's lines only
            with contextlib.suppress(ExternalError):
                # of this repository only: another's #3 is not this one's
                mine = f"/repos/{self.project.repo}".lower()
                found |= {int(x["number"]) for x in self._get(f"#{n}'s dependencies", path)
                          if x.get("state") == "open" and str(x.get("repository_url") or
                                                              mine).lower().endswith(mine)}
        for line in _DEPENDS.findall(body):
            for m in map(int, re.findall(r"#(\d+)", line)):
                if m == n:
                    continue
                if m in open_numbers:
                    found.add(m)
                    continue
                try:
                    if self._get(f"issue #{m}", f"/issues/{m}").get("state") == "open":
                        found.add(m)
                except ExternalError:
                    found.add(m)  # a missing issue is reported by the plan, not ignored
        return tuple(sorted(found))

    def resolve_task(self, key: str) -> Issue:
        key = key.lstrip("#")
        if key.isdigit():
            try:
                # the object is lazy: fetch and read it inside the retried call
                return self._call(f"issue #{key}",
                                  lambda: self._issue(self.repo.get_issue(int(key))))
            except ForgeError as e:
                if e.status == 404:
                    raise NotFound(f"no issue #{key} in {self.project.repo}",
                                   "check the number") from None
                raise
        if self._issues_by_key is None:
            found: dict[str, Issue] = {}
            dupes: dict[str, list[int]] = {}
            self._left: dict[str, str] = {}
            for raw in self._list_issues():
                k = self._key_of(raw)
                if k and not self._trusted_author(raw):  # anyone may open an issue
                    self._left.setdefault(k, f"left #{raw['number']}: opened by "
                                             f"@{(raw.get('user') or {}).get('login')}, who "
                                             "has no write access")
                elif k:
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

    def _trusted_author(self, raw: dict[str, Any]) -> bool:
        """An issue ao may take as a task's: opened by an account with write access (GitHub's
        author_association) or by one of the project's trusted reviewers."""
        login = str((raw.get("user") or {}).get("login") or "").lower()
        return raw.get("author_association") in WRITERS or \
            login in self.project.trusted_reviewers

    def left_issue(self, key: str) -> str | None:
        """Why an issue titled [key] was not taken (its author), if one was left."""
        return getattr(self, "_left", {}).get(key)

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

    def status_comment(self, number: int, body: str, marker: str) -> None:
        """The issue's one comment by ao carrying `marker`, made once and edited in place
        after (never a new comment per step); nothing sent when its text is unchanged."""
        known = self._status.get(number) or self._find_status(number, marker)
        if known is not None and known[1] == body:
            self._status[number] = known
            return
        if known is None:  # made once: a write answered 502 and applied is found, not doubled
            def create() -> tuple[int, str]:
                c = self.repo.get_issue(number).create_comment(body)
                if self._login is None and c.user is not None:
                    self._login = c.user.login  # whose comments are ao's, from now on
                return c.id, body

            made = self._write(f"status comment on #{number}", create,
                               lambda: self._find_status(number, marker))
            self._status[number] = (made[0], body)
            return
        cid = known[0]
        try:
            self._call(f"update the status comment on #{number}", lambda: self.repo.get_issue(
                number).get_comment(cid).edit(body))
        except ForgeError as e:
            if e.status == 404:  # deleted by someone: made again at the next change
                self._status.pop(number, None)
            raise
        self._status[number] = (cid, body)

    def _find_status(self, number: int, marker: str) -> tuple[int, str] | None:
        """ao's own comment on the issue carrying `marker` (another account's never counts)."""
        if self._login is None:
            try:
                self._login = self._call("your login", lambda: self.gh.get_user().login)
            except ForgeError:  # an app's token may not read /user: learnt from our comment
                return None
        mine = self._login
        found = self._call(f"comments of #{number}", lambda: [
            (c.id, c.body or "") for c in self.repo.get_issue(number).get_comments()
            if (c.body or "").startswith(marker) and c.user is not None and
            c.user.login == mine])
        return found[-1] if found else None

    def label(self, number: int, labels: list[str]) -> None:
        self._call(f"label #{number}", lambda: self.repo.get_issue(number).add_to_labels(*labels))


def _issue_json(raw: dict[str, Any]) -> Issue:
    return Issue(number=int(raw["number"]), title=raw.get("title") or "",
                 body=raw.get("body") or "", state=raw.get("state") or "open",
                 state_reason=raw.get("state_reason"), url=raw.get("html_url") or "",
                 labels=tuple(x.get("name", "") for x in raw.get("labels") or []))


def push_plan(forge: GitHubIssues, plan: Any, store: Store) -> list[tuple[str, int, str]]:
    """Create the plan's issues as `[KEY] title` with a "Depends on #N" list, in dependency
    order, skipping those that exist already; record each issue number on the task."""
    from ao.decide.plan import topo_order

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
            left = forge.left_issue(key)
            out.append((key, issue.number, f"created ({left})" if left else "created"))
        store.put_task(forge.project.name, key, t.title, body=t.body, deps=t.deps,
                       estimate=t.estimate, issue_number=numbers[key])
    return out
