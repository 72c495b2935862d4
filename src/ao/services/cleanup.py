"""Cleanup that never loses work. First a plan (what would go, what stays and why, the disk it
frees: exactly what `--dry-run` prints), then the same plan carried out.

A worktree with uncommitted changes, untracked files that are not ignored, or commits that are
not on the remote is never removed: it is kept and listed, or with `force` its work is first
saved as a patch and a bundle under the session folder.
"""

from __future__ import annotations

import shutil
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ao import paths
from ao.errors import AoError
from ao.host_config import LOCAL
from ao.record import events as eventsmod
from ao.record.events import Event, emit
from ao.record.state import LIVE, RUNNING, State
from ao.services import hostwork
from ao.services.stepwork import owner_of_step
from ao.services.teardown import disposable, teardown, work_place
from ao.world import agents, hosts, remotes, tmux, worksafe, workspace

if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    from libtmux import Server

    from ao.config import Config, ProjectConfig
    from ao.host_config import Host
    from ao.record.store import Session, Store

RETENTION = 30 * 86400.0
DEAD_RECHECK = 1.0  # seconds between a cleanup's two looks at an agent found dead
KEEP_TMUX = ("ao-daemon",)


@dataclass
class Item:
    kind: str  # session | orphan-worktree | orphan-tmux
    name: str
    project: str
    why: str  # why it goes
    worktree: Path | None = None
    branch: str | None = None
    bytes: int = 0
    keep: list[str] = field(default_factory=list)  # why the worktree must stay
    session: Session | None = None
    host: str = "local"  # the machine an orphan is on
    blind: bool = False  # what it holds could not be looked at: --force cannot save it


@dataclass
class Report:
    items: list[Item] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)
    archived: int = 0
    unswept: list[str] = field(default_factory=list)  # hosts not looked at, and why

    @property
    def freed(self) -> int:
        return sum(i.bytes for i in self.items if not i.keep)


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class Cleaner:
    def __init__(self, cfg: Config, store: Store, srv: Server,
                 host_server: Callable[[str], Server] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.srv = srv  # this machine's
        self.host_server = host_server or (lambda _name: srv)  # a host's, by its name

    def server_of(self, s: Session) -> Server:
        return self.host_server(s.host)

    def plan(self, projects: list[ProjectConfig], older_than: float = 0.0,
             delete_remote: bool = False) -> Report:
        report = Report()
        now = time.time()
        for p in projects:
            if delete_remote:
                report.items += self._merged_remote_branches(p)
            owned = set()
            for s in self.store.sessions(p.name):
                owned.add(s.id)
                why = self._why(p, s)
                if why is not None and not (older_than and now - s.updated_at < older_than):
                    report.items.append(self._session_item(p, s, why))
            report.items += self._orphan_worktrees(p, owned, paths.ao_home() / "worktrees"
                                                   / p.name)
        report.items += self._orphan_tmux(self.srv)
        for h in self._hosts_to_sweep(projects, report):
            try:
                with workspace.on(h):
                    for p in projects:
                        if h.name in p.hosts:
                            owned = {s.id for s in self.store.sessions(p.name)}
                            report.items += self._orphan_worktrees(
                                p, owned, Path(str(hostwork.workdir(h) / "worktrees" / p.name)),
                                h.name)
                # on a host, only sessions started under this installation's workdir: another
                # installation's sessions on the same account are not ours to end
                report.items += self._orphan_tmux(self.host_server(h.name), h.name,
                                                  str(hostwork.workdir(h)))
            except AoError as e:
                report.unswept.append(f"{h.name}: {_reason(h.name, e.message)}")
        return report

    def _session_item(self, p: ProjectConfig, s: Session, why: str) -> Item:
        """A session that should end, with what removing its worktree would lose (asked on
        its host when it runs on one)."""
        wt = Path(s.worktree) if s.worktree else None
        if wt is not None and s.host == LOCAL and not wt.exists():
            wt = None  # gone already: nothing to remove, nothing to count
        item = Item("session", s.id, p.name, why, wt, s.branch, session=s)
        if wt is not None and s.host != LOCAL:
            item.keep, item.blind, item.bytes = self._on_host(p, s, wt)
        elif wt is not None:
            item.keep, item.bytes = self._look(p, s, wt)
        return item

    def _look(self, p: ProjectConfig, s: Session, wt: Path) -> tuple[list[str], int]:
        """What removing the worktree would lose (by teardown's rules: its branch's own
        commits included) and its size; here, or where `workspace.on` says."""
        return (worksafe.work_at_risk(wt, p.remote, p.default_branch, disposable(p),
                                      branch=s.branch), workspace.disk_usage(wt))

    def _hosts_to_sweep(self, projects: list[ProjectConfig], report: Report) -> list[Host]:
        """The SSH hosts the projects use that are not in their unreachable backoff."""
        names = sorted({n for p in projects for n in p.hosts if n != LOCAL}
                       & set(self.cfg.hosts))
        out = []
        for name in names:
            if hosts.due(name, time.time()):
                out.append(self.cfg.hosts[name])
            else:
                report.unswept.append(f"{name}: unreachable, asked again after its backoff")
        return out

    def _on_host(self, p: ProjectConfig, s: Session, wt: Path) -> tuple[list[str], bool, int]:
        """`_look` at a worktree on an SSH host, asked there; and whether it could not be
        asked (then it is kept, even with --force: nothing could be saved)."""
        if not hosts.due(s.host, time.time()):
            return [f"host {s.host} is unreachable; asked again after its backoff"], True, 0
        try:
            host = tmux.host_of(self.server_of(s))
            if host is None:
                return [f"host {s.host} is not in the config"], True, 0
            with workspace.on(host):
                risk, size = self._look(p, s, wt)
            return risk, False, size
        except AoError as e:
            return [f"host {s.host}: {_reason(s.host, e.message)}"], True, 0

    def _why(self, p: ProjectConfig, s: Session) -> str | None:
        """Why this session should end now, or None to leave it alone."""
        if s.state is State.CLEANED:
            return None
        if s.state is State.MERGED or s.pr_state == "merged":
            return "its PR merged"
        if s.pr_state == "closed":
            return "its PR was closed"
        row = self.store.task(p.name, s.task)
        if row and row.get("issue_state") == "closed" and s.state in LIVE:
            return "its issue was closed"
        if s.state in (State.KILLED, State.FAILED):
            return f"it was {s.state.value}"
        if s.state in LIVE and s.state not in (State.QUEUED, State.SPAWNING):
            srv = self.server_of(s)
            pane = tmux.pane(srv, s.id)
            if pane is not None and not pane.dead:
                return None
            if s.pane_alive != 0:
                if s.host != LOCAL:
                    return None  # a host that does not answer shows no pane: not a death
                # a death nobody recorded (no daemon runs: the nightly cron): this run looks
                # again a moment later (and writes nothing: a dry run changes nothing)
                time.sleep(DEAD_RECHECK)
                pane = tmux.pane(srv, s.id)
                if pane is not None and not pane.dead:
                    return None
            return "its agent died and stayed dead"
        return None

    def _merged_remote_branches(self, p: ProjectConfig) -> list[Item]:
        """`--delete-remote`: remote branches of sessions that ended with their PR merged,
        whichever cleanup ended them (they were pruned only by the very run that ended the
        session). One that moved since its PR merged is kept: its new commits are nobody's
        merge."""
        sessions = self.store.sessions(p.name)
        live = {s.branch for s in sessions if s.branch and
                s.state not in (State.MERGED, State.CLEANED, State.KILLED, State.FAILED)}
        merged = {s.branch: s for s in sessions
                  if s.branch and (s.merged or s.pr_state == "merged") and s.branch not in live}
        if not merged:
            return []
        out = []
        for branch, sha in sorted(remotes.remote_head_shas(p.path, p.remote, "ao/").items()):
            s = merged.get(branch)
            if s is None or s.state not in (State.CLEANED, State.KILLED, State.FAILED):
                continue  # not ours, or a live (or merged, not yet torn down) session's
            item = Item("remote-branch", branch, p.name, f"{s.id}'s PR merged", branch=branch,
                        session=s, blind=True)  # on the remote: nothing to save here
            if not s.pr_head_sha:
                item.keep.append("the head its PR merged at was not recorded")
            elif sha != s.pr_head_sha:
                item.keep.append(f"it moved to {sha[:10]} after its PR merged at "
                                 f"{s.pr_head_sha[:10]}")
            out.append(item)
        return out

    def _orphan_worktrees(self, p: ProjectConfig, owned: set[str], d: Path,
                          host: str = LOCAL) -> list[Item]:
        """Worktrees in `d` (a project's folder of them, here or on a host inside
        `workspace.on`) that no live session owns, each with what removing it would lose."""
        out = []
        live = {s.id for s in self.store.sessions(p.name) if s.state is not State.CLEANED}
        for wt in workspace.folders(d):
            if wt.name in live or owner_of_step(wt.name) in live:
                continue  # a live session's own, or its reviewer's or check's (stepwork.py)
            item = Item("orphan-worktree", wt.name, p.name,
                        "no session owns it" if wt.name not in owned else "its session ended",
                        wt, bytes=workspace.disk_usage(wt), host=host,
                        blind=not workspace.exists(wt / ".git"))
            item.keep = worksafe.work_at_risk(wt, p.remote, p.default_branch, disposable(p))
            out.append(item)
        return out

    def _orphan_tmux(self, srv: Server, host: str = LOCAL,
                     under: str | None = None) -> list[Item]:
        # a session that is not cleaned yet owns its tmux (its own item ends it, if it ends)
        owners = {s.id for s in self.store.sessions() if s.state is not State.CLEANED}
        overviews = {f"ao-{name}" for name in self.cfg.projects}
        return [Item("orphan-tmux", name, "", "no live session owns it", host=host)
                for name in tmux.sessions(srv, under)
                if name not in owners and owner_of_step(name) not in owners
                and name not in KEEP_TMUX and name not in overviews]

    # ---- carrying it out ------------------------------------------------------------------

    def run(self, report: Report, force: bool = False, delete_remote: bool = False) -> Report:
        for item in report.items:
            try:
                self._one(item, report, force, delete_remote)
            except AoError as e:
                item.keep.append(f"failed: {e}")
        for name in {i.project for i in report.items if i.project in self.cfg.projects}:
            workspace.git(self.cfg.projects[name].path, "worktree", "prune", check=False)
        return report

    def _one(self, item: Item, report: Report, force: bool, delete_remote: bool) -> None:
        if item.kind == "orphan-tmux":
            tmux.kill_session(self.host_server(item.host), item.name)
            emit(Event("cleanup.tmux", data={"session": item.name, "host": item.host}),
                 self.store)
            return
        p = self.cfg.projects.get(item.project)
        if item.kind == "remote-branch" and p is not None and item.session is not None:
            if not item.keep and not remotes.delete_remote_branch(
                    p.path, p.remote, item.name, item.session.pr_head_sha or ""):
                item.keep.append("the remote refused, or it moved meanwhile")
        elif item.kind == "session" and item.session is not None and p is not None:
            s = item.session
            merged = s.state is State.MERGED or s.pr_state == "merged"
            out = teardown(self.server_of(s), self.store, p, s, profiles=agents.get, force=force,
                           delete_remote=delete_remote,
                           end=State.MERGED if merged and s.state in RUNNING - {State.SPAWNING}
                           else State.KILLED,
                           note=item.why)
            item.keep = out.why
            report.saved += out.saved
        elif item.worktree is not None and p is not None:
            self._orphan_worktree(item, p, report, force)
        emit(Event("cleanup.removed" if not item.keep else "cleanup.kept", item.project or None,
                   item.name if item.kind == "session" else None,
                   item.session.task if item.session else None,
                   {"kind": item.kind, "why": item.why, "kept": item.keep,
                    "bytes": item.bytes}), self.store)

    def _orphan_worktree(self, item: Item, p: ProjectConfig, report: Report,
                         force: bool) -> None:
        """Remove an orphaned worktree (here, or on its host with the same code), its work
        saved first with `force`, else kept when anything is at risk."""
        assert item.worktree is not None
        host = None if item.host == LOCAL else self.cfg.hosts.get(item.host)
        if item.host != LOCAL and host is None:
            item.keep.append(f"host {item.host} is not in the config")
            return
        place = work_place(p, item.name, host)
        with workspace.on(host):
            if not workspace.exists(item.worktree):
                return
            if item.keep and force and not item.blind:
                saved = worksafe.save_work(item.worktree, place.saved_in, p.remote,
                                           p.default_branch, disposable(p))
                report.saved += [place.show(f) for f in saved]
                item.keep = []
            if not item.keep:
                workspace.remove_worktree(place.repo, item.worktree)

    # ---- housekeeping ---------------------------------------------------------------------

    def housekeeping(self, retention: float = RETENTION, dry_run: bool = False) -> int:
        """Archive session folders of sessions cleaned more than `retention` ago, rotate the
        event log, vacuum the store. Returns how many folders were archived."""
        now = time.time()
        archived = 0
        for s in self.store.sessions(states={State.CLEANED}):
            d = paths.ao_home() / "sessions" / s.project / s.id
            if not d.is_dir() or now - s.updated_at < retention:
                continue
            archived += 1
            if dry_run:
                continue
            target = d.with_name(f"{s.id}.tar.gz")
            with tarfile.open(target, "w:gz") as tar:
                tar.add(d, arcname=s.id)
            shutil.rmtree(d)
        if not dry_run:
            log = paths.events_log()
            if log.exists() and log.stat().st_size > eventsmod.MAX_BYTES // 2:
                eventsmod.append_line(log, Event("log.rotated").to_json(), max_bytes=1)
            self.store.vacuum()
        return archived


def _reason(host: str, message: str) -> str:
    """A host error's reason, without the host's name the runner's errors begin with."""
    return message.removeprefix(f"host {host}: ")
