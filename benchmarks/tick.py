"""One daemon tick over N idle live sessions (real tmux sessions, each with a pushed branch: an
open PR on the local forge), against the floor measured in the same run: one `tmux list-panes
-a` round trip (the liveness and last output of every pane at once) and the one forge read of
every branch.

For N in 10, 50, 100, 200 (real `sleep` agents on ao's tmux server, recorded as working
sessions of a command agent): the median wall time of `Daemon.tick` after a warm-up tick, and
the processes it spawned. Prints the fitted growth law.

At the largest N, with the daemon's ticks just made: `ao session ls` against `ao status`
(target <= 1.5): a listing reads what the daemon saw (it ran a capture-pane a session, 0.95 s
at 200, 4.4x the cost of importing the CLI).

Run: python benchmarks/tick.py [--sizes 10,50,100,200] [--ticks 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sandbox import sandbox

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))


class Spawned:
    """Counts the processes started through subprocess (libtmux and git both use it)."""

    def __init__(self) -> None:
        self.n = 0
        self._orig = subprocess.Popen.__init__

        def counting(popen: subprocess.Popen[bytes], *a: object, **k: object) -> None:
            self.n += 1
            self._orig(popen, *a, **k)  # type: ignore[arg-type]

        subprocess.Popen.__init__ = counting  # type: ignore[method-assign]


LISTED: dict[str, float] = {}  # the largest N's `ao session ls` and `ao status`, median s


def measure(n: int, ticks: int) -> tuple[float, float, float]:
    from ao import config
    from ao.loop.daemon import Daemon
    from ao.record.store import Store
    from ao.world import tmux

    with sandbox(f"ao-bench-tick-{n}-") as sb:
        sb.config(30, agent={"command": "sleep 100000"}, max_concurrent=n + 1)
        cfg = config.load()
        store = Store()
        srv = tmux.server(cfg.tmux_socket)
        sb.working_sessions(n, "sleep 100000")  # realistic: branches, open PRs
        d = Daemon(cfg, store, srv)
        time.sleep(1.5)  # output in the second of a capture counts as new: let it pass
        d.tick()  # warm-up: first captures, caches
        counter = Spawned()
        walls = []
        for _ in range(ticks):
            t0 = time.perf_counter()
            d.tick()
            walls.append(time.perf_counter() - t0)
        procs = counter.n / ticks
        subprocess.Popen.__init__ = counter._orig  # type: ignore[method-assign]
        for what in ("status", "session ls"):
            samples = []
            for _ in range(3):
                d.tick()  # as a running daemon's last poll
                t0 = time.perf_counter()
                sb.ao(*what.split())
                samples.append(time.perf_counter() - t0)
            LISTED[what] = statistics.median(samples)
        # the floor: one `list-panes -a` and the one forge read of every branch
        from ao.world import forge as forgemod

        forge = forgemod.for_project(cfg.project("bench"), store)
        branches = [f"ao/t-{i}" for i in range(n)]
        floors = []
        for _ in range(ticks):
            t0 = time.perf_counter()
            srv.cmd("list-panes", "-a", "-F", "#{session_name} #{pane_dead} #{window_activity}")
            forge.poll(branches)
            floors.append(time.perf_counter() - t0)
        return statistics.median(walls), procs, statistics.median(floors)


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b·x."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / \
        sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,50,100,200")
    ap.add_argument("--ticks", type=int, default=5)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = [(n, *measure(n, args.ticks)) for n in sizes]
    print(f"{'sessions':>9}{'tick ms':>10}{'processes':>11}{'floor ms':>10}{'ratio':>8}")
    for n, wall, procs, floor in rows:
        print(f"{n:>9}{wall * 1000:>10.1f}{procs:>11.1f}{floor * 1000:>10.2f}"
              f"{wall / floor:>8.1f}")
    a, b = fit([float(r[0]) for r in rows], [r[1] * 1000 for r in rows])
    print(f"fitted: tick ≈ {a:.1f} + {b:.3f}·N ms")
    print(f"at {rows[-1][0]}: ratio {rows[-1][1] / rows[-1][3]:.2f} (target <= 3)")
    print(f"at {rows[-1][0]}: `ao session ls` {LISTED['session ls']:.2f} s, `ao status` "
          f"{LISTED['status']:.2f} s; ratio {LISTED['session ls'] / LISTED['status']:.2f} "
          "(target <= 1.5)")
    n, wall, procs, floor = rows[-1]
    print(json.dumps({"benchmark": "tick", "metric": f"one tick over {n} idle sessions",
                      "unit": "s", "value": round(wall, 4), "baseline": round(floor, 4),
                      "ratio": round(wall / floor, 2), "target": 3, "target_on": "ratio",
                      "processes": procs}))


if __name__ == "__main__":
    main()
