"""The daemon: one supervised loop. Every poll, per project: observe each live session, poll
the forge once, decide (reactions.py, scheduler.py), act (fleet, messaging, forge), record.

Crash safety comes from the store, not from memory: reaction attempts and their messages are
written together before anything is sent; a message is claimed before it is pasted; sessions
start from queued records. A daemon killed at any point and started again carries on.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ao import config as cfgmod
from ao import paths
from ao.errors import AoError
from ao.host_config import LOCAL
from ao.loop.ticking import Ticking
from ao.record.events import Event, emit
from ao.record.state import Activity, State
from ao.record.store import Session, Store, StoreError, fault_kind
from ao.world import agents, memory, tmux

if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    pass

LOCK_NAME = "daemon.lock"
log = logging.getLogger(__name__)
PROMPT_RECHECK = 2.0  # seconds between looks at the record for agents on a prompt


def store_fault(e: BaseException) -> str | None:
    """What a full disk or a read-only store says, in one line with the way out; None for any
    other error (a lock held too long included: the next tick simply tries again)."""
    kind = fault_kind(e)
    where = paths.display(paths.ao_home())
    if kind == "full":
        return f"the disk of {where} is full ({e}): free some space"
    if kind == "readonly":
        return f"{where} is read-only ({e}): make it writable"
    return None
MIN_TICK_GAP = 0.25  # seconds: the shortest time between two ticks, however often woken
SCREEN_WATCH = 0.5  # seconds between looks at an agent waiting on a prompt, between polls


class AlreadyRunning(AoError):
    pass


read_state = paths.daemon_state  # the running daemon's state (paths.py)


class Daemon(Ticking):
    """The loop: one daemon at a time (a lock), signals, the watch on config, plans and the
    wake file, and the schedule of ticks (each project's tick is ticking.py's)."""

    # ---- lifecycle ------------------------------------------------------------------------

    def acquire(self) -> None:
        """One daemon at a time: an flock, which dies with its holder, so a lock left by a
        killed daemon is simply taken over."""
        fd = os.open(str(paths.home() / LOCK_NAME), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = read_state()
            pid = other["pid"] if other else "?"
            raise AlreadyRunning(f"a daemon is already running (pid {pid})",
                                 "`ao status` shows it; `ao stop` stops it") from None
        self._lock_fd = fd
        self.fleet.recover()
        # deliveries a killed process was making: finished, queued again or escalated
        self.messenger.recover()
        self.finish_merge_records()
        self._write_state()
        emit(Event("daemon.started", data={"pid": os.getpid()}), self.store)

    def release(self) -> None:
        emit(Event("daemon.stopped", data={"pid": os.getpid(), "polls": self.polls}), self.store)
        with contextlib.suppress(OSError):
            (paths.ao_home() / "daemon.pid").unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _write_state(self) -> None:
        state = {"pid": os.getpid(), "started_at": self.started_at,
                 "last_poll": self.clock() if self.polls else None, "polls": self.polls,
                 "poll_interval": self.cfg.poll_interval, "web": self.web_url,
                 "tmux_socket": self.cfg.tmux_socket}
        paths.write_atomic(paths.ao_home() / "daemon.pid", json.dumps(state))

    def run(self) -> None:
        self.acquire()
        def on_signal(*_: object) -> None:
            self.stop.set()
            self.wake.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        observer = self._watch()
        try:
            while not self.stop.is_set():
                self.wake.clear()
                started = time.monotonic()
                if self.config_dirty and self.reload_config():
                    # the set of files to watch may have changed (a repo registered)
                    if observer is not None:
                        observer.stop()
                    observer = self._watch()
                try:
                    self.tick()
                    self._store_fault(None)
                except (OSError, StoreError) as e:
                    if not store_fault(e):
                        raise
                    self._store_fault(e)  # the daemon waits, says so, and tries again
                if self.memory_sampler.due():
                    # between ticks, never inside one: a tick's reactions do not wait on it
                    self.measure_memory()
                interval = self.cfg.poll_interval * (4 if self._low_budget() else 1)
                left = max(0.0, interval - (time.monotonic() - started))
                reset = self.store.earliest_reset(time.time())
                if reset is not None:  # a usage limit resets first: the fleet goes on then
                    left = min(left, max(0.0, reset - time.time()) + 0.1)
                self._until_next_tick(left)
                # a burst of wake-ups (many agents stopping at once) costs one tick, not many
                self.stop.wait(max(0.0, MIN_TICK_GAP - (time.monotonic() - started)))
        finally:
            if observer is not None:
                observer.stop()
            self.deliveries.close()  # the deliveries under way end first: none cut short
            self.release()

    def _store_fault(self, e: BaseException | None) -> None:
        """A full disk or a read-only store stopped a tick: said once (ao's log on stderr, the
        notifiers; `ao status` sees it on its own), and the next tick tries again. None: the
        tick went through, and a fault before it is over."""
        if e is None:
            if self.fault is not None:
                log.warning("the store is writable again; the daemon goes on")
                with contextlib.suppress(Exception):
                    emit(Event("daemon.recovered", data={"was": self.fault}), self.store)
                self.fault = None
            return
        why = store_fault(e) or str(e)
        if self.fault == why:
            return
        self.fault = why
        log.error("the daemon cannot write its store: %s; it waits and tries again", why)
        with contextlib.suppress(Exception):  # a notifier that writes a record may fail too
            self.notifier.notify(Event("daemon.store_fault", data={"error": why}),
                                 "ao's daemon cannot write its store", why)

    def _until_next_tick(self, timeout: float) -> None:
        """Wait for the next tick: woken by a hook, a write, or the poll. An agent on a
        permission prompt or a question is looked at every SCREEN_WATCH seconds meanwhile: a
        person who rejects the prompt or dismisses it with Escape fires no hook, and held
        messages waited for the next poll (29 s of 30)."""
        deadline = time.monotonic() + timeout
        while not self.wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            prompts = [s for s in self.store.sessions(states={State.WORKING, State.PR_OPEN})
                       if s.activity == Activity.WAITING_INPUT and s.host == LOCAL]
            if not prompts:
                # a prompt another process records meanwhile (`ao send` read the agent's
                # hook first) is watched too: the record is looked at again every few seconds
                if self.wake.wait(min(PROMPT_RECHECK, left)):
                    return
                continue
            if self.wake.wait(min(SCREEN_WATCH, left)):
                return
            if any(self._prompt_gone(s) for s in prompts):
                return  # tick now: it observes, and delivers what was held

    def _prompt_gone(self, s: Session) -> bool:
        profile = agents.get(s.agent or "command")
        try:
            screen = tmux.capture(self.fleet.server(s), s.id)
        except AoError:
            return False
        seen = profile.activity(screen)
        return seen is not None and seen is not Activity.WAITING_INPUT

    def _watch(self) -> Any:
        """watchdog wakes the loop when a plan or a config file is written, so an edit is picked
        up at once instead of at the next poll (and without a restart). Only writes count:
        reading a file (every `ao` command reads the config) must never look like a change."""
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a dependency
            return None
        daemon = self
        config_files = {str(f.resolve()) for f in self._config_sources()}
        watched = config_files | {str(Path(r["plan"]).resolve())
                                  for r in self.store.plan_runs(active=False)} | {
            str(paths.wake_file().resolve())}
        writes = {"modified", "created", "deleted", "moved", "closed"}

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type not in writes:
                    return
                paths_seen = {str(event.src_path), str(getattr(event, "dest_path", "") or "")}
                if paths_seen & config_files:
                    daemon.config_dirty = True
                if paths_seen & watched:
                    daemon.wake.set()

        observer = Observer()
        for d in {str(Path(f).parent) for f in watched}:
            if Path(d).is_dir():
                observer.schedule(Handler(), d, recursive=False)
        observer.daemon = True
        observer.start()
        return observer

    def _config_sources(self) -> list[Path]:
        return [cfgmod.registry_file(), *cfgmod.config_sources()]

    def reload_config(self) -> bool:
        """Load the config again if what its files hold changed; True if it was replaced."""
        self.config_dirty = False
        digest = cfgmod.content_digest(cfgmod.config_sources())
        if digest == self._config_digest:
            return False
        self._config_digest = digest
        try:
            cfg = cfgmod.load()
        except AoError as e:
            emit(Event("config.invalid", data={"error": str(e), "kept": "the last good config"}),
                 self.store)
            return False
        self.cfg = self.fleet.cfg = self.notifier.cfg = self.deliveries.cfg = cfg
        self.forges.clear()
        agents.reload()
        emit(Event("config.reloaded", data={"projects": sorted(cfg.projects)}), self.store)
        return True

    # ---- one poll -------------------------------------------------------------------------

    def tick(self) -> None:
        for name, project in self.cfg.projects.items():
            try:
                self.tick_project(project)
            except Exception as e:  # one project's trouble never stops the others
                if store_fault(e):
                    raise  # a full disk or read-only store: the loop says so once, and waits
                log.exception("tick of project %s failed", name)  # the traceback, for us
                try:
                    emit(Event("daemon.error", name,
                               data={"error": f"{type(e).__name__}: {e}"}), self.store)
                except Exception:  # a full disk: the daemon goes on, and says so on stderr
                    log.exception("could not record daemon.error")
        try:
            self.nightly()
        except Exception as e:  # a host away, a full disk: said, and the loop goes on
            log.exception("the nightly cleanup failed")
            emit(Event("daemon.error", data={"error": f"nightly cleanup: {e}"}), self.store)
        self.polls += 1
        self._write_state()

    def measure_memory(self) -> None:
        """Each local agent's process tree measured (memory.py): the estimates starts are
        placed by. A machine without /proc measures nothing."""
        live = [s for s in self.store.sessions(states={State.WORKING, State.PR_OPEN,
                                                        State.NEEDS_HUMAN}) if s.host == LOCAL]
        if not live:
            return
        try:
            panes = tmux.panes(self.fleet.srv)
            sizes = memory.tree_rss_mb({s.id: p.pid for s in live
                                        if (p := panes.get(s.id)) and p.pid and not p.dead})
        except (AoError, OSError) as e:
            log.warning("measuring the agents' memory failed: %s", e)
            return
        by_agent: dict[str, list[int]] = {}
        for s in live:
            if s.id in sizes:
                by_agent.setdefault(s.agent or "command", []).append(sizes[s.id])
        memory.record(by_agent)

    def nightly(self) -> None:
        """`cleanup.nightly_at`: the daemon runs the cleanup for every project once a day."""
        if not self.cfg.nightly_at:
            return
        now = time.localtime(self.clock())
        hour, minute = map(int, self.cfg.nightly_at.split(":"))
        today = time.strftime("%Y-%m-%d", now)
        marker = paths.home() / "nightly.last"
        last = marker.read_text().strip() if marker.exists() else ""
        if (now.tm_hour, now.tm_min) < (hour, minute) or last == today:
            return
        marker.write_text(today)
        from ao.services.cleanup import Cleaner

        cleaner = Cleaner(self.cfg, self.store, self.fleet.srv, self.fleet.host_server)
        report = cleaner.run(cleaner.plan(list(self.cfg.projects.values())))
        archived = cleaner.housekeeping()
        emit(Event("cleanup.nightly", data={
            "removed": sum(1 for i in report.items if not i.keep),
            "kept": sum(1 for i in report.items if i.keep), "freed": report.freed,
            "archived": archived, "unswept": report.unswept}), self.store)

    # ---- reactions ------------------------------------------------------------------------

    # ---- scheduling and cleanup -----------------------------------------------------------







def load_daemon() -> Daemon:
    cfg = cfgmod.load()
    return Daemon(cfg, Store())
