from __future__ import annotations

import contextlib
import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest

from ao.errors import StateError
from ao.record.state import State, check_transition
from ao.record.store import AtCapacity, Store, TaskBusy

EXPECTED_SCHEMA = [
    ("index", "events_by_session", "CREATE INDEX events_by_session ON events (session, id)"),
    ("index", "local_prs_by_branch",
     "CREATE INDEX local_prs_by_branch ON local_prs (project, branch)"),
    ("index", "messages_by_session_status",
     "CREATE INDEX messages_by_session_status ON messages (session, status)"),
    ("index", "sessions_by_project_state",
     "CREATE INDEX sessions_by_project_state ON sessions (project, state)"),
    ("index", "sessions_one_live_per_task",
     "CREATE UNIQUE INDEX sessions_one_live_per_task ON sessions (project, task) WHERE state IN "
     "('needs_human', 'pr_open', 'queued', 'spawning', 'working')"),
    ("table", "agent_usage",
     "CREATE TABLE agent_usage ( session TEXT PRIMARY KEY, transcript TEXT, read_to INTEGER NOT "
     "NULL DEFAULT 0, last_message TEXT, model TEXT, input_tokens INTEGER NOT NULL DEFAULT 0, "
     "output_tokens INTEGER NOT NULL DEFAULT 0, cache_write_tokens INTEGER NOT NULL DEFAULT 0, "
     "cache_read_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0, estimated "
     "INTEGER NOT NULL DEFAULT 0 )"),
    ("table", "attempts",
     "CREATE TABLE attempts ( id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL "
     "REFERENCES sessions (id), reaction TEXT NOT NULL, fingerprint TEXT NOT NULL, created_at "
     "REAL NOT NULL, data TEXT NOT NULL DEFAULT '{}', UNIQUE (session, reaction, fingerprint) )"),
    ("table", "counters",
     "CREATE TABLE counters ( project TEXT PRIMARY KEY, next_id INTEGER NOT NULL )"),
    ("table", "events",
     "CREATE TABLE events ( id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, type TEXT "
     "NOT NULL, project TEXT, session TEXT, task TEXT, data TEXT NOT NULL DEFAULT '{}' )"),
    ("table", "local_ci",
     "CREATE TABLE local_ci ( project TEXT NOT NULL, sha TEXT NOT NULL, status TEXT NOT NULL "
     "CHECK (status IN ('pending', 'passing', 'failing', 'error')), exit_code INTEGER, log TEXT, "
     "pid INTEGER, started_at REAL NOT NULL, finished_at REAL, PRIMARY KEY (project, sha) )"),
    ("table", "local_prs",
     "CREATE TABLE local_prs ( project TEXT NOT NULL, number INTEGER NOT NULL, branch TEXT NOT "
     "NULL, state TEXT NOT NULL CHECK (state IN ('open', 'closed', 'merged')), title TEXT NOT "
     "NULL DEFAULT '', created_at REAL NOT NULL, merged_sha TEXT, queued_sha TEXT, queued_at "
     "REAL, removed TEXT, PRIMARY KEY (project, number) )"),
    ("table", "local_reviews",
     "CREATE TABLE local_reviews ( id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, "
     "pr INTEGER NOT NULL, state TEXT NOT NULL CHECK (state IN ('approved', "
     "'changes_requested', 'commented')), body TEXT NOT NULL DEFAULT '', path TEXT, line "
     "INTEGER, sha TEXT, created_at REAL NOT NULL )"),
    ("table", "messages",
     'CREATE TABLE messages ( id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL '
     "REFERENCES sessions (id), body TEXT NOT NULL, source TEXT NOT NULL DEFAULT 'user', "
     "status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'delivered', 'failed')), "
     'created_at REAL NOT NULL, delivered_at REAL, error TEXT , stage TEXT, mark INTEGER)'),
    ("table", "migrations",
     "CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"),
    ("table", "plan_runs",
     "CREATE TABLE plan_runs ( project TEXT NOT NULL, plan TEXT NOT NULL, started_at REAL NOT "
     "NULL, finished_at REAL, PRIMARY KEY (project, plan) )"),
    ("table", "projects",
     "CREATE TABLE projects ( name TEXT PRIMARY KEY, path TEXT NOT NULL, repo TEXT, created_at "
     "REAL NOT NULL, paused INTEGER NOT NULL DEFAULT 0 , forge_trouble TEXT, main_watch TEXT, "
     "train TEXT)"),
    ("table", "sessions",
     'CREATE TABLE sessions ( id TEXT PRIMARY KEY, project TEXT NOT NULL, task TEXT NOT '
     "NULL, title TEXT NOT NULL DEFAULT '', state TEXT NOT NULL CHECK (state IN ('queued', "
     "'spawning', 'working', 'pr_open', 'merged', 'cleaned', 'needs_human', 'killed', "
     "'failed')), agent TEXT NOT NULL DEFAULT '', branch TEXT, worktree TEXT, created_at "
     "REAL NOT NULL, updated_at REAL NOT NULL, activity TEXT NOT NULL DEFAULT 'unknown', "
     'activity_at REAL, screen_hash TEXT, screen_changed_at REAL, hook_activity TEXT, '
     'hook_at REAL, pr_number INTEGER, pr_url TEXT, pr_state TEXT, pr_head_sha TEXT, '
     'pr_checks TEXT, pr_review TEXT, pr_mergeable TEXT, pr_seen_at REAL, pane_alive '
     'INTEGER, exit_status INTEGER, runtime_seen_at REAL, note TEXT , outcome TEXT CHECK '
     "(outcome IS NULL OR outcome IN ('merged', 'abandoned', 'failed')), pr_gate TEXT, "
     'pr_gate_ok INTEGER, pr_draft INTEGER, pr_merge_state TEXT, owner_pid INTEGER, '
     "limited_until REAL, step TEXT, host TEXT NOT NULL DEFAULT 'local', hooks_read INTEGER "
     "NOT NULL DEFAULT 0, unpushed TEXT)"),
    ("table", "tasks",
     "CREATE TABLE tasks ( project TEXT NOT NULL, key TEXT NOT NULL, title TEXT NOT NULL, body "
     "TEXT NOT NULL DEFAULT '', deps TEXT NOT NULL DEFAULT '[]', estimate TEXT, plan TEXT, "
     "issue_number INTEGER, issue_state TEXT, steps TEXT, PRIMARY KEY (project, key) )"),
]


def test_blank_database_migrates_to_the_exact_schema(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    assert store.schema() == EXPECTED_SCHEMA
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # migrating again is a no-op
    assert store.migrate() == []
    assert [r[0] for r in store.conn.execute("SELECT name FROM migrations")] == [
        "001_initial", "002_local_forge", "003_outcome", "004_message_stage",
        "005_usage_limits", "006_step", "007_host", "008_hooks_read",
        "009_unpushed", "010_forge_trouble", "011_main_watch",
        "012_agent_usage", "013_merge_train"]


def test_failed_migration_leaves_nothing_behind(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from ao.record.store import connection as storemod  # where migrate() reads MIGRATIONS

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        conn.execute("THIS IS NOT SQL")

    monkeypatch.setattr(storemod, "MIGRATIONS", [*storemod.MIGRATIONS, ("002_broken", broken)])
    with pytest.raises(sqlite3.OperationalError):
        Store(tmp_path / "state.db")
    monkeypatch.setattr(storemod, "MIGRATIONS", storemod.MIGRATIONS[:2])
    store = Store(tmp_path / "state.db")
    assert "half" not in {n for _, n, _ in store.schema()}


def test_transitions_are_enforced() -> None:
    assert check_transition("queued", "spawning") is State.SPAWNING
    with pytest.raises(StateError, match="cannot go from merged to working"):
        check_transition(State.MERGED, State.WORKING)
    with pytest.raises(ValueError):
        check_transition("queued", "flying")


def test_store_enforces_states(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    s = store.create_session("workflow", "wor", "AUTH-001")
    assert s.id == "wor-1" and s.state is State.SPAWNING
    store.set_state(s.id, State.WORKING)
    with pytest.raises(StateError):
        store.set_state(s.id, State.CLEANED)
    assert store.session(s.id).state is State.WORKING
    # the CHECK constraint stops a write that bypasses the enum
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute("UPDATE sessions SET state = 'done' WHERE id = ?", (s.id,))
    with pytest.raises(ValueError):
        store.update_session(s.id, state="merged")


def test_one_live_session_per_task_and_capacity(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    a = store.create_session("workflow", "wor", "AUTH-001")
    with pytest.raises(TaskBusy, match="AUTH-001 already has session wor-1"):
        store.create_session("workflow", "wor", "AUTH-001")
    store.set_state(a.id, State.KILLED)
    b = store.create_session("workflow", "wor", "AUTH-001")
    assert b.id == "wor-2"  # ids are never reused
    store.create_session("workflow", "wor", "DB-001", max_running=2)
    with pytest.raises(AtCapacity):
        store.create_session("workflow", "wor", "USERS-001", max_running=2)
    queued = store.create_session("workflow", "wor", "USERS-001", state=State.QUEUED,
                                  max_running=2)
    assert queued.state is State.QUEUED


def _allocate(db: str, worker: int, n: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    store = Store(Path(db))
    ids = [store.create_session("workflow", "wor", f"T-{worker}-{i}").id for i in range(n)]
    out.put(ids)


def test_id_allocation_is_atomic_across_processes(tmp_path: Path) -> None:
    db = str(tmp_path / "state.db")
    Store(Path(db)).close()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_allocate, args=(db, w, 25, out)) for w in range(4)]
    for p in procs:
        p.start()
    ids = [i for _ in procs for i in out.get(timeout=60)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(ids) == 100
    assert sorted(ids, key=lambda s: int(s.split("-")[1])) == [f"wor-{n}" for n in range(1, 101)]


def _spawn_same(db: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    store = Store(Path(db))
    won = []
    for i in range(20):
        with contextlib.suppress(TaskBusy):
            won.append(store.create_session("workflow", "wor", f"T-{i}").task)
    out.put(won)


def test_two_processes_never_both_take_a_task(tmp_path: Path) -> None:
    db = str(tmp_path / "state.db")
    Store(Path(db)).close()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_spawn_same, args=(db, out)) for _ in range(3)]
    for p in procs:
        p.start()
    won = [t for _ in procs for t in out.get(timeout=60)]
    for p in procs:
        p.join(timeout=60)
    assert sorted(won) == sorted(f"T-{i}" for i in range(20))


def test_attempts_and_messages(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    s = store.create_session("workflow", "wor", "AUTH-001")
    assert store.record_attempt(s.id, "ci-failed", "sha1") is True
    assert store.record_attempt(s.id, "ci-failed", "sha1") is False
    assert store.record_attempt(s.id, "ci-failed", "sha2") is True
    assert len(store.attempts(s.id, "ci-failed")) == 2
    mid = store.queue_message(s.id, "hello")
    assert [m["status"] for m in store.messages(s.id)] == ["queued"]
    store.set_message(mid, "delivered")
    assert store.messages(s.id, "delivered")[0]["delivered_at"] is not None
