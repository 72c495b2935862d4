"""What each agent spends, from its own records (docs/sessions.md "Usage"): Claude Code's
session transcript (JSONL, each assistant message with its model and `usage`), found through
the `transcript_path` its hooks report, read from where the last read stopped (never whole
again) at each poll. Tokens by kind and the estimated cost, priced with the one price table
(prices.py); a model not in it is priced as the default and marked estimated.

Codex's rollout file (`$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl`: a `session_meta`
line with the `cwd` it runs in, `turn_context` lines with the model, `event_msg` lines of
type `token_count` with the session's running totals) is found by the session's worktree and
read on the same way. Gemini CLI's and Aider's own usage records are not read yet.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ao.decide.prices import DEFAULT_MODEL, PRICES, cost

if TYPE_CHECKING:
    from ao.record.store import Session, Store

CHUNK = 4 << 20  # bytes read at most per session and poll


def note_transcript(store: Store, s: Session, path: str) -> None:
    """The transcript a hook named for the session (a new one, after a restore, starts over)."""
    rows = store.agent_usage(s.id)
    if rows and rows[0]["transcript"] == path:
        return
    store.set_agent_usage(s.id, transcript=path, read_to=0, last_message=None)


def _new_lines(store: Store, s: Session, row: dict[str, Any]) -> tuple[list[bytes], int] | None:
    """The whole lines written to the session's record (a transcript, a rollout file) since
    its offset, at most CHUNK bytes of them, and the offset after them; None when there are
    none. A line being written waits for the next read; one longer than a read (an image, a
    big tool output) is passed over."""
    path, offset = str(row["transcript"]), int(row["read_to"])
    try:
        size = os.path.getsize(path)
        if size <= offset:
            return None
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read(min(CHUNK, size - offset))
    except OSError:
        return None
    end = chunk.rfind(b"\n") + 1
    if not end:
        if len(chunk) == CHUNK:
            store.set_agent_usage(s.id, read_to=offset + len(chunk))  # passed over
        return None
    return chunk[:end].splitlines(), offset + end


def read(store: Store, s: Session, row: dict[str, Any] | None = None) -> bool:
    """The session's transcript read on from its offset, its new assistant messages counted
    once each (a message written in several lines repeats its usage); whether anything was
    added. `row`: the session's usage record, when the caller read it already."""
    if row is None:
        rows = store.agent_usage(s.id)
        row = rows[0] if rows else None
    if row is None or not row["transcript"]:
        return False
    new = _new_lines(store, s, row)
    if new is None:
        return False
    lines, read_to = new
    totals = {k: int(row[k]) for k in ("input_tokens", "output_tokens", "cache_write_tokens",
                                       "cache_read_tokens")}
    spent, last, model, estimated = float(row["cost_usd"]), row["last_message"], row["model"], \
        int(row["estimated"])
    for line in lines:
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
    store.set_agent_usage(s.id, read_to=read_to, last_message=last, model=model,
                          cost_usd=round(spent, 6), estimated=estimated, **totals)
    return True


_CWD_OF: dict[str, str | None] = {}  # a rollout file's session cwd, read once a file


def find_codex_rollout(store: Store, s: Session, codex_home: Path) -> str | None:
    """The Codex rollout file of the session: under its CODEX_HOME, begun since the session
    was, whose `session_meta` names the session's worktree as its cwd; noted on the session
    (read from then on) when found."""
    if not s.worktree:
        return None
    want = os.path.realpath(s.worktree)
    since = s.created_at - 60
    days = {time.strftime("%Y/%m/%d", time.localtime(t)) for t in (since, time.time())}
    days |= {time.strftime("%Y/%m/%d", time.gmtime(t)) for t in (since, time.time())}
    for day in sorted(days):
        for f in sorted((codex_home / "sessions" / day).glob("rollout-*.jsonl")):
            key = str(f)
            if key not in _CWD_OF:
                try:
                    if f.stat().st_mtime < since:
                        continue
                    with f.open("rb") as fh:
                        meta = json.loads(fh.readline() or b"{}")
                    cwd = (meta.get("payload") or {}).get("cwd") \
                        if meta.get("type") == "session_meta" else None
                except (OSError, ValueError, AttributeError):
                    continue
                _CWD_OF[key] = os.path.realpath(cwd) if isinstance(cwd, str) else None
            if _CWD_OF[key] == want:
                note_transcript(store, s, key)
                return key
    return None


def read_codex(store: Store, s: Session, row: dict[str, Any]) -> bool:
    """The session's Codex rollout read on from its offset: the model of its turns, and the
    running totals of its last `token_count` (input less the cached part, the cached part as
    cache reads, output with reasoning), priced once more from them."""
    new = _new_lines(store, s, row)
    if new is None:
        return False
    lines, read_to = new
    model, totals = row["model"], None
    for line in lines:
        try:
            d = json.loads(line)
        except ValueError:
            continue
        p = d.get("payload") if isinstance(d, dict) else None
        if not isinstance(p, dict):
            continue
        if d.get("type") == "turn_context" and p.get("model"):
            model = str(p["model"])
        if d.get("type") == "event_msg" and p.get("type") == "token_count":
            info = p.get("info") or {}
            if isinstance(info.get("total_token_usage"), dict):
                totals = info["total_token_usage"]
    changes: dict[str, Any] = {"read_to": read_to, "model": model or DEFAULT_MODEL}
    if totals is not None:
        cached = int(totals.get("cached_input_tokens") or 0)
        usage = {"input_tokens": max(0, int(totals.get("input_tokens") or 0) - cached),
                 "cache_read_input_tokens": cached,
                 "output_tokens": int(totals.get("output_tokens") or 0) +
                 int(totals.get("reasoning_output_tokens") or 0)}
        m = str(model or DEFAULT_MODEL)
        changes.update(input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"],
                       cache_read_tokens=cached, cache_write_tokens=0,
                       cost_usd=round(cost(m, usage), 6), estimated=int(m not in PRICES))
    store.set_agent_usage(s.id, **changes)
    return totals is not None


def spent(store: Store, project: str) -> float:
    """What the project's agents have spent so far, in dollars (every session's record)."""
    ids = [s.id for s in store.sessions(project)]
    return round(sum(float(r["cost_usd"]) for r in store.agent_usage_of(ids)), 6)


def over_budget(store: Store, project: str, budget: float | None) -> str | None:
    """Why nothing new starts in the project, when its agents spent its budget; else None."""
    if budget is None:
        return None
    used = spent(store, project)
    return f"the project's budget is spent (${used:.2f} of ${budget:.2f})" \
        if used >= budget else None
