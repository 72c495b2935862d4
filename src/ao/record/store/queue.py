"""Reaction attempts (each recorded once: the fingerprint is the key), the message queue
(queued -> sending, with its stage -> delivered or failed), events and hook offsets."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from ao.record.store.connection import equal_to

if TYPE_CHECKING:  # the layer below, for the types of the methods it lends
    from ao.record.store.sessions import Sessions as _Below
else:  # at run time the layers meet in Store (__init__.py), not in a chain
    from ao.record.store.connection import Connection as _Below



class Queue(_Below):
    """Reaction attempts, the message queue, events and hook offsets."""

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
        return self._of_session("attempts", sid, reaction=reaction)

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
        return self._of_session("messages", sid, status=status)

    def _of_session(self, table: str, sid: str, **given: str | None) -> list[dict[str, Any]]:
        """A session's rows of `table` in order, narrowed by the columns given a value."""
        where, args = equal_to(session=sid, **given)
        return list(self.db.query(f"SELECT * FROM {table} WHERE {' AND '.join(where)} "
                                  "ORDER BY id", args))

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

    def set_message_body(self, mid: int, body: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE messages SET body = ? WHERE id = ?", (body, mid))

    def set_message(self, mid: int, status: str, error: str | None = None) -> None:
        done = time.time() if status == "delivered" else None
        self.db.table("messages").update(
            mid, {"status": status, "error": error, "delivered_at": done})

    def last_event_id(self) -> int:
        (n,) = self.conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
        return int(n)

    def agent_usage(self, sid: str | None = None) -> list[dict[str, Any]]:
        """Each session's agent usage row (agent_usage.py); one session's with `sid`."""
        if sid is not None:
            return list(self.db.query("SELECT * FROM agent_usage WHERE session = ?", [sid]))
        return list(self.db.query("SELECT * FROM agent_usage ORDER BY session"))

    def agent_usage_of(self, sids: list[str]) -> list[dict[str, Any]]:
        """The usage rows of these sessions, in one query."""
        marks = ", ".join("?" * len(sids))
        return list(self.db.query(f"SELECT * FROM agent_usage WHERE session IN ({marks})",
                                  sids)) if sids else []

    def set_agent_usage(self, sid: str, **values: Any) -> None:
        """Insert the session's row, or update just the given columns."""
        row = {"session": sid, **values}
        cols, marks = ", ".join(row), ", ".join("?" * len(row))
        sets = ", ".join(f"{c} = excluded.{c}" for c in values) or "session = excluded.session"
        self.conn.execute(f"INSERT INTO agent_usage ({cols}) VALUES ({marks}) "
                          f"ON CONFLICT (session) DO UPDATE SET {sets}", list(row.values()))

    def record_hooks(self, sid: str, old: int, new: int,
                     events: list[tuple[str, str, str | None, str | None, str | None,
                                        dict[str, Any]]],
                     activity: tuple[str, float] | None) -> bool:
        """Claim the hook file's bytes old..new for this reader and record what they said, in
        one transaction: their events, and the hook activity unless a newer one is recorded.
        False, and nothing recorded, if another reader took these bytes first."""
        with self.transaction() as c:
            if c.execute("UPDATE sessions SET hooks_read = ? WHERE id = ? AND hooks_read = ?",
                         (new, sid, old)).rowcount != 1:
                return False
            for row in events:
                self.add_event(*row)
            if activity is not None:
                c.execute("UPDATE sessions SET hook_activity = ?, hook_at = ?, updated_at = ? "
                          "WHERE id = ? AND (hook_at IS NULL OR hook_at <= ?)",
                          (*activity, time.time(), sid, activity[1]))
        return True

    def hook_seen(self, sid: str, hook: str, after_id: int) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM events WHERE id > ? AND session = ? AND type = 'agent.hook' "
            "AND json_extract(data, '$.event') = ? LIMIT 1", (after_id, sid, hook)).fetchone()
        return row is not None

    def add_event(self, ts: str, type_: str, project: str | None, session: str | None,
                  task: str | None, data: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO events (ts, type, project, session, task, data) VALUES (?,?,?,?,?,?)",
            (ts, type_, project, session, task, json.dumps(data, default=str)))
