"""The local forge's CI (the second half of `LocalForge`): the project's `ci.command` run by a
detached runner (ci_runner.py) in a clean checkout of one commit, once per sha, for PR heads,
main's heads (mainwatch.py) and the merge train's commits (local_train.py); its verdicts and
the failure details read back from the logs; and main's own line of merges.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ao import environment, paths
from ao.record.forge import NONE, Annotation, Check, CheckSummary, FailureDetail, PullRequest
from ao.world import workspace

if TYPE_CHECKING:
    from ao.config import ProjectConfig
    from ao.record.store import Store

LOG_TAIL_LINES = 80
NONE_CHECKS = CheckSummary(NONE, ())
_ANNOTATION = re.compile(r"^(?:[A-Z]+\s+)?([\w./-]+\.\w+):(\d+):?\s*(.*)$")


class LocalCI:
    project: ProjectConfig
    store: Store
    repo: Path

    def _refresh(self, max_age: float = 0.0) -> dict[str, str]:
        raise NotImplementedError

    def _fetch(self) -> None:
        raise NotImplementedError

    # ---- main's own CI (mainwatch.py) ----------------------------------------------------

    def main_head(self) -> str | None:
        """The default branch's head on the remote (as this tick read it)."""
        return self._refresh(max_age=2.0).get(self.project.default_branch)

    def main_ci(self, sha: str, start: bool = True) -> str:
        """CI's verdict on a commit of main: passing | failing | error | pending, or none
        (never run; with `start`, it is started now)."""
        if start:
            self._run_ci(self.project.default_branch, sha)
        row = self.store.local_ci(self.project.name, sha)
        return str(row["status"]) if row else "none"

    def first_parents(self, since: str, head: str) -> list[str]:
        """Main's first-parent commits after `since` up to `head`, oldest first: its merges."""
        self._fetch()
        proc = workspace.git(self.repo, "rev-list", "--first-parent", "--reverse",
                             f"{since}..{head}", check=False)
        return proc.stdout.split() if proc.returncode == 0 else [head]

    def pr_of_merge(self, sha: str) -> tuple[int, str] | None:
        """The PR (number, branch) whose merge made commit `sha` of main."""
        for row in self.store.local_prs(self.project.name):
            if row.get("merged_sha") == sha:
                return int(row["number"]), str(row["branch"])
        return None

    # ---- CI -------------------------------------------------------------------------------

    def ci_log(self, branch: str, sha: str) -> Path:
        owner = next((s for s in self.store.sessions(self.project.name) if s.branch == branch),
                     None)
        d = paths.session_dir(self.project.name, owner.id) / "ci" if owner else \
            paths.home() / "forge" / self.project.name / "ci"
        paths.ensure_dir(d)
        return d / f"{sha}.log"

    def _checks(self, sha: str) -> CheckSummary:
        """The head's CI as recorded (pending until a run for it is recorded)."""
        if not self.project.ci_command:
            return NONE_CHECKS
        row = self.store.local_ci(self.project.name, sha)
        status = str(row["status"]) if row else "pending"
        conclusion = {"passing": "success", "failing": "failure", "error": "error"}.get(
            status, "pending")
        return CheckSummary.of([Check("ci", conclusion, f"file://{row['log'] if row else ''}",
                                      self.project.ci_command)])

    def _run_ci(self, branch: str, sha: str) -> None:
        """Start CI for the head unless a run for it is recorded; again when its runner died
        without a verdict (machine restart, kill -9)."""
        row = self.store.local_ci(self.project.name, sha)
        if row is not None and row["status"] == "pending" and row["pid"] and \
                not paths.pid_alive(int(row["pid"])):
            self.store.reset_local_ci(self.project.name, sha)
            row = None
        if row is not None and row["status"] != "pending" and \
                _ran(str(row["log"] or "")) not in (None, self.project.ci_command):
            # the project's CI command changed since this verdict: it is run again (the old
            # verdict was of a command nobody runs any more)
            self.store.reset_local_ci(self.project.name, sha)
            row = None
        if row is None:
            log = self.ci_log(branch, sha)
            if self.store.claim_local_ci(self.project.name, sha, str(log)):
                self._start_ci(sha, log)

    def _start_ci(self, sha: str, log: Path) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ao.world.forge.ci_runner", "--repo", str(self.repo),
             "--project", self.project.name, "--sha", sha, "--log", str(log), "--timeout",
             str(self.project.ci_timeout), "--command", self.project.ci_command or "true"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
            # code the agent wrote runs here: no tokens, only what the project passes
            env=environment.build(os.environ, (), {"AO_HOME": str(paths.ao_home())},
                                  dict(self.project.env)))
        self.store.set_local_ci(self.project.name, sha, pid=proc.pid)

    def failure_details(self, pr: PullRequest) -> list[FailureDetail]:
        return self.details_at(pr.head_sha)

    def details_at(self, sha: str) -> list[FailureDetail]:
        """CI's failure on a commit: the command, its `file:line` lines, the log's tail."""
        row = self.store.local_ci(self.project.name, sha)
        if row is None or row["status"] not in ("failing", "error"):
            return []
        try:
            text = Path(str(row["log"])).read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        lines = text.splitlines()
        annotations = []
        for line in lines:
            m = _ANNOTATION.match(line.strip())
            if m and not m.group(1).startswith(("http", "/usr", "<")):
                annotations.append(Annotation(m.group(1), int(m.group(2)), m.group(3)[:300]))
        return [FailureDetail(
            check="ci", url=f"file://{row['log']}",
            output=f"`{self.project.ci_command}` exited {row['exit_code']}",
            annotations=tuple(annotations[:20]), log_tail="\n".join(lines[-LOG_TAIL_LINES:]))]


def _ran(log: str) -> str | None:
    """The command a CI log was written by (its first line, `$ command`), if it says."""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            first = f.readline()
    except OSError:
        return None
    return first[2:].rstrip("\n") if first.startswith("$ ") else None
