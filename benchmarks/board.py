"""The board with 200 sessions: the app's own work from a store change to the table that
shows it, through the real refresh path (`poll`, which finds the changed rows from the store),
beside rebuilding the whole table, measured in the same run (headless, 160x50).

Timed inside the app: the work `poll()` and `rebuild()` do on the UI thread (queries, cell
updates), not the harness's round trip. The changes are observations written without an
event (CI pending -> passing), which the board must notice by itself.

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

TARGET_RATIO = 0.3


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
        store.update_session(s.id, activity="active", pr_number=i + 1, pr_state="open",
                             pr_checks="pending", pr_mergeable="mergeable")
        ids.append(s.id)
    app = make_app(config.load(), store, None, refresh_every=3600)
    full, incremental = [], []
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        for r in range(repeat):
            t0 = time.perf_counter()
            app.rebuild()
            full.append(time.perf_counter() - t0)
            await pilot.pause()
            batch = ids[(r * changed) % n:(r * changed) % n + changed]
            time.sleep(0.01)  # the store's clock moves past the board's last look
            for sid in batch:
                store.update_session(sid, pr_checks="failing" if r % 2 else "passing")
            t0 = time.perf_counter()
            app.poll()
            incremental.append(time.perf_counter() - t0)
            await pilot.pause()
            shown = {str(app.shown[sid][5]) for sid in batch}
            want = "failing" if r % 2 else "passing"
            if not all(want in x for x in shown):
                raise SystemExit(f"a row change with no event was not shown: {shown}")
    return statistics.median(incremental) * 1000, statistics.median(full) * 1000


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
    print(f"{f'refresh, {args.changed} of {args.sessions} changed':<34}{value:>12.2f}")
    print(f"{f'rebuild of {args.sessions} sessions':<34}{baseline:>12.2f}")
    print(f"the refresh is {value / baseline:.2f}x a rebuild (target <= {TARGET_RATIO:g}x);"
          " every changed row was shown by the next refresh")
    print(json.dumps({"benchmark": "board", "metric": f"refresh after {args.changed} of "
                      f"{args.sessions} sessions changed", "unit": "ms",
                      "value": round(value, 2), "baseline": round(baseline, 2),
                      "ratio": round(value / baseline, 3), "target": TARGET_RATIO,
                      "target_on": "ratio"}))


if __name__ == "__main__":
    main()
