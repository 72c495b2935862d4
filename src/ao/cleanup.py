"""Cleanup that never loses work. First a plan (what would go, what stays and why, the disk it
frees: exactly what `--dry-run` prints), then the same plan carried out.

A worktree with uncommitted changes, untracked files that are not ignored, or commits that are
not on the remote is never removed: it is kept and listed, or with `force` its work is first
saved as a patch and a bundle under the session folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import events as eventsmod
from . import hosts, paths, tmux, worksafe, workspace
from .config import Config, ProjectConfig
from .errors import AoError
from .events import Event, emit
from .state import LIVE, RUNNING, State
from .stepwork import owner_of_step
from .store import Session, Store
from .teardown import disposable, teardown

if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    from libtmux import Server

RETENTION = 30 * 86400.0
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


@dataclass
class Report:
    items: list[Item] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)
    archived: int = 0

    @property
    def freed(self) -> int:
        return sum(i.bytes for i in self.items if not i.keep)


def du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class Cleaner:
    def __init__(self, cfg: Config, store: Store, srv: Server,
                 server_of: Callable[[Session], Server] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.srv = srv  # this machine's
        self.server_of = server_of or (lambda _s: srv)  # a session's (its host's)

    def plan(self, projects: list[ProjectConfig], older_than: float = 0.0) -> Report:
        report = Report()
        now = time.time()
        for p in projects:
            owned = set()
            for s in self.store.sessions(p.name):
                owned.add(s.id)
                why = self._why(p, s)
                if why is None or (older_than and now - s.updated_at < older_than):
                    continue
                wt = Path(s.worktree) if s.worktree else None
                item = Item("session", s.id, p.name, why, wt, s.branch, session=s)
                if wt is not None and s.host != "local":
                    item.keep = self._at_risk_on_host(p, s, wt)
                elif wt is not None and wt.exists():
                    item.bytes = du(wt)
                    item.keep = worksafe.work_at_risk(wt, p.remote, p.default_branch,
                                                    disposable(p))
                report.items.append(item)
            report.items += self._orphan_worktrees(p, owned)
        report.items += self._orphan_tmux()
        return report

    def _at_risk_on_host(self, p: ProjectConfig, s: Session, wt: Path) -> list[str]:
        """What removing a worktree on an SSH host would lose, asked there."""
        if not hosts.due(s.host, time.time()):
            return [f"host {s.host} is unreachable; asked again after its backoff"]
        try:
            host = tmux.host_of(self.server_of(s))
            if host is None:
                return [f"host {s.host} is not in the config"]
            with workspace.on(host):
                return worksafe.work_at_risk(wt, p.remote, p.default_branch, disposable(p),
                                              branch=s.branch)
        except AoError as e:
            return [f"host {s.host}: {e.message}"]

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
        if s.state in LIVE and s.state is not State.QUEUED:
            pane = tmux.pane(self.server_of(s), s.id)
            if (pane is None or pane.dead) and s.pane_alive == 0:
                return "its agent died and stayed dead"
        return None

    def _orphan_worktrees(self, p: ProjectConfig, owned: set[str]) -> list[Item]:
        d = paths.ao_home() / "worktrees" / p.name
        if not d.is_dir():
            return []
        out = []
        live = {s.id for s in self.store.sessions(p.name) if s.state is not State.CLEANED}
        for wt in sorted(d.iterdir()):
            if wt.name in live or owner_of_step(wt.name) in live or not wt.is_dir():
                continue  # a live session's own, or its reviewer's or check's (stepwork.py)
            item = Item("orphan-worktree", wt.name, p.name,
                        "no session owns it" if wt.name not in owned else "its session ended",
                        wt, bytes=du(wt))
            item.keep = worksafe.work_at_risk(wt, p.remote, p.default_branch,
                                                    disposable(p))
            out.append(item)
        return out

    def _orphan_tmux(self) -> list[Item]:
        # a session that is not cleaned yet owns its tmux (its own item ends it, if it ends)
        owners = {s.id for s in self.store.sessions() if s.state is not State.CLEANED}
        overviews = {f"ao-{name}" for name in self.cfg.projects}
        return [Item("orphan-tmux", name, "", "no live session owns it")
                for name in tmux.sessions(self.srv)
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
            tmux.kill_session(self.srv, item.name)
            emit(Event("cleanup.tmux", data={"session": item.name}), self.store)
            return
        p = self.cfg.projects.get(item.project)
        if item.kind == "session" and item.session is not None and p is not None:
            s = item.session
            merged = s.state is State.MERGED or s.pr_state == "merged"
            out = teardown(self.server_of(s), self.store, p, s, force=force,
                           delete_remote=delete_remote,
                           end=State.MERGED if merged and s.state in RUNNING - {State.SPAWNING}
                           else State.KILLED,
                           note=item.why)
            item.keep = out.why
            report.saved += out.saved
        elif item.worktree is not None and item.worktree.exists() and p is not None:
            if item.keep and force and (item.worktree / ".git").exists():
                saved = worksafe.save_work(item.worktree,
                                            paths.session_dir(item.project, item.name) / "saved",
                                            p.remote, p.default_branch, disposable(p))
                report.saved += [paths.display(f) for f in saved]
                item.keep = []
            if not item.keep:
                workspace.remove_worktree(p.path, item.worktree)
        emit(Event("cleanup.removed" if not item.keep else "cleanup.kept", item.project or None,
                   item.name if item.kind == "session" else None,
                   item.session.task if item.session else None,
                   {"kind": item.kind, "why": item.why, "kept": item.keep,
                    "bytes": item.bytes}), self.store)

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
