"""Events: append-only JSON lines in `logs/events.log` and in the session's own `events.log`.

Several processes write (the daemon, `ao send`, agent hooks), so each append takes an exclusive
`flock` on a lock file beside the log, rotates by size under that lock, and writes one whole
line with O_APPEND. Readers never need the lock: a line is written with a single write().
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ao import paths

if TYPE_CHECKING:
    from ao.record.store import Store

MAX_BYTES = 10 * 1024 * 1024
KEEP = 5


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_C1_ESCAPES = {c: f"\\u{c:04x}" for c in range(0x7f, 0xa0)}

@dataclass(frozen=True)
class Event:
    type: str
    project: str | None = None
    session: str | None = None
    task: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    ts: str = field(default_factory=now_iso)

    def to_json(self) -> str:
        """One JSON line; C1 controls escaped too (json escapes only C0), so a terminal that
        shows the log cannot be steered by them."""
        return json.dumps(
            {"ts": self.ts, "type": self.type, "project": self.project, "session": self.session,
             "task": self.task, "data": self.data},
            ensure_ascii=False, default=str, separators=(",", ":"),
        ).translate(_C1_ESCAPES)

    def row(self) -> tuple[str, str, str | None, str | None, str | None, dict[str, Any]]:
        """The store's columns (Store.add_event)."""
        return self.ts, self.type, self.project, self.session, self.task, self.data

    @classmethod
    def from_json(cls, line: str) -> Event:
        d = json.loads(line)
        return cls(type=d["type"], project=d.get("project"), session=d.get("session"),
                   task=d.get("task"), data=d.get("data") or {}, ts=d["ts"])


def _locked(path: Path) -> AbstractContextManager[None]:
    return paths.locked(path.with_name("." + path.name + ".lock"))


def append_line(path: Path, line: str, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
    """Append one line to `path`, rotating it to `path.1` ... `path.<keep>` past `max_bytes`."""
    data = (line.rstrip("\n") + "\n").encode()
    with _locked(path):
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(data) > max_bytes:
            for i in range(keep - 1, 0, -1):
                older = path.with_name(f"{path.name}.{i}")
                if older.exists():
                    older.replace(path.with_name(f"{path.name}.{i + 1}"))
            path.replace(path.with_name(f"{path.name}.1"))
        fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


_listeners: list[Callable[[Event], None]] = []


def add_listener(fn: Callable[[Event], None]) -> None:
    """Call `fn` with every event this process emits (the daemon echoes them to its log)."""
    _listeners.append(fn)


def emit(event: Event, store: Store | None = None) -> Event:
    """Record an event everywhere it belongs: the store, the global log, the session's log."""
    if store is not None:
        store.add_event(*event.row())
    return published(event)


def published(event: Event) -> Event:
    """An event the store already holds (recorded in a transaction with what it tells),
    written to the logs and told to this process's listeners."""
    line = event.to_json()
    append_line(paths.events_log(), line)
    if event.session and event.project:
        append_line(paths.session_dir(event.project, event.session) / "events.log", line)
    for fn in _listeners:
        fn(event)
    return event


def read(path: Path | None = None, include_rotated: bool = True) -> Iterator[Event]:
    """Events from oldest to newest; unreadable lines (a crash mid-write) are skipped."""
    path = path or paths.events_log()
    files = [path.with_name(f"{path.name}.{i}") for i in range(KEEP, 0, -1)] if include_rotated \
        else []
    for f in [*files, path]:
        try:
            with f.open(encoding="utf-8") as fh:
                for line in fh:
                    ev = _parse(line)
                    if ev is not None:
                        yield ev
        except FileNotFoundError:
            continue


def _parse(line: str) -> Event | None:
    try:
        return Event.from_json(line)
    except (ValueError, KeyError, TypeError):
        return None


def matches(ev: Event, project: str | None = None, session: str | None = None,
            types: tuple[str, ...] = ()) -> bool:
    if project and ev.project != project:
        return False
    if session and ev.session != session:
        return False
    # `ci` matches ci.failed and ci.passed; `ci.failed` matches only itself
    return not types or any(ev.type == t or ev.type.startswith(t + ".") for t in types)


def _parsed(lines: list[str]) -> Iterator[Event]:
    for line in lines:
        ev = _parse(line)
        if ev is not None:
            yield ev


def _replaced(path: Path, inode: int | None) -> bool:
    """Whether `path` is now another file than the one open (rotated away)."""
    try:
        return path.stat().st_ino != inode
    except FileNotFoundError:
        return False


def follow(path: Path | None = None, poll: float = 0.2, stop: float | None = None,
           from_start: bool = False) -> Iterator[Event]:
    """Events appended from now on (or from the file's start); survives rotation."""
    path = path or paths.events_log()
    deadline = None if stop is None else time.monotonic() + stop
    fh = None
    inode = None
    # a file that appears later, or replaces the old one, is always read from its start
    buf = ""
    try:
        while deadline is None or time.monotonic() < deadline:
            if fh is None:
                try:
                    fh = path.open(encoding="utf-8")
                except FileNotFoundError:
                    from_start = True
                    time.sleep(poll)
                    continue
                inode = os.fstat(fh.fileno()).st_ino
                if not from_start:
                    fh.seek(0, os.SEEK_END)
            chunk = fh.read()
            if chunk:
                *lines, buf = (buf + chunk).split("\n")
                yield from _parsed(lines)
                continue
            if _replaced(path, inode):
                # the writer may have appended to the old file just before renaming it
                yield from _parsed((buf + fh.read()).split("\n"))
                fh.close()
                fh, from_start, buf = None, True, ""
                continue
            time.sleep(poll)
    finally:
        if fh is not None:
            fh.close()
