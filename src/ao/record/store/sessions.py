"""Sessions: created under the write lock (one live session per task, the project's
capacity), read, observed and moved through the lifecycle (state.check_transition)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from ao.errors import BadInput, NotFound
from ao.record.rows import AtCapacity, Session, TaskBusy
from ao.record.state import OUTCOME_OF, RUNNING, State, check_transition
from ao.record.store.connection import equal_to
from ao.record.store.schema import _LIVE

if TYPE_CHECKING:  # the layer below, for the types of the methods it lends
    from ao.record.store.projects import Projects as _Below
else:  # at run time the layers meet in Store (__init__.py), not in a chain
    from ao.record.store.connection import Connection as _Below



class Sessions(_Below):
    """Sessions: one live session per task, allocated ids, the lifecycle, observations."""

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
        where, args = equal_to(project=project, task=task)
        if states is not None:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(s.value for s in states)
        sql = "SELECT * FROM sessions" + (" WHERE " + " AND ".join(where) if where else "")
        cur = self.conn.execute(sql + " ORDER BY created_at, id", args)
        cols = [d[0] for d in cur.description]
        return [Session.from_row(dict(zip(cols, r, strict=True))) for r in cur.fetchall()]

    def earliest_reset(self, now: float) -> float | None:
        """When the first usage limit of a working session resets after `now`; None when
        none waits (one query: the daemon asks at every tick and almost always there is
        none)."""
        row = self.conn.execute(
            "SELECT MIN(limited_until) FROM sessions WHERE limited_until > ? AND state IN "
            "('working', 'pr_open')", (now,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

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
