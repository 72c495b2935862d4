"""What holds a PR on GitHub, in words an agent or a person can act on: the failing checks'
details (every page of them), and the rule behind a BLOCKED merge state. The third layer of
`GitHubForge`.

GitHub lists a commit's check runs and statuses 30 a page (100 at most), and its merge state
says only BLOCKED; which rule blocks is read from the branch's rulesets
(`GET /rules/branches/{b}`) and its classic protection (`GET /branches/{b}`), both readable with
read access, once per `RULES_EVERY` a base branch.
"""

from __future__ import annotations

import time
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ao.errors import ExternalError
from ao.record.forge import Annotation, FailureDetail, PullRequest
from ao.sanitize import clean
from ao.world.forge.github_client import required_contexts

if TYPE_CHECKING:  # the layer below, for the types of the methods it lends
    from ao.world.forge.github_issues import GitHubIssues as _Below
else:  # at run time the layers meet in GitHubForge (github.py), not in a chain
    from ao.world.forge.github_client import GitHubClient as _Below


LOG_TAIL_LINES = 80
PAGES = 10  # 1,000 check runs or statuses at most
RULES_EVERY = 300.0
_FAILED = ("failure", "timed_out", "cancelled", "action_required")


class GitHubChecks(_Below):
    """Failure details and branch rules."""

    _rules: dict[str, tuple[float, list[dict[str, Any]], list[str]]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rules = {}

    def _pages(self, what: str, path: str, key: str) -> list[dict[str, Any]]:
        """Every item of a paginated list answered as `{total_count, <key>: [...]}`."""
        out: list[dict[str, Any]] = []
        for page in range(1, PAGES + 1):
            data = self._get(what, f"{path}{'&' if '?' in path else '?'}per_page=100"
                                   f"&page={page}")
            batch = data.get(key) or []
            out += batch
            if not batch or len(out) >= int(data.get("total_count") or 0):
                break
        return out

    def failure_details(self, pr: PullRequest) -> list[FailureDetail]:
        return self.details_at(pr.head_sha)

    def details_at(self, sha: str) -> list[FailureDetail]:
        """The failing check runs and statuses of a commit, with their annotations and logs."""
        out = []
        for run in self._pages("check runs", f"/commits/{sha}/check-runs", "check_runs"):
            if run.get("conclusion") not in _FAILED:
                continue
            raw = self._get("annotations", f"/check-runs/{run['id']}/annotations")
            annotations = [Annotation(a.get("path", ""), a.get("start_line"),
                                      clean(a.get("message") or "")[:300],
                                      a.get("annotation_level", "failure")) for a in raw]
            output = run.get("output") or {}
            text = "\n".join(str(x) for x in (output.get("title"), output.get("summary"),
                                               output.get("text")) if x)
            out.append(FailureDetail(check=clean(str(run.get("name"))),
                                     url=run.get("html_url") or "",
                                     output=clean(text)[:4000],
                                     annotations=tuple(annotations[:30]),
                                     log_tail=self._job_log_tail(int(run["id"]))))
        for st in self._pages("statuses", f"/commits/{sha}/status", "statuses"):
            if st.get("state") in ("failure", "error"):
                out.append(FailureDetail(check=clean(str(st.get("context"))),
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

    def blocked_by(self, pr: PullRequest) -> str:
        """The rule that holds a BLOCKED PR, in words ("" when it cannot be read)."""
        try:
            rules, required = self._branch_rules(pr.base)
        except ExternalError:
            return ""
        return block_reason(pr, rules, required)

    def _branch_rules(self, base: str) -> tuple[list[dict[str, Any]], list[str]]:
        cached = self._rules.get(base)
        if cached and time.monotonic() - cached[0] < RULES_EVERY:
            return cached[1], cached[2]
        b = quote(base, safe="")
        rules = self._get("branch rules", f"/rules/branches/{b}")
        branch = self._get("branch protection", f"/branches/{b}")
        checks = ((branch.get("protection") or {}).get("required_status_checks") or {})
        required = [str(c) for c in checks.get("contexts") or []] \
            if checks.get("enforcement_level", "off") != "off" else []
        rules = [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []
        self._rules[base] = (time.monotonic(), rules, required)
        return rules, required


_RULES = {
    "required_signatures": "commits must be signed",
    "required_linear_history": "the history must be linear (no merge commits)",
    "update": "updates to the branch are restricted",
    "code_scanning": "code scanning results are required",
    "workflows": "required workflows must pass",
}




def block_reason(pr: PullRequest, rules: list[dict[str, Any]], required: list[str]) -> str:
    """The rules a BLOCKED PR does not meet, most actionable first. Pure."""
    said: list[str] = []
    for r in rules:
        params = r.get("parameters") or {}
        kind = str(r.get("type") or "")
        where = f" (ruleset {r['ruleset_id']})" if r.get("ruleset_id") else ""
        if kind == "pull_request":
            said += [p + where for p in _review_rules(pr, params)]
        elif kind == "required_deployments":
            envs = ", ".join(map(str, params.get("required_deployment_environments") or []))
            said.append(f"deployments to {envs or 'an environment'} must succeed{where}")
        elif kind in _RULES:
            said.append(_RULES[kind] + where)
    checks = {c.name: c for c in pr.checks.checks}
    unmet = []
    for name in required_contexts(rules, required):
        c = checks.get(name)
        if c is None:
            unmet.append(f'required check "{name}" has not run')
        elif c.failed:
            unmet.append(f'required check "{name}" failed')
        elif c.conclusion not in ("success", "neutral", "skipped"):
            unmet.append(f'required check "{name}" is pending')
    return clean("; ".join(unmet + said))[:300]


def _review_rules(pr: PullRequest, params: dict[str, Any]) -> list[str]:
    out = []
    count = int(params.get("required_approving_review_count") or 0)
    if count and pr.review_decision != "approved":
        out.append(f"{count} approving review{'s' if count > 1 else ''} required")
    if params.get("require_code_owner_review"):
        out.append("a code owner's review is required")
    if params.get("required_review_thread_resolution"):
        out.append("every review conversation must be resolved")
    if params.get("require_last_push_approval"):
        out.append("the last push must be approved by someone other than its author")
    return out
