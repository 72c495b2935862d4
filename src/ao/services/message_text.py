"""What a message becomes before it is typed into an agent: cleaned of control bytes; a long
one written to a file (inside the worktree, on the agent's machine) and pointed to; refused,
with the reason, when it cannot go (messaging.py sends what this gives)."""

from __future__ import annotations

import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ao import paths
from ao.errors import BadInput
from ao.host_config import LOCAL
from ao.record.state import LIVE
from ao.sanitize import clean
from ao.services import hostwork

if TYPE_CHECKING:
    from ao.record.store import Session
    from ao.services.ending import Ending

INLINE_LIMIT = 8000  # longer messages go to a file the agent is pointed to


def prepare(fleet: Ending, s: Session, text: str) -> str:
    """Sanitize; put a long message in a file and send a pointer to it instead."""
    text = clean(text).strip("\n")
    if len(text) <= INLINE_LIMIT:
        return text
    # inside the worktree (under `.ao/`, excluded from git), so the agent can read it
    # without a permission prompt; the session folder when there is no worktree yet
    name = f"message-{int(time.time() * 1000)}.md"
    if s.host != LOCAL and s.worktree:  # on the session's host, beside its worktree
        f = Path(s.worktree) / ".ao" / "messages" / name
        hostwork.write(fleet.host(s.host), PurePosixPath(f), text + "\n")
    else:
        wt = Path(s.worktree) if s.worktree else None
        d = wt / ".ao" / "messages" if wt is not None and wt.is_dir() else \
            paths.session_dir(s.project, s.id) / "messages"
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        f = d / name
        f.write_text(text + "\n", encoding="utf-8")
    head = text[:600].rsplit("\n", 1)[0]
    return (f"The full message ({len(text)} characters) is in {f} - read it all before "
            f"acting. It begins:\n\n{head}\n")


def refusal(s: Session, text: str, raw: bool) -> str | None:
    """Why this message cannot go to this session at all, if it cannot."""
    if s.state not in LIVE or s.state.value == "queued":
        return f"{s.id} is {s.state}; nothing is running to read it"
    # judged as it will be typed: control and escape bytes before a `!` are removed by
    # `clean`, and the agent would then see the `!` first (a NUL or an ESC [0m in front passed)
    if clean(text).strip("\n").lstrip().startswith("!") and not raw:
        raise BadInput("a message starting with `!` runs a shell command in the agent, "
                       "with no permission prompt", "pass --raw to send it anyway")
    if not clean(text).strip():
        return "the message is empty once control characters are removed"
    return None
