"""The user's 24-task plan (plans/workflow.yaml) run end to end: wall time to all merged, beside
the floor of one poll per dependency level.

A real daemon (`ao daemon run`), demo agents that push at once, the local forge with a CI
command that passes, auto-merge. The floor is (levels of the dependency graph) x (poll
interval): a daemon that needs more than one poll per level (spawn, see the PR, see CI, merge,
start the dependents) shows up as a ratio above 1.

Run: python benchmarks/plan.py [--interval 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sandbox import git, sandbox

REPO = Path(__file__).resolve().parent.parent


def run(interval: float) -> tuple[float, int]:
    sys.path.insert(0, str(REPO / "src"))
    from ao.decide import plan as planmod

    plan = planmod.load_valid(REPO / "plans" / "workflow.yaml")
    levels = len(planmod.layers(plan))
    with sandbox("ao-bench-plan-") as sb:
        tasks = {k: {"title": t.title, "deps": list(t.deps),
                     "body": f"```demo\nwrite {k.lower()}.txt\n{t.title}\nEOF\n"
                             f"commit {k}: {t.title}\npush\n```"}
                 for k, t in plan.tasks.items()}
        (sb.work / "plan.yaml").write_text(json.dumps({"project": "bench", "tasks": tasks}))
        git(sb.work, "add", "-A")
        git(sb.work, "commit", "-q", "-m", "plan")
        git(sb.work, "push", "-q", "origin", "main")
        sb.config(interval, agent="demo", max_concurrent=24, auto_merge=True,
                  require_review=False, ci={"command": "true"})
        sb.ao("plan", "run", str(sb.work / "plan.yaml"))
        with sb.daemon():
            started = time.monotonic()
            deadline = started + levels * interval * 6 + 120
            while time.monotonic() < deadline:
                rows = json.loads(sb.ao("plan", "status", str(sb.work / "plan.yaml"),
                                        "--json").stdout)
                if all(r["state"] == "done" for r in rows):
                    return time.monotonic() - started, levels
                time.sleep(0.2)
            raise SystemExit("the plan did not merge in time")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval", type=float, default=2.0)
    args = ap.parse_args()
    wall, levels = run(args.interval)
    floor = levels * args.interval
    print(f"{'poll interval':<28}{args.interval:>8.1f} s")
    print(f"{'dependency levels':<28}{levels:>8}")
    print(f"{'floor (one poll a level)':<28}{floor:>8.1f} s")
    print(f"{'24 tasks, all merged':<28}{wall:>8.1f} s")
    print(json.dumps({"benchmark": "plan", "metric": "24-task plan to all merged",
                      "unit": "s", "value": round(wall, 2), "baseline": floor,
                      "ratio": round(wall / floor, 3), "target": 1.5, "target_on": "ratio"}))


if __name__ == "__main__":
    main()
