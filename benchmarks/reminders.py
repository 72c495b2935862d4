"""150 reminders at once: the length of the daemon's tick that hands them out, against a tick
of the same fleet with nothing to deliver, measured in the same run.

150 idle live sessions (real tmux sessions of a command agent, `cat`, which shows what is
typed in it), each with a pushed branch (an open PR on the local forge: the tick's forge read
and per-session work are real, as in tick.py) and one queued message, as when the stuck-agent
reminders fire together. The deliveries go on beside the tick (a pool, each session under its
own lock): the tick must not wait for them (it took 42 s when they went one after another
inside it, and nothing was observed, merged or started meanwhile). Also printed: the time
until every message is confirmed delivered.

Run: python benchmarks/reminders.py [--sessions 150] [--ticks 3]
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
TARGET = 2.0


def measure(n: int, ticks: int) -> tuple[float, float, float, int]:
    from ao import config
    from ao.loop.daemon import Daemon
    from ao.record.store import Store
    from ao.world import tmux

    with sandbox("ao-bench-reminders-") as sb:
        sb.config(30, agent={"command": "cat"}, max_concurrent=n + 1)
        cfg = config.load()
        store = Store()
        srv = tmux.server(cfg.tmux_socket)
        sids = sb.working_sessions(n, "cat")
        d = Daemon(cfg, store, srv)
        time.sleep(1.5)  # output in the second of a capture counts as new: let it pass
        d.tick()  # warm-up: first captures, caches
        calm = []
        for _ in range(ticks):
            t0 = time.perf_counter()
            d.tick()
            calm.append(time.perf_counter() - t0)
        for sid in sids:
            store.queue_message(sid, f"ao here: a reminder for {sid}", "nudge")
        t0 = time.perf_counter()
        d.tick()
        busy = time.perf_counter() - t0
        while time.perf_counter() - t0 < 300:
            left = sum(1 for sid in sids if store.messages(sid, "queued") or
                       store.messages(sid, "sending"))
            if not left:
                break
            d.tick()
        done = time.perf_counter() - t0
        delivered = sum(1 for sid in sids for m in store.messages(sid)
                        if m["status"] == "delivered")
        d.deliveries.close()
        return statistics.median(calm), busy, done, delivered


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=150)
    ap.add_argument("--ticks", type=int, default=3)
    args = ap.parse_args()
    calm, busy, done, delivered = measure(args.sessions, args.ticks)
    print(f"{args.sessions} idle sessions: a tick {calm:.2f} s with nothing to deliver, "
          f"{busy:.2f} s with {args.sessions} reminders queued; ratio {busy / calm:.2f} "
          f"(target <= {TARGET:g}); all delivered after {done:.1f} s "
          f"({delivered}/{args.sessions})")
    print(json.dumps({"benchmark": "reminders", "metric": "tick with 150 queued reminders",
                      "unit": "s", "value": round(busy, 3), "baseline": round(calm, 3),
                      "ratio": round(busy / calm, 2), "target": TARGET, "target_on": "ratio",
                      "delivered": delivered, "all_delivered_s": round(done, 1)}))


if __name__ == "__main__":
    main()
