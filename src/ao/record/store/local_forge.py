"""The local forge's records: pull requests, CI runs per head, reviews."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the layer below, for the types of the methods it lends
    from ao.record.store.queue import Queue as _Below
else:  # at run time the layers meet in Store (__init__.py), not in a chain
    from ao.record.store.connection import Connection as _Below




class LocalForgeRecords(_Below):
    """The local forge's pull requests, CI runs and reviews."""

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
