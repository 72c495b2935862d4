"""What each agent spends, from its own records (docs/sessions.md "Usage"): Claude Code's
session transcript (JSONL, each assistant message with its model and `usage`), found through
the `transcript_path` its hooks report, read from where the last read stopped (never whole
again) at each poll. Tokens by kind and the estimated cost, priced with the one price table
(prices.py); a model not in it is priced as the default and marked estimated.

Codex's, Gemini CLI's and Aider's own usage records are not read yet.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from .prices import DEFAULT_MODEL, PRICES, cost

if TYPE_CHECKING:
    from .store import Session, Store

CHUNK = 4 << 20  # bytes read at most per session and poll


def note_transcript(store: Store, s: Session, path: str) -> None:
    """The transcript a hook named for the session (a new one, after a restore, starts over)."""
    rows = store.agent_usage(s.id)
    if rows and rows[0]["transcript"] == path:
        return
    store.set_agent_usage(s.id, transcript=path, read_to=0, last_message=None)


def read(store: Store, s: Session, row: dict[str, Any] | None = None) -> bool:
    """The session's transcript read on from its offset, its new assistant messages counted
    once each (a message written in several lines repeats its usage); whether anything was
    added. `row`: the session's usage record, when the caller read it already."""
    if row is None:
        rows = store.agent_usage(s.id)
        row = rows[0] if rows else None
    if row is None or not row["transcript"]:
        return False
    path, offset = str(row["transcript"]), int(row["read_to"])
    try:
        size = os.path.getsize(path)
        if size <= offset:
            return False
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read(min(CHUNK, size - offset))
    except OSError:
        return False
    end = chunk.rfind(b"\n") + 1  # a line being written waits for the next read
    if not end:
        if len(chunk) == CHUNK:  # one line longer than a read (an image, a big tool result):
            store.set_agent_usage(s.id, read_to=offset + len(chunk))  # passed over
        return False
    totals = {k: int(row[k]) for k in ("input_tokens", "output_tokens", "cache_write_tokens",
                                       "cache_read_tokens")}
    spent, last, model, estimated = float(row["cost_usd"]), row["last_message"], row["model"], \
        int(row["estimated"])
    for line in chunk[:end].splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        msg = d.get("message") if isinstance(d, dict) and d.get("type") == "assistant" else None
        if not isinstance(msg, dict) or not isinstance(msg.get("usage"), dict):
            continue
        if msg.get("id") and msg.get("id") == last:
            continue  # the same message's next content block
        last = msg.get("id")
        usage = {k: int(v) for k, v in msg["usage"].items() if isinstance(v, int)}
        model = str(msg.get("model") or model or DEFAULT_MODEL)
        estimated |= model not in PRICES
        spent += cost(model, usage)
        totals["input_tokens"] += usage.get("input_tokens", 0)
        totals["output_tokens"] += usage.get("output_tokens", 0)
        totals["cache_write_tokens"] += usage.get("cache_creation_input_tokens", 0)
        totals["cache_read_tokens"] += usage.get("cache_read_input_tokens", 0)
    store.set_agent_usage(s.id, read_to=offset + end, last_message=last, model=model,
                          cost_usd=round(spent, 6), estimated=estimated, **totals)
    return True
