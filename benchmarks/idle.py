"""What an idle fleet costs: CPU seconds per minute used by the daemon (and the git and tmux
commands it runs) with 24 idle live sessions, while other `ao` commands read the config.

The baseline, measured in the same run, is the same daemon with no sessions at all. A daemon
that reloads its config because a file was read, or that redoes work every tick, shows here.

Run: python benchmarks/idle.py [--window 25] [--interval 10] [--sessions 24]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from sandbox import Sandbox, git, sandbox

TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> float:
    """CPU seconds of the process (its threads' run time from schedstat, in nanoseconds) and
    of its waited-for children (cutime + cstime, in clock ticks). utime + stime alone count
    in 10 ms ticks: an idle daemon's minute rounded to one tick on both sides, ratio 1.0."""
    own = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            own += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended between the listing and the read
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    children = (int(fields[13]) + int(fields[14])) / TICK
    return own / 1e9 + children


def measure(sb: Sandbox, window: float) -> float:
    with sb.daemon() as daemon:
        time.sleep(3)  # start-up (imports, recovery, the first tick) is not idle time
        before = cpu(daemon.pid)
        t0 = time.monotonic()
        while time.monotonic() - t0 < window:
            sb.ao("status", check=False)  # reading the config must not wake a reload
            time.sleep(window / 5)
        return (cpu(daemon.pid) - before) / (time.monotonic() - t0) * 60


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=float, default=25.0)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--sessions", type=int, default=24)
    args = ap.parse_args()
    with sandbox("ao-bench-idle-") as sb:
        sb.config(args.interval, agent="demo", max_concurrent=args.sessions)
        base = measure(sb, args.window)
        tasks = {f"T-{i}": {"title": f"task {i}", "body": "wait for instructions"}
                 for i in range(1, args.sessions + 1)}
        (sb.work / "plan.yaml").write_text(json.dumps({"project": "bench", "tasks": tasks}))
        git(sb.work, "add", "-A")
        git(sb.work, "commit", "-q", "-m", "plan")
        sb.ao("batch-spawn", "bench", "--plan", str(sb.work / "plan.yaml"))
        live = json.loads(sb.ao("session", "ls", "--json").stdout)
        if len(live) != args.sessions:
            raise SystemExit(f"{len(live)} sessions started, not {args.sessions}")
        value = measure(sb, args.window)
    print(f"{'daemon, no sessions':<34}{base:>8.3f} CPU s/min")
    print(f"{'daemon, ' + str(args.sessions) + ' idle sessions':<34}{value:>8.3f} CPU s/min")
    print(f"(poll every {args.interval:g}s, {args.window:g}s window, `ao status` run 5 times)")
    print(json.dumps({"benchmark": "idle", "metric": f"daemon CPU with {args.sessions} idle "
                      "sessions", "unit": "CPU s/min", "value": round(value, 3),
                      "baseline": round(base, 3),
                      "ratio": round(value / base, 3) if base else None,
                      "target": 0.6, "target_on": "value"}))


if __name__ == "__main__":
    main()
