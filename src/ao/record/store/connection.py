"""The one SQLite file (`state.db`, WAL): its connection and transactions."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from ao import paths
from ao.record.store.schema import MIGRATIONS, _enable_wal


def equal_to(**given: object) -> tuple[list[str], list[Any]]:
    """`column = ?` conditions and their values, for the columns given a value (the keys are
    ao's own column names, never input)."""
    pairs = [(k, v) for k, v in given.items() if v is not None and v != ""]
    return [f"{k} = ?" for k, _ in pairs], [v for _, v in pairs]


class Connection:
    """The connection: WAL, a busy timeout, migrations on open, IMMEDIATE transactions."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.state_db()
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves where atomicity matters
        conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        _enable_wal(conn)
        # WAL + NORMAL: a killed process loses nothing committed; only a power cut can lose
        # the last transactions. FULL would fsync on every commit, and an fsync on a disk busy
        # writing new worktrees can take hundreds of milliseconds
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self.migrate()

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: takes the write lock up front, so read-then-write is atomic
        across processes."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def migrate(self) -> list[str]:
        applied: list[str] = []
        with self.transaction() as c:
            c.execute("CREATE TABLE IF NOT EXISTS migrations "
                      "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        done = {r[0] for r in self.conn.execute("SELECT name FROM migrations")}
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            with self.transaction() as c:
                # re-check under the write lock: another process may have just applied it
                if c.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
                    continue
                fn(c)
                c.execute("INSERT INTO migrations VALUES (?, ?)", (name, time.time()))
            applied.append(name)
        return applied

    def schema(self) -> list[tuple[str, str, str]]:
        rows = self.conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' ORDER BY type, name"
        )
        return [(t, n, " ".join(s.split())) for t, n, s in rows]
