"""Projects, plan runs and tasks."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import sqlite_utils

from ao.decide import steps as steps_mod
from ao.record.store.connection import Connection

if TYPE_CHECKING:
    from ao.decide.steps import Step


class Projects(Connection):
    """Projects, plan runs and tasks."""

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
                          "local_reviews", "counters", "events"):
                c.execute(f"DELETE FROM {table} WHERE project = ?", (project,))

    def set_paused(self, project: str, paused: bool) -> None:
        self.conn.execute("UPDATE projects SET paused = ? WHERE name = ?", (int(paused), project))

    def paused(self, project: str) -> bool:
        row = self.conn.execute("SELECT paused FROM projects WHERE name = ?",
                                (project,)).fetchone()
        return bool(row and row[0])

    def set_forge_trouble(self, project: str, trouble: tuple[str, str] | None) -> None:
        """Why the project's forge cannot be read (reason, who must act), or None."""
        self.conn.execute("UPDATE projects SET forge_trouble = ? WHERE name = ?",
                          (json.dumps(list(trouble)) if trouble else None, project))

    def forge_trouble(self, project: str) -> tuple[str, str] | None:
        row = self.conn.execute("SELECT forge_trouble FROM projects WHERE name = ?",
                                (project,)).fetchone()
        if not row or not row[0]:
            return None
        reason, who = json.loads(row[0])
        return str(reason), str(who)

    def set_main_watch(self, project: str, watch: dict[str, Any]) -> None:
        self.conn.execute("UPDATE projects SET main_watch = ? WHERE name = ?",
                          (json.dumps(watch), project))

    def main_watch(self, project: str) -> dict[str, Any]:
        """What is known of the project's main branch (mainwatch.py); {} before anything."""
        return self._project_json(project, "main_watch")

    def set_train(self, project: str, train: dict[str, Any] | None) -> None:
        self.conn.execute("UPDATE projects SET train = ? WHERE name = ?",
                          (json.dumps(train) if train else None, project))

    def train(self, project: str) -> dict[str, Any]:
        """The local forge's merge train in progress (forge/local_train.py); {} when none."""
        return self._project_json(project, "train")

    def _project_json(self, project: str, column: str) -> dict[str, Any]:
        assert column in ("main_watch", "train")
        row = self.conn.execute(f"SELECT {column} FROM projects WHERE name = ?",
                                (project,)).fetchone()
        data = json.loads(row[0]) if row and row[0] else {}
        return data if isinstance(data, dict) else {}

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
