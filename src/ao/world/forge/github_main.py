"""Main's own checks on GitHub, for keeping main green (mainwatch.py): its head, the verdict of
GitHub's checks on a commit of it, its merges since a commit, and the PR each merge came from.
The fourth layer of `GitHubForge`.

GitHub runs a repository's checks on every push to main itself, so every merge has its own
verdict and ao never starts a run (a commit GitHub did not check is left out of the search for
the merge that turned main red, not waited for). Main's head and its checks come with the
poll's one GraphQL request (`saw_main`); REST is read only for earlier commits (the search)
or when no poll ran lately.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ao.decide.redmain import FAILING, PASSING
from ao.errors import ExternalError
from ao.record.forge import Check, CheckSummary
from ao.world.forge.github_client import required_contexts

if TYPE_CHECKING:  # the layer below, for the types of the methods it lends
    from ao.world.forge.github_checks import GitHubChecks as _Below
else:  # at run time the layers meet in GitHubForge (github.py), not in a chain
    from ao.world.forge.github_client import GitHubClient as _Below


COMPARE_LIMIT = 250  # commits GitHub's compare lists at most
FRESH = 5.0  # seconds main as the last poll read it stands (until ao merges)


class GitHubMain(_Below):
    runs_ci_on_demand = False  # GitHub's checks run on its pushes, not when ao asks
    _main_seen: tuple[float, str, tuple[Check, ...]] | None = None

    def saw_main(self, sha: str, checks: tuple[Check, ...]) -> None:
        """Main's head and its checks as the poll's one GraphQL request read them: what the
        watch uses while fresh (three REST reads a tick otherwise)."""
        self._main_seen = (time.monotonic(), sha, checks)

    def _fresh_main(self) -> tuple[str, tuple[Check, ...]] | None:
        seen = self._main_seen
        if seen is None or time.monotonic() - seen[0] > FRESH:
            return None
        return seen[1], seen[2]

    def main_head(self) -> str | None:
        fresh = self._fresh_main()
        if fresh is not None:
            return fresh[0]
        branch = self._get("main's head", f"/branches/{quote(self.project.default_branch)}")
        return ((branch.get("commit") or {}).get("sha")) or None

    def main_ci(self, sha: str, start: bool = True) -> str:
        """The verdict of GitHub's checks on a commit of main: passing | failing | pending,
        or none (nothing ran on it). `start` is ignored: GitHub runs them on its own."""
        fresh = self._fresh_main()
        if fresh is not None and fresh[0] == sha:
            found = list(fresh[1])
        else:
            runs = self._pages("check runs", f"/commits/{sha}/check-runs", "check_runs")
            statuses = self._pages("statuses", f"/commits/{sha}/status", "statuses")
            found = [_run(r) for r in runs] + [
                Check(str(x.get("context")), str(x.get("state") or "pending"))
                for x in statuses]
        checks = [c for c in found
                  if c.conclusion not in ("cancelled", "skipped", "neutral", "stale")]
        # a run cancelled by the next push says nothing of its commit; where the branch
        # names required checks, only those count (an optional red check holds nothing)
        required = self._required_checks()
        if required:
            checks = [c for c in checks if c.name in required]
        overall = CheckSummary.of(checks).overall
        return {"passing": PASSING, "failing": FAILING, "pending": "pending"}.get(overall,
                                                                              "none")

    def _required_checks(self) -> set[str]:
        try:
            rules, required = self._branch_rules(self.project.default_branch)
        except ExternalError:
            return set()
        return set(required_contexts(rules, required))

    def first_parents(self, since: str, head: str) -> list[str]:
        """Main's first-parent commits after `since` up to `head`, oldest first (its merges),
        from GitHub's compare of the two."""
        data = self._get("main's merges", f"/compare/{since}...{head}")
        parents: dict[str, str | None] = {}
        for c in data.get("commits") or []:
            ps = [p.get("sha") for p in c.get("parents") or []]
            parents[str(c.get("sha"))] = ps[0] if ps else None
        out: list[str] = []
        at: str | None = head
        while at is not None and at != since and at in parents and len(out) < COMPARE_LIMIT:
            out.append(at)
            at = parents[at]
        return list(reversed(out)) or [head]

    def pr_of_merge(self, sha: str) -> tuple[int, str] | None:
        """The merged PR whose merge made commit `sha` of main (`GET /commits/{sha}/pulls`)."""
        pulls: list[dict[str, Any]] = self._get("the PR of a merge", f"/commits/{sha}/pulls")
        for p in pulls if isinstance(pulls, list) else []:
            if p.get("merge_commit_sha") == sha or p.get("merged_at"):
                return int(p["number"]), str((p.get("head") or {}).get("ref") or "")
        return None


def _run(r: dict[str, Any]) -> Check:
    """A REST check run: its conclusion once completed, else pending."""
    done = r.get("status") == "completed"
    return Check(str(r.get("name")), str(r.get("conclusion") or "pending") if done
                 else "pending")
