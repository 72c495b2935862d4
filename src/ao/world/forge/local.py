"""The local forge: pull requests, CI and reviews for a repository with no GitHub.

- a branch `ao/...` pushed to the project's remote with commits ahead of the default branch
  gets its PR when `create_pr` opens it (the daemon does, for every forge alike); reading
  (`poll`, `find_pr`, `ao pr ls`) opens nothing and starts nothing;
- CI is the project's `ci.command`, run by a background runner in a clean temporary checkout
  of the PR head, once per sha, output kept under the session folder; `serve` (the daemon's
  action after each poll, what GitHub's servers do by themselves) starts it;
- reviews come from `ao review`;
- merging writes a merge commit with `git merge-tree --write-tree` + `commit-tree` and pushes
  it to the default branch, refusing if the head moved or the merge conflicts; with
  `merge: queue` the PR is queued instead, and the merge train (local_train.py) merges it once
  CI passed on it merged onto main.

CI and main's own line live in local_ci.py (its second half).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ao.errors import BadInput, ExternalError, NothingToReview
from ao.record.forge import (
    FAILING,
    PASSING,
    PENDING,
    AgentReview,
    CheckSummary,
    FailureDetail,
    Issue,
    PollResult,
    PullRequest,
    QueueRemoval,
    ReviewComment,
)
from ao.sanitize import for_terminal
from ao.world import remotes, workspace
from ao.world.forge import local_train
from ao.world.forge.local_ci import NONE_CHECKS, LocalCI

if TYPE_CHECKING:
    from ao.config import ProjectConfig
    from ao.decide.plan import Plan
    from ao.record.store import Store

PREFIX = "ao/"


class LocalForge(LocalCI):
    name = "local"

    def __init__(self, project: ProjectConfig, store: Store, plan: Plan | None = None) -> None:
        self.project = project
        self.store = store
        self.plan = plan
        self.repo = project.path
        self.ns = f"refs/ao-forge/{project.name}"
        self._pair_cache: dict[tuple[str, str], tuple[str, str]] = {}
        self._fetched: dict[str, str] | None = None  # the remote's heads at the last fetch
        self._read_at = 0.0  # when the heads were last read (time.monotonic)

    # ---- tasks ----------------------------------------------------------------------------

    def resolve_task(self, key: str) -> Issue:
        if self.plan is None or key not in self.plan.tasks:
            raise BadInput(f"no task {key} in the plan", "the local forge takes tasks from the "
                           "project's plan")
        t = self.plan.tasks[key]
        row = self.store.task(self.project.name, key)
        state = row["issue_state"] if row and row.get("issue_state") else "open"
        return Issue(number=0, title=t.title, body=t.body, state=state)

    def close_issue(self, number: int) -> None:
        """Tasks are closed through the store by the daemon; nothing lives elsewhere."""

    def comment(self, number: int, body: str) -> None:
        pr = next((p for p in self.store.local_prs(self.project.name) if p["number"] == number),
                  None)
        if pr is None:
            raise BadInput(f"no local PR #{number}", "see `ao pr ls`")
        self.store.add_local_review(self.project.name, number, "commented", body)

    # ---- polling --------------------------------------------------------------------------

    def _heads(self) -> dict[str, str]:
        """Every branch on the remote with its sha: one round trip."""
        proc = workspace.git(self.repo, "ls-remote", "--heads", self.project.remote,
                             check=False, timeout=60)
        if proc.returncode != 0:
            raise ExternalError(f"cannot list {self.project.remote}'s branches",
                                proc.stderr.strip()[-200:])
        heads = {}
        for line in proc.stdout.splitlines():
            sha, _, ref = line.partition("\t")
            heads[ref.removeprefix("refs/heads/")] = sha
        return heads

    def _fetch(self) -> None:
        remotes.fetch_retrying(self.repo, "-q", "--no-tags", self.project.remote,
                      f"+refs/heads/{PREFIX}*:{self.ns}/{PREFIX}*",
                      f"+refs/heads/{self.project.default_branch}:"
                      f"{self.ns}/{self.project.default_branch}", timeout=120)

    def _refresh(self, max_age: float = 0.0) -> dict[str, str]:
        """The remote's heads, fetched into the forge's refs when anything moved; with
        `max_age`, the heads read that recently are used as they are (a tick's PR openings
        after its poll: a `git ls-remote` each was most of a tick's cost at 50 sessions)."""
        if max_age and self._fetched and time.monotonic() - self._read_at < max_age:
            return self._fetched
        heads = self._heads()
        self._read_at = time.monotonic()
        if heads != self._fetched:  # nothing moved on the remote: nothing to fetch
            self._fetch()
            self._fetched = heads
        return heads

    def poll(self, branches: list[str]) -> PollResult:
        """What the forge holds for each branch: a read that changes nothing (a pushed
        branch has no PR until `create_pr`; CI starts in `serve`)."""
        result = PollResult()
        if not branches:
            return result  # nothing tracked: no round trip to the remote
        try:
            heads = self._refresh()
        except ExternalError as e:
            result.errors.append(str(e))
            return result
        result.pushed = set(heads)
        base = heads.get(self.project.default_branch)
        for branch in branches:
            try:
                result.prs[branch] = self._pr(branch, heads.get(branch), base)
            except ExternalError as e:
                result.errors.append(f"{branch}: {e}")
        return result

    def find_pr(self, branch: str) -> PullRequest | None:
        return self.poll([branch]).prs.get(branch)

    def create_pr(self, branch: str, title: str, body: str) -> PullRequest:
        """Open the branch's PR (numbered now), or name the open one; the branch must be
        pushed with commits ahead of the default branch."""
        heads = self._refresh(max_age=2.0)
        sha, base = heads.get(branch), heads.get(self.project.default_branch)
        if sha is None or base is None or self._pair(base, sha)[0] == "0":
            raise NothingToReview(branch, self.project.default_branch)
        row = self.store.local_pr(self.project.name, branch)
        if row is None or row["state"] != "open":
            self.store.open_local_pr(self.project.name, branch, title or self._title(branch))
        elif title:
            self.store.set_local_pr(self.project.name, row["number"], title=title)
        pr = self._pr(branch, sha, base)
        assert pr is not None
        return pr

    def serve(self, prs: dict[str, PullRequest | None]) -> None:
        """What the forge's server does on its own for what a poll saw: CI run once for each
        open PR's head (again when its runner died without a verdict), and a PR whose branch
        was deleted recorded closed."""
        for pr in prs.values():
            if pr is None:
                continue
            if pr.state == "closed":
                row = self.store.local_pr(self.project.name, pr.head_branch)
                if row is not None and row["state"] == "open" and row["number"] == pr.number:
                    self.store.set_local_pr(self.project.name, pr.number, state="closed")
            elif pr.state == "open" and self.project.ci_command:
                self._run_ci(pr.head_branch, pr.head_sha)
        if self.project.merge == "queue":
            local_train.advance(self)  # the merge train's next step (local_train.py)

    def _pr(self, branch: str, sha: str | None, base: str | None) -> PullRequest | None:
        row = self.store.local_pr(self.project.name, branch)
        if row is not None and row["state"] == "merged":
            new_work = sha is not None and base is not None and workspace.git(
                self.repo, "merge-base", "--is-ancestor", sha, base, check=False).returncode != 0
            if not new_work:
                return self._to_pr(row, row["merged_sha"] or sha or "", "merged", NONE_CHECKS)
            row = None  # the branch was pushed again after its merge: that is a new PR
        if row is None or row["state"] != "open":
            return None  # not opened (yet): `create_pr` opens it
        if sha is None or base is None:
            return self._to_pr(row, "", "closed", NONE_CHECKS)  # its branch was deleted
        mergeable = self._pair(base, sha)[1]
        return self._to_pr(row, sha, "open", self._checks(sha), mergeable,
                           local_train.queue_of(row, sha))

    def _pair(self, base: str, sha: str) -> tuple[str, str]:
        """Commits ahead, and whether it merges: the git work for a head depends only on the
        pair of shas, so it is done once per pair."""
        cached = self._pair_cache.get((base, sha))
        if cached is None:
            ahead = workspace.git(self.repo, "rev-list", "--count",
                                  f"{base}..{sha}").stdout.strip()
            mergeable = "mergeable" if self._merge_tree(base, sha)[0] else "conflicting"
            cached = self._pair_cache[(base, sha)] = (ahead, mergeable)
        return cached

    def _title(self, branch: str) -> str:
        key = branch.removeprefix(PREFIX).upper()
        if self.plan is not None:
            for k, t in self.plan.tasks.items():
                if k.lower() == branch.removeprefix(PREFIX):
                    return f"[{k}] {t.title}"
        return key

    def _to_pr(self, row: dict[str, Any], sha: str, state: str, checks: CheckSummary,
               mergeable: str = "unknown", queue: str | None = None) -> PullRequest:
        number = int(str(row["number"]))
        decision = self._decision(number)
        return PullRequest(
            number=number, url=f"local://{self.project.name}/pr/{number}", state=state,
            head_branch=str(row["branch"]), head_sha=sha, base=self.project.default_branch,
            title=str(row["title"]), mergeable=mergeable,
            review_decision=decision, checks=checks,
            # the local forge has one reviewer (`ao review`): its latest opinion stands
            reviews=(("reviewer", decision),) if decision else (),
            review_count=len(self.store.local_reviews(self.project.name, number)),
            created_at=float(str(row["created_at"])), queue=queue)

    def _decision(self, number: int) -> str | None:
        decision = None
        for r in self.store.local_reviews(self.project.name, number):
            if r["state"] in ("approved", "changes_requested"):
                decision = r["state"]
        return decision

    def _merge_tree(self, base: str, head: str) -> tuple[bool, str]:
        proc = workspace.git(self.repo, "merge-tree", "--write-tree", base, head, check=False)
        first = proc.stdout.split("\n", 1)[0].strip()
        return proc.returncode == 0, first

    # ---- the merge queue (local_train.py) ------------------------------------------------

    def queue_removal(self, pr: PullRequest) -> QueueRemoval | None:
        return local_train.removal(self, pr)

    def group_failures(self, removal: QueueRemoval) -> list[FailureDetail]:
        return local_train.group_failures(self, removal)

    # ---- reviews and merging --------------------------------------------------------------

    def review_comments(self, pr: PullRequest) -> list[ReviewComment]:
        return [ReviewComment(id=f"local-{r['id']}", author="reviewer", body=str(r["body"]),
                              path=r["path"], line=r["line"], created_at=str(r["created_at"]))
                for r in self.store.local_reviews(self.project.name, pr.number)
                if r["body"] and r["state"] in ("changes_requested", "commented")]

    def review(self, pr_number: int, state: str, body: str = "", path: str | None = None,
               line: int | None = None, sha: str | None = None) -> int:
        return self.store.add_local_review(self.project.name, pr_number, state, body, path,
                                           line, sha)

    def submit_review(self, pr: PullRequest, review: AgentReview, sha: str) -> str:
        body = f"{review.body}\n\n{review.marker}".strip()
        state = "approved" if review.verdict == "approve" else "changes_requested"
        # one transaction: the comments and the verdict are posted together or not at all
        with self.store.transaction():
            if any(review.marker and review.marker in str(r["body"])
                   for r in self.store.local_reviews(self.project.name, pr.number)):
                return "already posted"
            for path, line, text in review.comments:
                self.review(pr.number, "commented", text, path, line, sha)
            self.review(pr.number, state, body, sha=sha)  # last: its opinion stands
        return state

    def update_branch(self, pr: PullRequest, expected_sha: str) -> None:
        """The default branch merged into the PR's head on the remote, as GitHub's "Update
        branch" does (the local forge itself never needs it: it merges branches behind)."""
        heads = self._heads()
        base = heads.get(self.project.default_branch)
        if heads.get(pr.head_branch) != expected_sha or base is None:
            raise ExternalError(f"PR #{pr.number}'s head moved", "not updated; look again")
        self._fetch()
        clean, tree = self._merge_tree(expected_sha, base)
        if not clean:
            raise ExternalError(f"PR #{pr.number} conflicts with {self.project.default_branch}",
                                "not updated; the agent must rebase")
        merged = workspace.git(self.repo, "commit-tree", tree, "-p", expected_sha, "-p", base,
                               "-m", f"Merge branch '{self.project.default_branch}' into "
                               f"{pr.head_branch}").stdout.strip()
        push = workspace.git(self.repo, "push", "-q", self.project.remote,
                             f"--force-with-lease=refs/heads/{pr.head_branch}:{expected_sha}",
                             f"{merged}:refs/heads/{pr.head_branch}", check=False)
        if push.returncode != 0:
            raise ExternalError(f"PR #{pr.number}'s head moved while it was updated",
                                "not updated; look again")

    def merge(self, pr: PullRequest, expected_sha: str) -> str:
        """Merge at `expected_sha`; with `merge: queue`, queue it instead and raise
        `Enqueued` (the merge train merges it once CI passed on it merged onto main)."""
        heads = self._heads()
        current = heads.get(pr.head_branch)
        if current != expected_sha:
            raise ExternalError(f"PR #{pr.number}'s head moved ({(current or 'gone')[:10]} is "
                                f"not {expected_sha[:10]})", "not merged; look again")
        if self.project.merge == "queue" and \
                not self.store.main_watch(self.project.name).get("red"):
            # (while main is red only its revert or fix merges, and straight in: the train
            # waits for main to be green)
            raise local_train.enqueue(self, pr, expected_sha)
        base = heads.get(self.project.default_branch)
        if base is None:
            raise ExternalError(f"the remote has no {self.project.default_branch}",
                                "check the project's default_branch")
        self._fetch()
        if workspace.git(self.repo, "merge-base", "--is-ancestor", expected_sha, base,
                         check=False).returncode == 0:
            # merged already: a merge pushed by a process killed before it could record it
            self.store.set_local_pr(self.project.name, pr.number, state="merged",
                                    merged_sha=base)
            return base
        clean, tree = self._merge_tree(base, expected_sha)
        if not clean:
            raise ExternalError(f"PR #{pr.number} conflicts with {self.project.default_branch}",
                                "not merged; the agent must rebase")
        merged = workspace.git(
            self.repo, "commit-tree", tree, "-p", base, "-p", expected_sha, "-m",
            f"Merge pull request #{pr.number} from {pr.head_branch}\n\n"
            f"{for_terminal(pr.title)[:200]}",
        ).stdout.strip()
        # a plain push: it fast-forwards the default branch or is refused if that moved
        push = workspace.git(self.repo, "push", "-q", self.project.remote,
                             f"{merged}:refs/heads/{self.project.default_branch}", check=False)
        if push.returncode != 0:
            raise ExternalError(f"PR #{pr.number}: {self.project.default_branch} moved while "
                                "merging", "not merged; it is tried again on the next poll")
        self.store.set_local_pr(self.project.name, pr.number, state="merged", merged_sha=merged)
        return merged




__all__ = ["FAILING", "PASSING", "PENDING", "LocalForge"]
