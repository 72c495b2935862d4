"""What the faces read (the board, the dashboard, `ao usage`, the planner's budget) as named
queries, so no SQL is written outside this package."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ao.record.store.connection import equal_to

if TYPE_CHECKING:  # the layer below, for the types of the methods it lends
    from ao.record.store.local_forge import LocalForgeRecords as _Below
else:  # at run time the layers meet in Store (__init__.py), not in a chain
    from ao.record.store.connection import Connection as _Below



class Reads(_Below):
    """Named reads over events and sessions, and the file's upkeep."""

    def last_event_types(self, ids: list[str] | None = None) -> dict[str, str]:
        """Each session's newest event type (of `ids`, or of every session)."""
        where, args = "session IS NOT NULL", []
        if ids is not None:
            where = f"session IN ({', '.join('?' * len(ids))})"
            args = list(ids)
        sql = (f"SELECT session, type FROM events WHERE id IN (SELECT max(id) FROM events "
               f"WHERE {where} GROUP BY session)")
        return {r["session"]: r["type"] for r in self.db.query(sql, args)}

    def newest_update(self) -> float:
        row = self.conn.execute("SELECT max(updated_at) FROM sessions").fetchone()
        return float(row[0] or 0.0)

    def changed_since(self, event_id: int, when: float) -> set[str]:
        """Sessions with an event after `event_id` or a row written at or after `when`."""
        out = {r["session"] for r in self.db.query(
            "SELECT DISTINCT session FROM events WHERE id > ? AND session IS NOT NULL",
            [event_id])}
        return out | {r["id"] for r in self.db.query(
            "SELECT id FROM sessions WHERE updated_at >= ?", [when])}

    def session_events(self, sid: str) -> list[dict[str, Any]]:
        return [{"id": r["id"], "ts": r["ts"], "type": r["type"], "data": json.loads(r["data"])}
                for r in self.db.query("SELECT id, ts, type, data FROM events WHERE session = ? "
                                       "ORDER BY id", [sid])]

    def events_after(self, after: int, project: str | None = None,
                     session: str | None = None, type_prefix: str | None = None,
                     limit: int = 200) -> list[dict[str, Any]]:
        where, args = equal_to(project=project, session=session)
        where.insert(0, "id > ?")
        args.insert(0, after)
        if type_prefix:
            where.append("type LIKE ?")
            args.append(type_prefix.replace("%", "") + "%")
        return list(self.db.query(f"SELECT * FROM events WHERE {' AND '.join(where)} "
                                  f"ORDER BY id LIMIT {int(limit)}", args))

    def session_counts(self) -> list[tuple[str, str, int]]:
        """(project, state, sessions)."""
        return [(r["project"], r["state"], r["n"]) for r in self.db.query(
            "SELECT project, state, count(*) AS n FROM sessions GROUP BY project, state")]

    def event_counts(self) -> list[tuple[str, int]]:
        return [(r["type"], r["n"]) for r in self.db.query(
            "SELECT type, count(*) AS n FROM events GROUP BY type")]

    def llm_calls(self, project: str | None = None) -> list[tuple[str | None, dict[str, Any]]]:
        """Every model call's (project, data)."""
        sql, args = "SELECT project, data FROM events WHERE type = 'llm.call'", []
        if project:
            sql += " AND project = ?"
            args.append(project)
        return [(r["project"], json.loads(r["data"])) for r in self.db.query(sql, args)]

    def vacuum(self) -> None:
        self.conn.execute("VACUUM")
