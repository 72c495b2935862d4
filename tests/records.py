"""A session record as the store holds it, for the tests of pure decisions (a PR open,
green, not yet reviewed, its agent idle)."""

from __future__ import annotations

from ao.record.state import Activity, State
from ao.record.store import Session

NOW = 1_800_000_000.0
SESSION = Session(id="wor-3", project="workflow", task="A-1", title="t", state=State.PR_OPEN,
                  agent="claude-code", branch="ao/a-1", worktree="/w", created_at=NOW - 600,
                  updated_at=NOW, activity=Activity.IDLE, activity_at=NOW, screen_hash=None,
                  screen_changed_at=NOW - 5, hook_activity=None, hook_at=None, pr_number=45,
                  pr_url="u", pr_state="open", pr_head_sha="a" * 40, pr_checks="passing",
                  pr_review="not_reviewed", pr_mergeable="mergeable", pr_seen_at=NOW,
                  pane_alive=1, exit_status=None, runtime_seen_at=NOW, note=None)
