"""What reading the agents' own usage records costs a poll: 24 live sessions of Claude Code
(real tmux panes, each an open PR on the local forge), each with a transcript of 2,000 turns
in Claude Code's JSONL (each assistant message with its model and `usage`, a message written
in two lines as Claude Code does when it adds a content block). The daemon's tick reads them
on from where the last read stopped; at each poll every transcript gains a turn.

Measured, in the same run: the median tick with the usage reading against the same tick
with it switched off (target <= 1.2), and the totals read against what was written (target:
exact, to the token).

Run: python benchmarks/usage.py [--sessions 24] [--turns 2000] [--ticks 9]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from sandbox import sandbox

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))


def turn(sid: str, i: int) -> str:
    """One turn: the user's line and the assistant's message in two lines (same id)."""
    usage = {"input_tokens": 10 + i % 7, "output_tokens": 100 + i % 13,
             "cache_creation_input_tokens": i % 5, "cache_read_input_tokens": 2000 + i % 11}
    msg = {"id": f"msg_{sid}_{i}", "model": "claude-sonnet-5-5", "role": "assistant",
           "usage": usage}
    return "\n".join(json.dumps(x) for x in (
        {"type": "user", "message": {"role": "user", "content": f"step {i}"}},
        {"type": "assistant", "message": {**msg, "content": [{"type": "text",
                                                               "text": "x" * 200}]}},
        {"type": "assistant", "message": {**msg, "content": [{"type": "tool_use",
                                                               "name": "Bash"}]}})) + "\n"


def expected(turns: int) -> tuple[int, int]:
    return (sum(10 + i % 7 for i in range(turns)), sum(100 + i % 13 for i in range(turns)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=24)
    ap.add_argument("--turns", type=int, default=2000)
    ap.add_argument("--ticks", type=int, default=9)
    a = ap.parse_args()
    from ao import config
    from ao.loop.daemon import Daemon
    from ao.record.store import Store
    from ao.world import agent_usage, tmux

    with sandbox("ao-bench-usage-") as sb:
        sb.config(30, agent={"command": "sleep 100000"}, max_concurrent=a.sessions + 1)
        cfg = config.load()
        store = Store()
        srv = tmux.server(cfg.tmux_socket)
        sids = sb.working_sessions(a.sessions, "sleep 100000")
        files = {}
        for sid in sids:
            store.update_session(sid, agent="claude-code")
            f = sb.root / f"{sid}.jsonl"
            f.write_text("".join(turn(sid, i) for i in range(a.turns)))
            files[sid] = f
            agent_usage.note_transcript(store, store.session(sid), str(f))
        d = Daemon(cfg, store, srv)
        time.sleep(1.5)
        t0 = time.perf_counter()
        d.tick()  # the first read: every transcript whole
        first = time.perf_counter() - t0
        written = {sid: a.turns for sid in sids}
        reading, bare = [], []
        real = d.read_usage
        for k in range(a.ticks * 2):
            for sid in sids:  # a turn more in each transcript, as a working agent adds
                with files[sid].open("a") as fh:
                    fh.write(turn(sid, written[sid]))
                written[sid] += 1
            on = k % 2 == 0
            d.read_usage = real if on else (lambda *_: None)  # type: ignore[method-assign]
            t0 = time.perf_counter()
            d.tick()
            (reading if on else bare).append(time.perf_counter() - t0)
        d.read_usage = real  # type: ignore[method-assign]
        d.tick()  # the last turns written while it was off
        ratio = statistics.median(reading) / statistics.median(bare)
        wrong = []
        for sid in sids:
            row = store.agent_usage(sid)[0]
            want = expected(written[sid])
            if (int(row["input_tokens"]), int(row["output_tokens"])) != want:
                wrong.append((sid, row["input_tokens"], row["output_tokens"], want))
        size = sum(f.stat().st_size for f in files.values()) / 1e6
        print(f"{a.sessions} sessions, {a.turns} turns each ({size:.0f} MB of transcripts): "
              f"first read {first:.2f} s")
        print(f"tick with the usage reading {statistics.median(reading) * 1000:.1f} ms, "
              f"without {statistics.median(bare) * 1000:.1f} ms: ratio {ratio:.2f} "
              "(target <= 1.2)")
        print(f"totals exact against what was written: {a.sessions - len(wrong)} of "
              f"{a.sessions} sessions (target: all)" + (f"; wrong: {wrong[:3]}" if wrong
                                                          else ""))


if __name__ == "__main__":
    main()
