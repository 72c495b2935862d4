"""The one SQLite file (`state.db`, WAL) and the only module that writes SQL.

Schema changes are ordered, named migrations recorded in `migrations`; a migration runs once,
inside a transaction, and a failure rolls it back whole (no `try/except: pass` around DDL).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import sqlite_utils

from . import paths
from . import steps as steps_mod
from .errors import AoError, BadInput, NotFound
from .state import LIVE, OUTCOME_OF, RUNNING, Outcome, State, check_transition
from .steps import Step

_STATES = ", ".join(f"'{s.value}'" for s in State)
_LIVE = ", ".join(f"'{s.value}'" for s in sorted(LIVE))


def _m001_initial(conn: sqlite3.Connection) -> None:
    _execute_all(conn, f"""
    CREATE TABLE projects (
        name TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        repo TEXT,
        created_at REAL NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE plan_runs (
        project TEXT NOT NULL,
        plan TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        PRIMARY KEY (project, plan)
    );
    CREATE TABLE counters (
        project TEXT PRIMARY KEY,
        next_id INTEGER NOT NULL
    );
    CREATE TABLE tasks (
        project TEXT NOT NULL,
        key TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL DEFAULT '',
        deps TEXT NOT NULL DEFAULT '[]',
        estimate TEXT,
        plan TEXT,
        issue_number INTEGER,
        issue_state TEXT,
        PRIMARY KEY (project, key)
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        task TEXT NOT NULL,
        title TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL CHECK (state IN ({_STATES})),
        agent TEXT NOT NULL DEFAULT '',
        branch TEXT,
        worktree TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        activity TEXT NOT NULL DEFAULT 'unknown',
        activity_at REAL,
        screen_hash TEXT,
        screen_changed_at REAL,
        hook_activity TEXT,
        hook_at REAL,
        pr_number INTEGER,
        pr_url TEXT,
        pr_state TEXT,
        pr_head_sha TEXT,
        pr_checks TEXT,
        pr_review TEXT,
        pr_mergeable TEXT,
        pr_seen_at REAL,
        pane_alive INTEGER,
        exit_status INTEGER,
        runtime_seen_at REAL,
        note TEXT
    );
    CREATE UNIQUE INDEX sessions_one_live_per_task ON sessions (project, task)
        WHERE state IN ({_LIVE});
    CREATE INDEX sessions_by_project_state ON sessions (project, state);
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session TEXT NOT NULL REFERENCES sessions (id),
        reaction TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        created_at REAL NOT NULL,
        data TEXT NOT NULL DEFAULT '{{}}',
        UNIQUE (session, reaction, fingerprint)
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session TEXT NOT NULL REFERENCES sessions (id),
        body TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT 'user',
        status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'delivered', 'failed')),
        created_at REAL NOT NULL,
        delivered_at REAL,
        error TEXT
    );
    CREATE INDEX messages_by_session_status ON messages (session, status);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts TEXT NOT NULL,
        type TEXT NOT NULL,
        project TEXT,
        session TEXT,
        task TEXT,
        data TEXT NOT NULL DEFAULT '{{}}'
    );
    CREATE INDEX events_by_session ON events (session, id);
    """)


def _m002_local_forge(conn: sqlite3.Connection) -> None:
    _execute_all(conn, """
    CREATE TABLE local_prs (
        project TEXT NOT NULL,
        number INTEGER NOT NULL,
        branch TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'closed', 'merged')),
        title TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        merged_sha TEXT,
        PRIMARY KEY (project, number)
    );
    CREATE INDEX local_prs_by_branch ON local_prs (project, branch);
    CREATE TABLE local_ci (
        project TEXT NOT NULL,
        sha TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'passing', 'failing', 'error')),
        exit_code INTEGER,
        log TEXT,
        pid INTEGER,
        started_at REAL NOT NULL,
        finished_at REAL,
        PRIMARY KEY (project, sha)
    );
    CREATE TABLE local_reviews (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL,
        pr INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('approved', 'changes_requested', 'commented')),
        body TEXT NOT NULL DEFAULT '',
        path TEXT,
        line INTEGER,
        sha TEXT,
        created_at REAL NOT NULL
    );
    """)


def _m003_outcome(conn: sqlite3.Connection) -> None:
    """A session's outcome beside `cleaned`, so cleanup never turns a failure into a success.
    Sessions cleaned before this migration are judged by the PR state they last saw."""
    _execute_all(conn, """
    ALTER TABLE sessions ADD COLUMN outcome TEXT
        CHECK (outcome IS NULL OR outcome IN ('merged', 'abandoned', 'failed'));
    UPDATE sessions SET outcome = 'merged'
        WHERE state = 'merged' OR (state = 'cleaned' AND pr_state = 'merged');
    UPDATE sessions SET outcome = 'failed' WHERE state = 'failed';
    UPDATE sessions SET outcome = 'abandoned'
        WHERE outcome IS NULL AND state IN ('killed', 'cleaned');
    ALTER TABLE sessions ADD COLUMN pr_gate TEXT;
    ALTER TABLE sessions ADD COLUMN pr_gate_ok INTEGER;
    ALTER TABLE sessions ADD COLUMN pr_draft INTEGER;
    ALTER TABLE sessions ADD COLUMN pr_merge_state TEXT;
    """)


def _m004_message_stage(conn: sqlite3.Connection) -> None:
    """How far a delivery got (claimed, pasted, entered) and the event id at the Enter, so a
    delivery cut short by a crash is finished or escalated, never repeated blindly."""
    _execute_all(conn, """
    ALTER TABLE messages ADD COLUMN stage TEXT;
    ALTER TABLE messages ADD COLUMN mark INTEGER;
    ALTER TABLE sessions ADD COLUMN owner_pid INTEGER;
    """)


def _m005_usage_limits(conn: sqlite3.Connection) -> None:
    """When the agent's usage limit resets, as its screen said (the session is `limited`
    until then)."""
    _execute_all(conn, "ALTER TABLE sessions ADD COLUMN limited_until REAL;")


def _m006_step(conn: sqlite3.Connection) -> None:
    """The step of its task's work a session is at (implement, review, approve, merge...), and
    each task's steps (JSON, as the plan wrote them) so every reader judges the same gates."""
    _execute_all(conn, """
    ALTER TABLE sessions ADD COLUMN step TEXT;
    ALTER TABLE tasks ADD COLUMN steps TEXT;
    """)


def _m007_host(conn: sqlite3.Connection) -> None:
    """The machine a session's agent runs on (`local`, or a name under `hosts:`)."""
    _execute_all(conn, "ALTER TABLE sessions ADD COLUMN host TEXT NOT NULL DEFAULT 'local';")


def _m008_hooks_read(conn: sqlite3.Connection) -> None:
    """How far the session's hook file (agent_hooks.py) has been read, in bytes."""
    _execute_all(conn, "ALTER TABLE sessions ADD COLUMN hooks_read INTEGER NOT NULL DEFAULT 0;")


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("001_initial", _m001_initial),
    ("002_local_forge", _m002_local_forge),
    ("003_outcome", _m003_outcome),
    ("004_message_stage", _m004_message_stage),
    ("005_usage_limits", _m005_usage_limits),
    ("006_step", _m006_step),
    ("007_host", _m007_host),
    ("008_hooks_read", _m008_hooks_read),
]


@dataclass(frozen=True)
class Session:
    id: str
    project: str
    task: str
    title: str
    state: State
    agent: str
    branch: str | None
    worktree: str | None
    created_at: float
    updated_at: float
    activity: str
    activity_at: float | None
    screen_hash: str | None
    screen_changed_at: float | None
    hook_activity: str | None
    hook_at: float | None
    pr_number: int | None
    pr_url: str | None
    pr_state: str | None
    pr_head_sha: str | None
    pr_checks: str | None
    pr_review: str | None
    pr_mergeable: str | None
    pr_seen_at: float | None
    pane_alive: int | None
    exit_status: int | None
    runtime_seen_at: float | None
    note: str | None
    outcome: Outcome | None = None
    pr_gate: str | None = None  # the merge gate's verdict on the PR as last seen
    pr_gate_ok: int | None = None
    pr_draft: int | None = None
    pr_merge_state: str | None = None
    owner_pid: int | None = None  # the process starting it, while `spawning`
    limited_until: float | None = None  # its agent's usage limit resets then
    step: str | None = None  # the step of the task's work it is at (steps.py)
    host: str = "local"  # the machine its agent runs on (hosts.py)
    hooks_read: int = 0  # bytes of its hook file recorded (agent_hooks.py)

    @property
    def merged(self) -> bool:
        """Done means merged: the one predicate dependents, plan status and the board read."""
        return self.outcome is Outcome.MERGED

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Session:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["state"] = State(values["state"])
        values["outcome"] = Outcome(values["outcome"]) if values["outcome"] else None
        return cls(**values)


class Store:
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

    # ---- migrations ----------------------------------------------------------------------

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

    # ---- projects and tasks --------------------------------------------------------------

    def ensure_project(self, name: str, path: str, repo: str | None) -> None:
        self.conn.execute(
            "INSERT INTO projects (name, path, repo, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET path = excluded.path, repo = excluded.repo",
            (name, path, repo, time.time()))

    def forget_project(self, project: str) -> None:
        """Delete every record of a project (the demo starts each run from nothing)."""
        with self.transaction() as c:
            ids = [r[0] for r in c.execute("SELECT id FROM sessions WHERE project = ?",
                                           (project,))]
            for sid in ids:
                c.execute("DELETE FROM messages WHERE session = ?", (sid,))
                c.execute("DELETE FROM attempts WHERE session = ?", (sid,))
            for table in ("sessions", "tasks", "plan_runs", "local_prs", "local_ci",
                          "local_reviews", "counters"):
                c.execute(f"DELETE FROM {table} WHERE project = ?", (project,))

    def set_paused(self, project: str, paused: bool) -> None:
        self.conn.execute("UPDATE projects SET paused = ? WHERE name = ?", (int(paused), project))

    def paused(self, project: str) -> bool:
        row = self.conn.execute("SELECT paused FROM projects WHERE name = ?",
                                (project,)).fetchone()
        return bool(row and row[0])

    def start_plan_run(self, project: str, plan: str) -> None:
        self.conn.execute(
            "INSERT INTO plan_runs (project, plan, started_at) VALUES (?, ?, ?) "
            "ON CONFLICT (project, plan) DO UPDATE SET finished_at = NULL",
            (project, plan, time.time()))

    def plan_runs(self, project: str | None = None, active: bool = True) -> list[dict[str, Any]]:
        sql = "SELECT * FROM plan_runs WHERE 1 = 1"
        args: list[Any] = []
        if project:
            sql += " AND project = ?"
            args.append(project)
        if active:
            sql += " AND finished_at IS NULL"
        return list(self.db.query(sql + " ORDER BY started_at", args))

    def finish_plan_run(self, project: str, plan: str) -> bool:
        cur = self.conn.execute("UPDATE plan_runs SET finished_at = ? WHERE project = ? AND "
                                "plan = ? AND finished_at IS NULL", (time.time(), project, plan))
        return cur.rowcount == 1

    def closed_tasks(self, project: str) -> set[str]:
        """Tasks whose issue was closed (or that merged): done for scheduling."""
        return {r[0] for r in self.conn.execute(
            "SELECT key FROM tasks WHERE project = ? AND issue_state = 'closed'", (project,))}

    def put_task(self, project: str, key: str, title: str, **extra: Any) -> None:
        """Insert the task, or update just the given columns (others, like the issue number a
        forge recorded, are kept). One statement, so concurrent writers cannot collide."""
        row = {"project": project, "key": key, "title": title, **extra}
        if "deps" in row:
            row["deps"] = json.dumps(list(row["deps"]))
        cols = ", ".join(row)
        marks = ", ".join("?" * len(row))
        sets = ", ".join(f"{c} = excluded.{c}" for c in row if c not in ("project", "key"))
        self.conn.execute(f"INSERT INTO tasks ({cols}) VALUES ({marks}) "
                          f"ON CONFLICT (project, key) DO UPDATE SET {sets}", list(row.values()))

    def has_task_steps(self, project: str, key: str) -> bool:
        row = self.conn.execute("SELECT steps FROM tasks WHERE project = ? AND key = ?",
                                (project, key)).fetchone()
        return bool(row and row[0])

    def task_steps(self, project: str, key: str) -> tuple[Step, ...]:
        """The task's steps as last recorded from its plan (the default when none were)."""
        row = self.conn.execute("SELECT steps FROM tasks WHERE project = ? AND key = ?",
                                (project, key)).fetchone()
        if not row or not row[0]:
            return steps_mod.DEFAULT
        # written from a parsed plan: a row that does not parse is an error, never "no gates"
        return steps_mod.parse(json.loads(row[0]), f"task {key}")

    def task_keys(self, project: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT key FROM tasks WHERE project = ?",
                                                (project,))]

    def task(self, project: str, key: str) -> dict[str, Any] | None:
        try:
            row: dict[str, Any] = self.db.table("tasks").get((project, key))
        except sqlite_utils.db.NotFoundError:
            return None
        return row

    # ---- sessions ------------------------------------------------------------------------

    def create_session(self, project: str, prefix: str, task: str, *, title: str = "",
                       agent: str = "", state: State = State.SPAWNING,
                       max_running: int | None = None) -> Session:
        """Allocate `<prefix>-<n>` and insert the session in one write transaction.

        Raises AoError if the task already has a live session, or (with `max_running`) if the
        project already runs that many: both checked under the same lock, so two processes
        spawning at once can neither double-spawn a task nor overshoot the limit.
        """
        now = time.time()
        with self.transaction() as c:
            live = c.execute(
                f"SELECT id, state FROM sessions WHERE project = ? AND task = ? "
                f"AND state IN ({_LIVE})", (project, task)).fetchone()
            if live:
                raise TaskBusy(task, live[0], live[1])
            if max_running is not None and state in RUNNING:
                marks = ", ".join("?" * len(RUNNING))
                (n,) = c.execute(f"SELECT count(*) FROM sessions WHERE project = ? AND state IN "
                                 f"({marks})", (project, *RUNNING)).fetchone()
                if n >= max_running:
                    raise AtCapacity(project, n)
            c.execute("INSERT OR IGNORE INTO counters VALUES (?, 1)", (project,))
            (n,) = c.execute("SELECT next_id FROM counters WHERE project = ?",
                             (project,)).fetchone()
            c.execute("UPDATE counters SET next_id = next_id + 1 WHERE project = ?", (project,))
            sid = f"{prefix}-{n}"
            c.execute(
                "INSERT INTO sessions (id, project, task, title, state, agent, created_at, "
                "updated_at, owner_pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sid, project, task, title, state.value, agent, now, now, os.getpid()),
            )
        return self.session(sid)

    def session(self, sid: str) -> Session:
        row = self.conn.execute("SELECT * FROM sessions WHERE id = ?", (sid,))
        cols = [d[0] for d in row.description]
        found = row.fetchone()
        if found is None:
            raise NotFound(f"no session {sid}", self._known_hint(sid))
        return Session.from_row(dict(zip(cols, found, strict=True)))

    def find_session(self, ref: str) -> Session:
        """A session by id (`wor-3`), by task key (`AUTH-001`: its live session, else its
        latest), or by `project/KEY` when several projects have the key."""
        ref = ref.strip()
        row = self.conn.execute("SELECT id FROM sessions WHERE id = ?", (ref,)).fetchone()
        if row:
            return self.session(row[0])
        project, _, key = ref.rpartition("/")
        args: list[Any] = [key.upper()]
        sql = "SELECT id, project FROM sessions WHERE upper(task) = ?"
        if project:
            sql += " AND project = ?"
            args.append(project)
        rows = self.conn.execute(
            sql + f" ORDER BY state IN ({_LIVE}) DESC, created_at DESC, id DESC", args).fetchall()
        if not rows:
            raise NotFound(f"no session or task {ref}", self._known_hint(ref))
        projects = sorted({r[1] for r in rows})
        if len(projects) > 1:
            raise BadInput(f"task {key} is in several projects: {', '.join(projects)}",
                           f"name one: {projects[0]}/{key}")
        return self.session(rows[0][0])

    def _known_hint(self, sid: str) -> str:
        project = self.conn.execute(
            "SELECT project FROM sessions WHERE id LIKE ? LIMIT 1", (sid.split("-")[0] + "-%",)
        ).fetchone()
        where = "WHERE project = ?" if project else ""
        ids = [r[0] for r in self.conn.execute(
            f"SELECT id FROM sessions {where} ORDER BY created_at DESC LIMIT 8",
            (project[0],) if project else ())]
        return f"sessions: {', '.join(ids)}" if ids else "no sessions yet; see `ao spawn`"

    def sessions(self, project: str | None = None, states: set[State] | None = None,
                 task: str | None = None) -> list[Session]:
        where, args = [], []
        if project:
            where.append("project = ?")
            args.append(project)
        if task:
            where.append("task = ?")
            args.append(task)
        if states is not None:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(s.value for s in states)
        sql = "SELECT * FROM sessions" + (" WHERE " + " AND ".join(where) if where else "")
        cur = self.conn.execute(sql + " ORDER BY created_at, id", args)
        cols = [d[0] for d in cur.description]
        return [Session.from_row(dict(zip(cols, r, strict=True))) for r in cur.fetchall()]

    def update_session(self, sid: str, **values: Any) -> Session:
        """Partial update of observations and details; the state goes through `set_state`."""
        self.update_many({sid: values})
        return self.session(sid)

    def update_many(self, changes: dict[str, dict[str, Any]]) -> None:
        """Several sessions' observations in one transaction, without reading them back (the
        daemon's tick writes only what changed, all at once)."""
        if not changes:
            return
        now = time.time()
        with self.transaction() as c:
            for sid, values in changes.items():
                if "state" in values:
                    raise ValueError("use set_state to change a session's state")
                values = {**values, "updated_at": now}
                cols = ", ".join(f"{k} = ?" for k in values)
                c.execute(f"UPDATE sessions SET {cols} WHERE id = ?", (*values.values(), sid))

    def set_state(self, sid: str, new: State, **values: Any) -> Session:
        with self.transaction() as c:
            row = c.execute("SELECT state FROM sessions WHERE id = ?", (sid,)).fetchone()
            if row is None:
                raise NotFound(f"no session {sid}", self._known_hint(sid))
            if row[0] != new.value:
                check_transition(row[0], new)
                if new in OUTCOME_OF:
                    values.setdefault("outcome", OUTCOME_OF[new].value)
                elif new is not State.CLEANED:
                    values.setdefault("outcome", None)  # a restored session has no outcome yet
            values.update(state=new.value, updated_at=time.time())
            cols = ", ".join(f"{k} = ?" for k in values)
            c.execute(f"UPDATE sessions SET {cols} WHERE id = ?", (*values.values(), sid))
        return self.session(sid)

    def delete_session(self, sid: str) -> None:
        """Only for rolling back a spawn that never got going: no history worth keeping."""
        with self.transaction() as c:
            c.execute("DELETE FROM messages WHERE session = ?", (sid,))
            c.execute("DELETE FROM attempts WHERE session = ?", (sid,))
            c.execute("DELETE FROM sessions WHERE id = ?", (sid,))

    # ---- attempts, messages, events ------------------------------------------------------

    def record_attempt(self, sid: str, reaction: str, fingerprint: str,
                       data: dict[str, Any] | None = None) -> bool:
        """True if this (reaction, fingerprint) is new for the session; False if seen before."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO attempts (session, reaction, fingerprint, created_at, data) "
            "VALUES (?, ?, ?, ?, ?)",
            (sid, reaction, fingerprint, time.time(), json.dumps(data or {})))
        return cur.rowcount == 1

    def forget_attempt(self, sid: str, fingerprint: str) -> bool:
        """Take back a recorded attempt (a step run whose head the PR left, an approval a
        human took back); True if there was one."""
        cur = self.conn.execute("DELETE FROM attempts WHERE session = ? AND fingerprint = ?",
                                (sid, fingerprint))
        return cur.rowcount > 0

    def record_and_queue(self, sid: str, fingerprints: list[tuple[str, str]], body: str | None,
                         source: str, data: dict[str, Any] | None = None) -> bool:
        """Record reaction attempts and queue their message in one transaction, so a crash
        leaves either both or neither: no round counted without its message, no message
        queued twice. False (and nothing written) if the first fingerprint was seen before."""
        now = time.time()
        with self.transaction() as c:
            first = fingerprints[0]
            if c.execute("SELECT 1 FROM attempts WHERE session = ? AND reaction = ? AND "
                         "fingerprint = ?", (sid, *first)).fetchone():
                return False
            for reaction, fp in fingerprints:
                c.execute("INSERT OR IGNORE INTO attempts (session, reaction, fingerprint, "
                          "created_at, data) VALUES (?, ?, ?, ?, ?)",
                          (sid, reaction, fp, now, json.dumps(data or {})))
            if body is not None:
                c.execute("INSERT INTO messages (session, body, source, status, created_at) "
                          "VALUES (?, ?, ?, 'queued', ?)", (sid, body, source, now))
        return True

    def attempts(self, sid: str, reaction: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM attempts WHERE session = ?"
        args: list[Any] = [sid]
        if reaction:
            sql += " AND reaction = ?"
            args.append(reaction)
        return list(self.db.query(sql + " ORDER BY id", args))

    def queue_message(self, sid: str, body: str, source: str = "user",
                      status: str = "queued") -> int:
        stage = "claimed" if status == "sending" else None
        cur = self.conn.execute(
            "INSERT INTO messages (session, body, source, status, created_at, stage) "
            "VALUES (?, ?, ?, ?, ?, ?)", (sid, body, source, status, time.time(), stage))
        return int(cur.lastrowid or 0)

    def claim_queued(self, sid: str) -> bool:
        """queued -> spawning for this process, atomically: one starter per queued record."""
        cur = self.conn.execute(
            "UPDATE sessions SET state = 'spawning', owner_pid = ?, updated_at = ? "
            "WHERE id = ? AND state = 'queued'", (os.getpid(), time.time(), sid))
        return cur.rowcount == 1

    def messages(self, sid: str, status: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM messages WHERE session = ?"
        args: list[Any] = [sid]
        if status:
            sql += " AND status = ?"
            args.append(status)
        return list(self.db.query(sql + " ORDER BY id", args))

    def with_queued_messages(self, project: str) -> list[str]:
        """Sessions of the project with messages waiting, in one query."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT m.session FROM messages m JOIN sessions s ON s.id = m.session "
            "WHERE s.project = ? AND m.status = 'queued' ORDER BY m.session", (project,))]

    def claim_message(self, mid: int) -> bool:
        """queued -> sending, atomically: only one deliverer ever pastes a message."""
        cur = self.conn.execute("UPDATE messages SET status = 'sending', stage = 'claimed', "
                                "mark = NULL WHERE id = ? AND status = 'queued'", (mid,))
        return cur.rowcount == 1

    def sending(self, sid: str | None = None) -> list[dict[str, Any]]:
        """Messages some process is delivering, or was when it died (messaging.recover)."""
        sql = "SELECT * FROM messages WHERE status = 'sending'"
        args: list[Any] = []
        if sid:
            sql += " AND session = ?"
            args.append(sid)
        return list(self.db.query(sql + " ORDER BY id", args))

    def set_stage(self, mid: int, stage: str, mark: int | None = None) -> None:
        self.conn.execute("UPDATE messages SET stage = ?, mark = coalesce(?, mark) WHERE id = ?",
                          (stage, mark, mid))

    def set_message(self, mid: int, status: str, error: str | None = None) -> None:
        done = time.time() if status == "delivered" else None
        self.db.table("messages").update(
            mid, {"status": status, "error": error, "delivered_at": done})

    def last_event_id(self) -> int:
        (n,) = self.conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
        return int(n)

    def advance_hooks(self, sid: str, old: int, new: int) -> bool:
        """Claim the hook file's bytes old..new for this reader; False if another took them."""
        with self.transaction() as c:
            return c.execute("UPDATE sessions SET hooks_read = ? WHERE id = ? AND "
                             "hooks_read = ?", (new, sid, old)).rowcount == 1

    def hook_seen(self, sid: str, hook: str, after_id: int) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM events WHERE id > ? AND session = ? AND type = 'agent.hook' "
            "AND json_extract(data, '$.event') = ? LIMIT 1", (after_id, sid, hook)).fetchone()
        return row is not None

    # ---- the local forge's records --------------------------------------------------------

    def local_pr(self, project: str, branch: str) -> dict[str, Any] | None:
        rows = list(self.db.query(
            "SELECT * FROM local_prs WHERE project = ? AND branch = ? ORDER BY number DESC "
            "LIMIT 1", [project, branch]))
        return rows[0] if rows else None

    def local_prs(self, project: str) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM local_prs WHERE project = ? ORDER BY number",
                                  [project]))

    def open_local_pr(self, project: str, branch: str, title: str) -> dict[str, Any]:
        with self.transaction() as c:
            row = c.execute("SELECT number FROM local_prs WHERE project = ? AND branch = ? "
                            "AND state = 'open'", (project, branch)).fetchone()
            if row is None:
                (n,) = c.execute("SELECT coalesce(max(number), 0) + 1 FROM local_prs "
                                 "WHERE project = ?", (project,)).fetchone()
                c.execute("INSERT INTO local_prs (project, number, branch, state, title, "
                          "created_at) VALUES (?, ?, ?, 'open', ?, ?)",
                          (project, n, branch, title, time.time()))
        found = self.local_pr(project, branch)
        assert found is not None
        return found

    def set_local_pr(self, project: str, number: int, **values: Any) -> None:
        self.db.table("local_prs").update((project, number), values)

    def local_ci(self, project: str, sha: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM local_ci WHERE project = ? AND sha = ?",
                                  [project, sha]))
        return rows[0] if rows else None

    def claim_local_ci(self, project: str, sha: str, log: str) -> bool:
        """Record that CI for `sha` starts; False if it was already started (or done)."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO local_ci (project, sha, status, log, started_at) "
            "VALUES (?, ?, 'pending', ?, ?)", (project, sha, log, time.time()))
        return cur.rowcount == 1

    def set_local_ci(self, project: str, sha: str, **values: Any) -> None:
        self.db.table("local_ci").update((project, sha), values)

    def reset_local_ci(self, project: str, sha: str) -> None:
        self.conn.execute("DELETE FROM local_ci WHERE project = ? AND sha = ?", (project, sha))

    def add_local_review(self, project: str, pr: int, state: str, body: str = "",
                         path: str | None = None, line: int | None = None,
                         sha: str | None = None) -> int:
        cur = self.conn.execute(
            "INSERT INTO local_reviews (project, pr, state, body, path, line, sha, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (project, pr, state, body, path, line, sha, time.time()))
        return int(cur.lastrowid or 0)

    def local_reviews(self, project: str, pr: int) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM local_reviews WHERE project = ? AND pr = ? "
                                  "ORDER BY id", [project, pr]))

    def add_event(self, ts: str, type_: str, project: str | None, session: str | None,
                  task: str | None, data: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO events (ts, type, project, session, task, data) VALUES (?,?,?,?,?,?)",
            (ts, type_, project, session, task, json.dumps(data, default=str)))


def _enable_wal(conn: sqlite3.Connection, timeout: float = 30.0) -> None:
    """Switch to WAL. The switch needs an exclusive lock and SQLite does not wait for it (no
    busy handler), so two processes creating the database at once must retry."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _execute_all(conn: sqlite3.Connection, script: str) -> None:
    """Run a script's statements inside the caller's transaction (executescript would COMMIT
    first, so a failing migration could leave half a schema behind)."""
    for stmt in _split_sql(script):
        conn.execute(stmt)


def _split_sql(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


class TaskBusy(AoError):
    def __init__(self, task: str, sid: str, state: str) -> None:
        super().__init__(f"{task} already has session {sid} ({state})",
                         f"see `ao session ls`; `ao session kill {sid}` to start over")
        self.session_id = sid


class AtCapacity(AoError):
    def __init__(self, project: str, running: int) -> None:
        super().__init__(f"{project} already runs {running} sessions (max_concurrent)",
                         "the task is queued; raise max_concurrent to run more")
