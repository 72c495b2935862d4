"""Ending a session, in one place: used by `ao session kill`, cleanup, the daemon's merged-PR
cleanup and crash recovery alike.

Steps, each idempotent, so an interrupted teardown is finished by the next one:
1. stop the agent (its tmux session);
2. the worktree: kept when removing it would lose work (uncommitted, untracked, unpushed,
   or no usable .git), unless `force`, which first saves that work under the session folder;
3. the local branch, by one rule: deleted once the worktree is gone, because by then all it
   held is merged, on the remote, or saved; kept with the worktree otherwise;
4. the remote branch, only on request and only when merged;
5. the record: the session's end state (its outcome follows from it) and `cleaned` once
   nothing of it is left.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from ao import paths
from ao.errors import AoError, BadInput, ExternalError
from ao.host_config import LOCAL, Host
from ao.record.state import ENDED, State
from ao.services import hostwork
from ao.world import hosts, remotes, tmux, worksafe, workspace

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    from libtmux import Server

    from ao.config import ProjectConfig
    from ao.record.store import Session, Store
    from ao.world.agents.base import Machine, Profile


@dataclass
class Teardown:
    worktree: str = "none"  # none | kept | removed
    why: list[str] = field(default_factory=list)  # why the worktree was kept
    saved: list[str] = field(default_factory=list)
    branch: str = "none"  # none | kept | deleted | in use at <worktree>

    def as_dict(self) -> dict[str, object]:
        return {"worktree": self.worktree, "why": self.why, "saved": self.saved,
                "branch": self.branch}


def disposable(project: ProjectConfig) -> tuple[str, ...]:
    return (*worksafe.DISPOSABLE, *project.disposable)


def stop_agent(srv: Server, s: Session, repo: Path | None = None) -> None:
    """The agent ends, and with it its steps' work: a reviewer agent and, given the project's
    repository, the check and review worktrees (detached checkouts of pushed commits:
    nothing of anyone's is in them)."""
    h = tmux.host_of(srv)
    if h is not None:  # its processes waited for there, as kill_session does here
        try:
            hostwork.end_session(h, srv.socket_name or "ao", s.id)
        except AoError as e:  # a host that does not answer: what follows goes on (a merge's
            # record); its worktree is the next step's, which says so
            log.warning("%s: could not end it on host %s: %s", s.id, h.name, e)
    else:
        tmux.kill_session(srv, s.id)
    # the reviewer runs here even for a session on a host (stepwork.py)
    here = tmux.server(srv.socket_name or "ao") if h is not None else srv
    tmux.kill_session(here, f"{s.id}-review")
    end_checks(s.project, s.id)
    d = paths.worktrees_dir(s.project)
    if repo is not None and d.is_dir():
        for wt in [*d.glob(f"{s.id}-review"), *d.glob(f"{s.id}-check-*")]:
            workspace.remove_worktree(repo, wt)


def teardown(srv: Server, store: Store, project: ProjectConfig, s: Session, *,
             end: State | None, profiles: Callable[[str], Profile], force: bool = False,
             clean: bool = True, delete_remote: bool = False, note: str | None = None
             ) -> Teardown:
    """Stop, keep or save work, remove the worktree and branch, record. `end` is the state a
    live session ends in (killed, failed, merged); `clean` marks it cleaned when nothing is
    left; `profiles` looks up an agent's profile (`agents.get`: the removed worktree's trust
    entry is its agent's to forget). Returns what happened."""
    stop_agent(srv, s, project.path)
    if s.host == LOCAL:
        out = _here(project, s, force, profiles)
    else:
        try:
            out = _on_host(srv, project, s, force, profiles)
        except hosts.Unreachable as e:
            if not force:
                raise BadInput(f"{s.id}'s host {s.host} does not answer ({e.message})",
                               f"`ao session kill {s.id} --force` gives it up: recorded "
                               "killed, its worktree there left as it is; `ao spawn` starts "
                               "its task again elsewhere from what was pushed") from None
            # a host lost for good: its session is given up here, its folder there untouched
            out = Teardown(worktree="kept", why=[f"host {s.host} does not answer: its "
                                                 "worktree there was left as it is"])
    merged = s.merged or s.state is State.MERGED or end is State.MERGED
    if delete_remote and merged and s.branch and \
            remotes.remote_branch_exists(project.path, project.remote, s.branch):
        workspace.git(project.path, "push", "-q", project.remote, "--delete", s.branch,
                      check=False)
    current = store.session(s.id)
    if end is not None and current.state not in ENDED:
        current = store.set_state(s.id, end, note=note)
    if clean and not out.why and current.state in ENDED - {State.CLEANED}:
        store.set_state(s.id, State.CLEANED)
    return out


@dataclass(frozen=True)
class WorkPlace:
    """Where a session's work is kept: the clone its worktree belongs to, the folder its
    saved work goes to, and how a saved file is named to the user (here, or `host:path`)."""

    repo: Path
    saved_in: Path
    host: str = LOCAL

    def show(self, f: Path) -> str:
        return paths.display(f) if self.host == LOCAL else f"{self.host}:{f}"


def work_place(project: ProjectConfig, sid: str, host: Host | None = None) -> WorkPlace:
    """A session's (or a worktree named for one) work place: here, or on its SSH host, whose
    clone stands for the project's and whose session folder holds what is saved."""
    if host is None:
        return WorkPlace(project.path, paths.session_dir(project.name, sid) / "saved")
    where = hostwork.place(host, project.name, sid)
    return WorkPlace(Path(str(where.repo)), Path(str(where.session_dir)) / "saved", host.name)


def _on_host(srv: Server, project: ProjectConfig, s: Session, force: bool,
             profiles: Callable[[str], Profile]) -> Teardown:
    """The worktree and branch on the session's SSH host: the same steps and rules, with
    workspace's commands run there (its clone stands for the project's, its session folder
    holds what is saved)."""
    host = tmux.host_of(srv)
    if host is None or host.name != s.host:
        raise ExternalError(f"{s.id} runs on host {s.host}, not where this was asked",
                            "a bug: report it")
    place = work_place(project, s.id, host)
    with workspace.on(host):
        out = _here(replace(project, path=place.repo), s, force, profiles, place,
                    hostwork.HostMachine(host))
    return out


def _here(project: ProjectConfig, s: Session, force: bool, profiles: Callable[[str], Profile],
          place: WorkPlace | None = None, machine: Machine | None = None) -> Teardown:
    """The worktree, then the branch (workspace's commands run where `workspace.on` says);
    `place` says where saved work goes and how it is named (a host's, or here)."""
    out = Teardown()
    place = place or work_place(project, s.id)
    wt = Path(s.worktree) if s.worktree else paths.worktree_path(s.project, s.id)
    if workspace.exists(wt):
        _worktree(project, s, wt, force, place, out, machine, profiles)
    elif workspace.registered(place.repo, wt):
        # no folder, still registered: a `git worktree add` killed outright left it "locked
        # initializing", with a HEAD that makes every later fetch fail ("bad object")
        workspace.remove_worktree(place.repo, wt)
    if s.branch and workspace.local_branch_exists(project.path, s.branch):
        _branch(project, s.branch, force, place.saved_in, place.show, out)
    return out


def _worktree(project: ProjectConfig, s: Session, wt: Path, force: bool, place: WorkPlace,
              out: Teardown, machine: Machine | None, profiles: Callable[[str], Profile]
              ) -> None:
    if workspace.half_made(project.path, wt):  # git never finished making it: no work
        workspace.remove_worktree(project.path, wt)
        out.worktree = "removed"
        return
    risk = worksafe.work_at_risk(wt, project.remote, project.default_branch,
                                  disposable(project), branch=s.branch)
    if risk and force and workspace.exists(wt / ".git"):
        saved = worksafe.save_work(wt, place.saved_in, project.remote, project.default_branch,
                                    disposable(project), branch=s.branch)
        out.saved = [place.show(f) for f in saved]
        risk = []
    if risk:
        out.worktree, out.why = "kept", risk
        return
    workspace.remove_worktree(project.path, wt)
    out.worktree = "removed"
    with contextlib.suppress(AoError):  # a trust entry `prepare` made, here or on its host
        profiles(s.agent or "command").forget(wt, machine)


def _branch(project: ProjectConfig, branch: str, force: bool, saved_in: Path,
            show: Callable[[Path], str], out: Teardown) -> None:
    if out.worktree != "kept":
        if out.worktree != "removed":  # (removing it pruned already)
            # a worktree folder removed by hand is still registered, and holds the branch
            workspace.git(project.path, "worktree", "prune", check=False)
        elsewhere = workspace.checked_out_at(project.path, branch)
        if elsewhere is not None:
            # the task's branch, continued by a later session (or in a human's worktree):
            # its work is safe there, and this session's end does not wait on it
            out.branch = f"in use at {elsewhere}"
            return
    # the branch's own commits are checked too: its worktree may have been gone before
    # this teardown (deleted by hand, a start cut short), so "removed above" proves nothing
    lone = worksafe.branch_unpushed(project.path, project.remote, project.default_branch,
                                     branch)
    if lone and out.worktree == "removed" and any(x.endswith(".bundle") for x in out.saved):
        lone = []  # saved above with the worktree's work (its bundle holds the branch)
    if lone and force and out.worktree != "kept":
        bundle = worksafe.bundle_commits(
            project.path, saved_in / f"branch-{time.strftime('%Y%m%d-%H%M%S')}.bundle",
            project.remote, project.default_branch, [f"refs/heads/{branch}"])
        out.saved.append(show(bundle))
        lone = []
    if out.worktree == "kept" or lone:
        out.branch = "kept"
        if lone and out.worktree != "kept":
            out.why.append(f"branch {branch} has {len(lone)} commit(s) not on the remote")
        return
    try:
        workspace.delete_branch(project.path, branch)
        out.branch = "deleted"
    except AoError as e:  # e.g. checked out by a worktree a human made
        out.branch = "kept"
        out.why.append(f"branch {branch} not deleted: {e.message}")


# ---- the checks a session's steps started (stepwork.py writes their pid files) ----------

def _end_tree(pid: int, started: float) -> None:
    """End a check's runner and everything under it, if the pid is still the process that
    was started (not one the system gave the number to since)."""
    procs = paths.process_tree([pid])
    try:
        if not procs or abs(procs[0].create_time() - started) > 5:
            return
    except psutil.Error:
        return
    paths.end_processes(procs, grace=0)


def end_checks(project: str, sid: str, pattern: str = "*.pid") -> None:
    """The check processes a session started whose pid files match `pattern` (all of them
    when its session ends)."""
    d = paths.session_dir(project, sid) / "steps"
    if d.is_dir():
        for f in d.glob(pattern):
            pid, started = pid_file(f)
            if pid is not None:
                _end_tree(pid, started)


def pid_file(f: Path) -> tuple[int | None, float]:
    try:
        pid, started = f.read_text(encoding="utf-8").split()
        return int(pid), float(started)
    except (OSError, ValueError):
        return None, 0.0
