"""The schema: ordered, named migrations (each runs once, inside a transaction, and a
failure rolls it back whole), and the SQLite settings of every connection."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from ao.record.state import LIVE, State

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


def _m009_unpushed(conn: sqlite3.Connection) -> None:
    """Why a session's commits are not on the remote (pushes.py), while they are not."""
    _execute_all(conn, "ALTER TABLE sessions ADD COLUMN unpushed TEXT;")


def _m010_forge_trouble(conn: sqlite3.Connection) -> None:
    """Why a project's forge cannot be read now, and who must act (JSON), while it cannot."""
    _execute_all(conn, "ALTER TABLE projects ADD COLUMN forge_trouble TEXT;")


def _m011_main_watch(conn: sqlite3.Connection) -> None:
    """What is known of the project's main branch: its last green head, whether it is red, the
    merge that turned it red (JSON, mainwatch.py)."""
    _execute_all(conn, "ALTER TABLE projects ADD COLUMN main_watch TEXT;")


def _m012_agent_usage(conn: sqlite3.Connection) -> None:
    """What each session's agent spent, from its own records (agent_usage.py): tokens by kind,
    the estimated cost, and how far its transcript has been read."""
    _execute_all(conn, """
    CREATE TABLE agent_usage (
        session TEXT PRIMARY KEY,
        transcript TEXT,
        read_to INTEGER NOT NULL DEFAULT 0,
        last_message TEXT,
        model TEXT,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        estimated INTEGER NOT NULL DEFAULT 0
    );
    """)


def _m013_merge_train(conn: sqlite3.Connection) -> None:
    """The local forge's merge queue (forge/local_train.py): the head a PR was queued at and
    when, why it was removed (JSON), and each project's train in progress (JSON)."""
    _execute_all(conn, """
    ALTER TABLE local_prs ADD COLUMN queued_sha TEXT;
    ALTER TABLE local_prs ADD COLUMN queued_at REAL;
    ALTER TABLE local_prs ADD COLUMN removed TEXT;
    ALTER TABLE projects ADD COLUMN train TEXT;
    """)


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("001_initial", _m001_initial),
    ("002_local_forge", _m002_local_forge),
    ("003_outcome", _m003_outcome),
    ("004_message_stage", _m004_message_stage),
    ("005_usage_limits", _m005_usage_limits),
    ("006_step", _m006_step),
    ("007_host", _m007_host),
    ("008_hooks_read", _m008_hooks_read),
    ("009_unpushed", _m009_unpushed),
    ("010_forge_trouble", _m010_forge_trouble),
    ("011_main_watch", _m011_main_watch),
    ("012_agent_usage", _m012_agent_usage),
    ("013_merge_train", _m013_merge_train),
]


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
