"""Merging a session's PR, for a human (`ao pr merge`, the board's merge key) and for the
daemon alike: the same merge gate (gate.py) decides, and a merge is recorded the same way
whoever made it (stop the agent, close the task, tell the hooks)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from ao import paths
from ao.decide import steps
from ao.decide.gate import Verdict, merge_gate
from ao.decide.reactions import Policy
from ao.errors import AoError, BadInput
from ao.record.events import Event, emit
from ao.record.forge import Enqueued, Forge, PullRequest
from ao.record.state import State
from ao.services.notify import Notifier
from ao.services.teardown import stop_agent

if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    from libtmux import Server

    from ao.config import Config, ProjectConfig
    from ao.record.store import Session, Store

log = logging.getLogger(__name__)


def session_gate(store: Store, project: ProjectConfig, s: Session,
                 pr: PullRequest) -> Verdict:
    """The merge gate for a session's PR, its task's steps included (steps.py): the one
    answer the daemon, `ao pr merge`, `ao pr ls`, the board and the web share."""
    task_steps = store.task_steps(project.name, s.task)
    done = {str(r["fingerprint"]) for r in store.attempts(s.id)}
    return merge_gate(pr, Policy.for_project(project).gate, expected_sha=pr.head_sha,
                      required=steps.gates(task_steps), passed=steps.passed(done, pr.head_sha))


def merge_now(cfg: Config, store: Store, srv: Server, s: Session,
              forge: Forge) -> tuple[int, str]:
    """Merge the session's PR on its project's forge (`forge.for_project`, from the face
    that asks) if the gate allows it now; (PR number, merge sha), the sha empty when a merge
    queue took it (it merges later)."""
    project = cfg.project(s.project)
    pr = forge.find_pr(s.branch) if s.branch else None
    if pr is None:
        raise BadInput(f"{s.id} has no pull request yet", "its agent must push its branch")
    verdict = session_gate(store, project, s, pr)
    if not verdict:
        raise BadInput(f"{s.id}: PR #{pr.number} cannot merge: {verdict.reason}",
                       "`ao pr ls` shows every PR's state; see docs/forges.md (the merge gate)")
    try:
        sha = forge.merge(pr, pr.head_sha)
    except Enqueued as q:  # a merge queue merges it once CI passed on it merged onto main
        record_enqueued(store, s, pr.number, pr.head_sha, q, by="human")
        return pr.number, ""
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


def record_enqueued(store: Store, s: Session, number: int | None, sha: str, q: Enqueued,
                    by: str | None = None) -> None:
    """A merge queue took the PR's head: the merge recorded as made (never queued twice),
    the queueing and its time once, and said (`pr.enqueued`)."""
    store.record_attempt(s.id, "merge", f"merge:{sha}", {"queued": q.state})
    if store.record_attempt(s.id, "queued", f"queued:{sha}", {"at": time.time()}):
        data = {"sha": sha, "pr": number, "position": q.position}
        emit(Event("pr.enqueued", s.project, s.id, s.task, {**data, "by": by} if by else data),
             store)


# the agents of merged sessions stop here, beside the daemon's next merges and looks: an
# agent takes up to its grace (Claude Code 1-2 s) to exit, and a batch of merges in one tick
# waited for each in turn. Threads end with the process (interpreter exit joins them)
_STOPS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ao-stop")
_BEGUN: set[Future[None]] = set()
_LOCK = threading.Lock()


def record_merged(cfg: Config, store: Store, srv: Server, project: ProjectConfig, forge: Forge,
                  s: Session, sha: str, notifier: Notifier) -> None:
    """What follows a merge: the task is closed (and its GitHub issue), the `merged` event
    reaches the hooks, and the agent is stopped beside what comes next (its worktree stays
    for the grace period)."""
    stop = _STOPS.submit(_stop, srv, s, project)
    with _LOCK:
        _BEGUN.add(stop)
    stop.add_done_callback(_BEGUN.discard)
    store.update_session(s.id, step="merged")
    finish_record(store, project, forge, s, sha, notifier)


def finish_record(store: Store, project: ProjectConfig, forge: Forge, s: Session, sha: str,
                  notifier: Notifier) -> None:
    """The steps after a merge, each once, and the mark that they are all done: a process
    killed between the merge and the end of these is finished by the next daemon
    (`unfinished_records`), so the task is closed, its issue too, and the `merged` event
    and hooks come, once."""
    if store.attempts(s.id, "merge-recorded"):
        return
    row = store.task(project.name, s.task)
    store.put_task(project.name, s.task, s.title, issue_state="closed")
    if project.forge == "github" and row and row.get("issue_number"):
        try:  # closing is idempotent: a retry after a crash is safe
            forge.close_issue(int(row["issue_number"]))
        except AoError as e:
            emit(Event("issue.close_failed", project.name, s.id, s.task, {"error": str(e)}),
                 store)
    # once: a record finished after a crash (or of a merge made before this mark existed)
    # finds the event already there
    if not any(e["type"] == "merged" for e in store.session_events(s.id)):
        event = emit(Event("merged", project.name, s.id, s.task, {"sha": sha}), store)
        notifier.hooks(event)
    store.record_attempt(s.id, "merge-recorded", f"merge-recorded:{sha}")


def unfinished_records(store: Store, projects: list[ProjectConfig]) -> list[Session]:
    """Merged sessions whose record a crash cut short (no `merge-recorded` mark)."""
    return [s for p in projects for s in store.sessions(p.name, states={State.MERGED})
            if not store.attempts(s.id, "merge-recorded")]


def _stop(srv: Server, s: Session, project: ProjectConfig) -> None:
    try:
        stop_agent(srv, s, project.path)
    except Exception:  # a stop that fails is logged; the next cleanup stops it again
        log.exception("stopping %s's agent after its merge failed", s.id)


def wait_for_stops(timeout: float | None = None) -> None:
    """Every agent stop begun so far, finished (a test, or a command before it exits)."""
    with _LOCK:
        begun = list(_BEGUN)
    wait(begun, timeout)
