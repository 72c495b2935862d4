"""What each agent spends, from its own records (docs/sessions.md "Usage"): Claude Code's
session transcript (JSONL, each assistant message with its model and `usage`), found through
the `transcript_path` its hooks report, read from where the last read stopped (never whole
again) at each poll. Tokens by kind and the estimated cost, priced with the one price table
(prices.py); a model not in it is priced as the default and marked estimated.

Codex's rollout file (`$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl`: a `session_meta`
line with the `cwd` it runs in, `turn_context` lines with the model, `event_msg` lines of
type `token_count` with the session's running totals) is found by the session's worktree and
read on the same way.

Gemini CLI's chat record (`~/.gemini/tmp/<folder>/chats/session-*.jsonl`, the folder named for
the worktree in `~/.gemini/projects.json`): each reply a `gemini` line with its `tokens`
(input with the cached part in it, output, cached, thoughts, tool), a reply written again when
its tool calls are added (counted once by its id). Its model router's small calls are not in
it. Aider's analytics log (`AIDER_ANALYTICS_LOG`, which ao points into the session's folder;
written with analytics off): a `message_send` line a message with its tokens and cost, which
aider counts itself while it streams (its estimate: marked so).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ao import paths
from ao.decide.prices import DEFAULT_MODEL, PRICES, cost

AIDER_USAGE_FILE = "aider-analytics.jsonl"  # in the session's folder (profiles.Aider sets it)

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


def read_agent(store: Store, s: Session, agent: str, row: dict[str, Any] | None) -> bool:
    """The session's agent's own records read on (found first, for the agents whose
    records ao finds itself); whether anything was added."""
    if agent == "claude-code":
        return row is not None and read(store, s, row)
    if row is None or not row["transcript"]:
        home = Path(os.environ.get("HOME") or Path.home())
        if agent == "codex":
            found = find_codex_rollout(store, s, Path(os.environ.get("CODEX_HOME") or
                                                      home / ".codex"))
        elif agent == "gemini":
            found = find_gemini_chat(store, s, home)
        else:
            found = find_aider_log(store, s) if agent == "aider" else None
        if found is None:
            return False
        row = store.agent_usage(s.id)[0]
    readers = {"codex": read_codex, "gemini": read_gemini, "aider": read_aider}
    return readers[agent](store, s, row) if agent in readers else False


KEEPS_RECORDS = frozenset({"claude-code", "codex", "gemini", "aider"})


def find_gemini_chat(store: Store, s: Session, home: Path) -> str | None:
    """Gemini CLI's chat record of the session: the folder `projects.json` names for its
    worktree, the newest `chats/session-*.jsonl` there begun since the session was."""
    if not s.worktree:
        return None
    try:
        projects = json.loads((home / ".gemini" / "projects.json").read_text()
                              ).get("projects") or {}
    except (OSError, ValueError, AttributeError):
        return None
    folder = projects.get(s.worktree) or projects.get(os.path.realpath(s.worktree))
    if not isinstance(folder, str) or not folder or "/" in folder or folder.startswith("."):
        return None
    chats = home / ".gemini" / "tmp" / folder / "chats"
    try:
        files = [(f.stat().st_mtime, f) for f in chats.glob("session-*.jsonl")]
    except OSError:
        return None
    files = [x for x in files if x[0] >= s.created_at - 60]
    if not files:
        return None
    path = str(max(files)[1])
    note_transcript(store, s, path)
    return path


def _gemini_replies(line: bytes) -> Iterator[dict[str, Any]]:
    """The replies a chat-record line holds: a reply, or a `$set` of the whole list."""
    try:
        d = json.loads(line)
    except ValueError:
        return
    if not isinstance(d, dict):
        return
    msgs = (d.get("$set") or {}).get("messages") if isinstance(d.get("$set"), dict) else [d]
    for m in msgs if isinstance(msgs, list) else []:
        if isinstance(m, dict) and m.get("type") == "gemini" and m.get("id") and \
                isinstance(m.get("tokens"), dict):
            yield m


def read_gemini(store: Store, s: Session, row: dict[str, Any]) -> bool:
    """The session's Gemini chat record read on: each reply's tokens counted once (the ids
    counted lately kept with the offset), priced by its model."""
    new = _new_lines(store, s, row)
    if new is None:
        return False
    lines, read_to = new
    try:
        seen: list[str] = json.loads(row["last_message"] or "[]")
    except ValueError:
        seen = []
    totals = {k: int(row[k]) for k in ("input_tokens", "output_tokens", "cache_write_tokens",
                                       "cache_read_tokens")}
    spent, model, estimated = float(row["cost_usd"]), row["model"], int(row["estimated"])
    for line in lines:
        for m in _gemini_replies(line):
            if m["id"] in seen:
                continue
            seen = [*seen, str(m["id"])][-200:]
            tok = {k: int(v) for k, v in m["tokens"].items() if isinstance(v, int)}
            cached = tok.get("cached", 0)
            usage = {"input_tokens": max(0, tok.get("input", 0) - cached) + tok.get("tool", 0),
                     "output_tokens": tok.get("output", 0) + tok.get("thoughts", 0),
                     "cache_read_input_tokens": cached}
            model = str(m.get("model") or model or DEFAULT_MODEL)
            estimated |= model not in PRICES
            spent += cost(model, usage)
            totals["input_tokens"] += usage["input_tokens"]
            totals["output_tokens"] += usage["output_tokens"]
            totals["cache_read_tokens"] += cached
    store.set_agent_usage(s.id, read_to=read_to, last_message=json.dumps(seen), model=model,
                          cost_usd=round(spent, 6), estimated=estimated, **totals)
    return True


def find_aider_log(store: Store, s: Session) -> str | None:
    """Aider's analytics log in the session's folder, once aider has written it."""
    path = paths.session_dir(s.project, s.id) / AIDER_USAGE_FILE
    if not path.exists():
        return None
    note_transcript(store, s, str(path))
    return str(path)


def read_aider(store: Store, s: Session, row: dict[str, Any]) -> bool:
    """The session's aider analytics log read on: each `message_send`'s tokens, at aider's own
    cost where its model is priced (else the price table's), always marked estimated (aider
    counts a streamed reply's tokens itself)."""
    new = _new_lines(store, s, row)
    if new is None:
        return False
    lines, read_to = new
    inp, out, spent = int(row["input_tokens"]), int(row["output_tokens"]), float(row["cost_usd"])
    model = row["model"]
    for line in lines:
        try:
            d = json.loads(line)
        except ValueError:
            continue
        p = d.get("properties") if isinstance(d, dict) and d.get("event") == "message_send" \
            else None
        if not isinstance(p, dict):
            continue
        try:
            usage = {"input_tokens": int(p.get("prompt_tokens") or 0),
                     "output_tokens": int(p.get("completion_tokens") or 0)}
        except (TypeError, ValueError):
            continue  # a line that is not aider's: passed over
        name = str(p.get("main_model") or "")
        model = name if name and "REDACTED" not in name else (model or "aider")
        aider_cost = p.get("cost")
        spent += float(aider_cost) if isinstance(aider_cost, (int, float)) and aider_cost > 0 \
            else cost(model, usage)
        inp, out = inp + usage["input_tokens"], out + usage["output_tokens"]
    store.set_agent_usage(s.id, read_to=read_to, model=model, cost_usd=round(spent, 6),
                          estimated=1, input_tokens=inp, output_tokens=out)
    return True


def spent(store: Store, project: str, tasks: Collection[str] | None = None) -> float:
    """What the project's agents have spent so far, in dollars (every session's record);
    with `tasks`, those tasks' sessions only (a plan's)."""
    return cost_of(store, [s.id for s in store.sessions(project)
                           if tasks is None or s.task in tasks])


def cost_of(store: Store, ids: list[str]) -> float:
    """What these sessions' agents have spent, in dollars (their records, one read)."""
    return round(sum(float(r["cost_usd"]) for r in store.agent_usage_of(ids)), 6)


def over_budget(store: Store, project: str, budget: float | None,
                tasks: Collection[str] | None = None) -> str | None:
    """Why nothing new starts in the project (or, with `tasks`, in its plan), when its agents
    spent its budget; else None."""
    if budget is None:
        return None
    used = spent(store, project, tasks)
    whose = "the project's" if tasks is None else "the plan's"
    return f"{whose} budget is spent (${used:.2f} of ${budget:.2f})" \
        if used >= budget else None
