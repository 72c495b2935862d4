"""Merging a session's PR, for a human (`ao pr merge`, the board's merge key) and for the
daemon alike: the same merge gate (gate.py) decides, and a merge is recorded the same way
whoever made it (stop the agent, close the task, tell the hooks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import forge as forgemod
from . import paths, steps
from .config import Config, ProjectConfig
from .errors import AoError, BadInput
from .events import Event, emit
from .forge.base import Forge, PullRequest
from .gate import Verdict, merge_gate
from .notify import Notifier
from .reactions import Policy
from .state import State
from .store import Session, Store
from .teardown import stop_agent

if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    from libtmux import Server


def session_gate(store: Store, project: ProjectConfig, s: Session,
                 pr: PullRequest) -> Verdict:
    """The merge gate for a session's PR, its task's steps included (steps.py): the one
    answer the daemon, `ao pr merge`, `ao pr ls`, the board and the web share."""
    task_steps = store.task_steps(project.name, s.task)
    done = {str(r["fingerprint"]) for r in store.attempts(s.id)}
    return merge_gate(pr, Policy.for_project(project).gate, expected_sha=pr.head_sha,
                      required=steps.gates(task_steps), passed=steps.passed(done, pr.head_sha))


def merge_now(cfg: Config, store: Store, srv: Server, s: Session,
              forge: Forge | None = None) -> tuple[int, str]:
    """Merge the session's PR if the gate allows it now; (PR number, merge sha)."""
    project = cfg.project(s.project)
    forge = forge or forgemod.for_project(project, store)
    pr = forge.find_pr(s.branch) if s.branch else None
    if pr is None:
        raise BadInput(f"{s.id} has no pull request yet", "its agent must push its branch")
    verdict = session_gate(store, project, s, pr)
    if not verdict:
        raise BadInput(f"{s.id}: PR #{pr.number} cannot merge: {verdict.reason}",
                       "`ao pr ls` shows every PR's state; see docs/forges.md (the merge gate)")
    sha = forge.merge(pr, pr.head_sha)
    emit(Event("pr.merged_by_human", s.project, s.id, s.task, {"pr": pr.number, "sha": sha}),
         store)
    store.update_session(s.id, pr_state="merged")
    if s.state in (State.WORKING, State.PR_OPEN, State.NEEDS_HUMAN):
        store.set_state(s.id, State.MERGED)
        emit(Event("session.merged", s.project, s.id, s.task, {"reason": "merged by hand"}),
             store)
        record_merged(cfg, store, srv, project, forge, s, sha, Notifier(cfg, store))
    paths.poke_daemon()  # dependents start now, not at the next poll
    return pr.number, sha


def record_merged(cfg: Config, store: Store, srv: Server, project: ProjectConfig, forge: Forge,
                  s: Session, sha: str, notifier: Notifier) -> None:
    """What follows a merge: the agent stops now (its worktree stays for the grace period),
    the task is closed (and its GitHub issue), and the `merged` event reaches the hooks."""
    stop_agent(srv, s, project.path)
    store.update_session(s.id, step="merged")
    row = store.task(project.name, s.task)
    store.put_task(project.name, s.task, s.title, issue_state="closed")
    if project.forge == "github" and row and row.get("issue_number"):
        try:
            forge.close_issue(int(row["issue_number"]))
        except AoError as e:
            emit(Event("issue.close_failed", project.name, s.id, s.task, {"error": str(e)}),
                 store)
    event = emit(Event("merged", project.name, s.id, s.task, {"sha": sha}), store)
    notifier.hooks(event)
