"""What an agent changed (`ao session diff`, the board's diff screen, the web's
`/api/sessions/<ref>/diff`): its worktree against the default branch it started from (their
merge base), commits and uncommitted work alike, and the new files it has not added; read on
the session's host. The agent's text, cleaned for a terminal or a page: shown, never obeyed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ao.errors import BadInput
from ao.host_config import LOCAL
from ao.sanitize import for_terminal
from ao.world import workspace

if TYPE_CHECKING:
    from ao.config import Config
    from ao.record.store import Session

LIMIT = 400_000  # characters of diff shown at most (the rest: `git diff` in the worktree)


@dataclass(frozen=True)
class Changes:
    stat: str
    diff: str
    untracked: tuple[str, ...]
    cut: bool = False  # the diff was longer than LIMIT
    base: str = "the default branch"  # what it is against
    merged: bool = False  # what the session merged (its branch is on the default branch)

    def text(self, with_diff: bool = True) -> str:
        parts = [f"(merged: its changes as they merged into {self.base})"] if self.merged else []
        parts.append(self.stat.rstrip("\n") or f"no changes against {self.base}")
        if self.untracked:
            parts.append("not added: " + ", ".join(self.untracked))
        if with_diff and self.diff:
            parts += ["", self.diff.rstrip("\n")]
            if self.cut:
                parts.append(f"… (cut at {LIMIT:,} characters: `git diff` in the worktree)")
        return "\n".join(parts)


def of_session(cfg: Config, s: Session, with_diff: bool = True) -> Changes:
    if not s.worktree:
        raise BadInput(f"{s.id} has no worktree ({s.state})", "see `ao session ls --all`")
    project = cfg.project(s.project)
    host = None if s.host == LOCAL else cfg.hosts.get(s.host)
    wt = Path(s.worktree)
    with workspace.on(host):
        if not workspace.exists(wt):
            raise BadInput(f"{s.id}'s worktree {wt} is gone", "its branch may still be on "
                           f"the remote: `git log {project.remote}/{s.branch}`")
        since = _merged_from(wt, project.remote, project.default_branch) if s.merged else None
        if since is not None:  # merged: the merge base is its own head; what it brought in
            stat = workspace.git(wt, "diff", "--stat", f"{since}...HEAD", check=False).stdout
            diff = workspace.git(wt, "diff", f"{since}...HEAD", check=False).stdout \
                if with_diff else ""
        else:
            stat = workspace.diff_from_base(wt, project.remote, project.default_branch,
                                            "--stat")
            diff = workspace.diff_from_base(wt, project.remote, project.default_branch) \
                if with_diff else ""
        new = [f for f in workspace.git(wt, "ls-files", "-z", "--others", "--exclude-standard",
                                        check=False).stdout.split("\0") if f]
    return Changes(for_terminal(stat), for_terminal(diff[:LIMIT]),
                   tuple(for_terminal(f) for f in new), len(diff) > LIMIT,
                   project.default_branch, since is not None)


def _merged_from(wt: Path, remote: str, branch: str) -> str | None:
    """Where the default branch stood when this worktree's head merged into it (the first
    parent of the merge that brought it in); None when it has not merged there."""
    merges = workspace.git(wt, "rev-list", "--ancestry-path", "--merges", "--reverse",
                           f"HEAD..refs/remotes/{remote}/{branch}", check=False).stdout.split()
    return f"{merges[0]}^1" if merges else None
