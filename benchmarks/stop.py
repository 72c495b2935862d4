"""Stopping an agent whose process has exited but nobody has reaped (a zombie, as where no init
reaps orphans): the time `paths.wait_gone` takes to call it gone, against the same call on a
process already reaped, measured in the same run. Target: at most 50 ms (psutil's wait_procs
counted a zombie alive and each stop waited out its 2 s grace).

Run: python benchmarks/stop.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
TARGET_MS = 50.0


def one(reap_first: bool) -> float:
    from ao import paths

    child = subprocess.Popen(["true"])
    proc = psutil.Process(child.pid)
    while proc.status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.001)
    if reap_first:
        child.wait()
    t0 = time.perf_counter()
    left = paths.wait_gone([proc], 5.0)
    took = time.perf_counter() - t0
    child.wait()
    if left:
        raise SystemExit("a zombie was counted alive")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    zombie = statistics.median(one(False) for _ in range(args.rounds)) * 1000
    reaped = statistics.median(one(True) for _ in range(args.rounds)) * 1000
    print(f"a stop on a zombie agent: {zombie:.2f} ms (median of {args.rounds}); on a reaped "
          f"one {reaped:.2f} ms; target <= {TARGET_MS:g} ms")
    print(json.dumps({"benchmark": "stop", "metric": "wait_gone on a zombie", "unit": "ms",
                      "value": round(zombie, 3), "baseline": round(reaped, 3),
                      "target": TARGET_MS, "target_on": "value"}))


if __name__ == "__main__":
    main()
