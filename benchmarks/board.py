"""The board with 200 sessions: applying an update of 10 sessions and re-rendering, beside
rendering the whole table from scratch, measured in the same run (headless, 160x50).

Each figure is the time from the change to the screen being redrawn (`pilot.pause()`), less
the cost of an idle `pilot.pause()` measured in the same run, which is the test harness's
round trip and not the board's work.

Run: python benchmarks/board.py [--sessions 200] [--changed 10] [--repeat 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time

TARGET_MS = 50.0


async def measure(n: int, changed: int, repeat: int) -> tuple[float, float]:
    from ao import config
    from ao.state import State
    from ao.store import Store
    from ao.tui.app import make_app

    store = Store()
    ids = []
    for i in range(n):
        s = store.create_session("workflow", "wor", f"T-{i}", title=f"task number {i}",
                                 agent="demo")
        store.set_state(s.id, State.WORKING)
        store.update_session(s.id, activity="active", pr_number=i, pr_state="open",
                             pr_checks="pending", pr_mergeable="mergeable")
        ids.append(s.id)
    app = make_app(config.load(), store, None, refresh_every=3600)
    full, incremental, idle = [], [], []
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        for r in range(repeat):
            t0 = time.perf_counter()
            await pilot.pause()
            idle.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            app.rebuild()
            await pilot.pause()
            full.append(time.perf_counter() - t0)
            batch = ids[(r * changed) % n:(r * changed) % n + changed]
            for sid in batch:
                store.update_session(sid, pr_checks="failing" if r % 2 else "passing")
            t0 = time.perf_counter()
            app.apply(batch)
            await pilot.pause()
            incremental.append(time.perf_counter() - t0)
    base = statistics.median(idle)
    return ((statistics.median(incremental) - base) * 1000,
            (statistics.median(full) - base) * 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--changed", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ao-bench-board-") as tmp:
        os.environ["AO_HOME"] = tmp
        os.environ["HOME"] = tmp
        value, baseline = asyncio.run(measure(args.sessions, args.changed, args.repeat))
    print(f"{'':<34}{'median ms':>12}")
    print(f"{f'update {args.changed} of {args.sessions} sessions':<34}{value:>12.1f}")
    print(f"{f'full render of {args.sessions} sessions':<34}{baseline:>12.1f}")
    print(f"incremental is {baseline / value:.1f}x faster; target < {TARGET_MS:g} ms")
    print(json.dumps({"benchmark": "board", "metric": f"update {args.changed} of "
                      f"{args.sessions} sessions and re-render", "unit": "ms",
                      "value": round(value, 2), "baseline": round(baseline, 2),
                      "ratio": round(value / baseline, 3), "target": TARGET_MS,
                      "target_on": "value"}))


if __name__ == "__main__":
    main()
