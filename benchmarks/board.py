"""The board with 200 sessions: the app's own work from a store change to the table that
shows it, through the real refresh path (`poll`, which finds the changed rows from the store),
beside rebuilding the whole table, measured in the same run (headless, 160x50).

Timed to the frame: the work `poll()` and `rebuild()` do on the UI thread (queries, cell
updates) and the screen update that shows it (the pilot's pause: refresh, render, compose).
The changes are observations written without an event, which the board must notice by
itself: CI pending <-> passing, rows that stay in their zone (the target); and, printed
beside, CI passing <-> failing, rows that move to another zone (the table is sorted again, and
every visible row moves: drawn again whatever the table keeps).

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


async def measure(n: int, changed: int, repeat: int, moving: bool = False
                  ) -> tuple[float, float]:
    from ao import config
    from ao.record.state import State
    from ao.record.store import Store
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
            await pilot.pause()  # to the frame: the table's refresh, render and compose
            full.append(time.perf_counter() - t0)
            batch = ids[(r * changed) % n:(r * changed) % n + changed]
            time.sleep(0.01)  # the store's clock moves past the board's last look
            want = ("failing" if r % 2 else "passing") if moving else \
                ("pending" if r % 2 else "passing")
            for sid in batch:
                store.update_session(sid, pr_checks=want)
            t0 = time.perf_counter()
            app.poll()
            await pilot.pause()
            incremental.append(time.perf_counter() - t0)
            shown = {str(app.shown[sid]["pr"]) for sid in batch}
            if not all(want in x for x in shown):
                raise SystemExit(f"a row change with no event was not shown: {shown}")
    return statistics.median(incremental) * 1000, statistics.median(full) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--changed", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    runs = []
    for moving in (False, True):  # each in a home of its own
        with tempfile.TemporaryDirectory(prefix="ao-bench-board-") as tmp:
            os.environ["AO_HOME"] = tmp
            os.environ["HOME"] = tmp
            runs.append(asyncio.run(measure(args.sessions, args.changed, args.repeat,
                                            moving)))
    (value, baseline), (moved, moved_base) = runs
    print(f"{'':<34}{'median ms':>12}")
    print(f"{f'refresh, {args.changed} of {args.sessions} changed':<34}{value:>12.2f}")
    print(f"{f'rebuild of {args.sessions} sessions':<34}{baseline:>12.2f}")
    print(f"the refresh is {value / baseline:.2f}x a rebuild (target <= {TARGET_RATIO:g}x);"
          " every changed row was shown by the next refresh")
    print(f"rows moving zones: refresh {moved:.2f} ms, rebuild {moved_base:.2f} ms, "
          f"{moved / moved_base:.2f}x (reported)")
    print(json.dumps({"benchmark": "board", "metric": f"refresh after {args.changed} of "
                      f"{args.sessions} sessions changed", "unit": "ms",
                      "value": round(value, 2), "baseline": round(baseline, 2),
                      "ratio": round(value / baseline, 3), "target": TARGET_RATIO,
                      "target_on": "ratio"}))


if __name__ == "__main__":
    main()
