"""Conflict-aware scheduling: a 16-task plan of independent tasks where 8 pairs edit the same
file, run with `overlap: ignore` and with `overlap: wait` (the default) in the same run.

A real daemon (`ao daemon run`), demo agents with durations standing for work (seconds for
hours: 3 s of work before the push, a rebase costs 2 s), max_concurrent 6, the local forge
with CI that passes, auto-merge. Each task declares its file (`files:`), and its demo script
appends its own line to it: two agents of a pair working at once collide, the second to merge
conflicts, and its agent is asked to rebase (a real `git rebase`, the conflict resolved by
keeping both lines), then pushes again.

Printed for each policy: merge conflicts seen, rebase rounds asked, agent-seconds spent on
rebases, and the makespan (to all 16 merged). Target: conflicts and rebase rounds down by at
least half with `wait`, the makespan no more than 1.1x `ignore`'s.

Run: python benchmarks/overlap.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from sandbox import git, sandbox

REPO = Path(__file__).resolve().parent.parent
WORK, REBASE = 3, 2  # seconds a task works before pushing; seconds a rebase costs its agent


def plan() -> dict[str, object]:
    tasks: dict[str, object] = {}
    for i in range(16):
        pair = i // 2  # tasks 2k and 2k+1 share shared/p<k>.txt
        key = f"T-{i:02d}"
        tasks[key] = {
            "title": f"task {i}", "estimate": "1d", "files": [f"shared/p{pair}.txt"],
            "body": (f"```demo\nsleep {WORK}\nappend shared/p{pair}.txt\n{key} was here\nEOF\n"
                     f"commit {key}\npush\n```\n\n```demo-on rebase\nsleep {REBASE}\nrebase\n"
                     "push\n```\n")}
    return {"project": "bench", "tasks": tasks}


def run(policy: str) -> dict[str, float]:
    sys.path.insert(0, str(REPO / "src"))
    with sandbox(f"ao-bench-overlap-{policy}-") as sb:
        (sb.work / "plan.yaml").write_text(json.dumps(plan()))
        git(sb.work, "add", "-A")
        git(sb.work, "commit", "-q", "-m", "plan")
        git(sb.work, "push", "-q", "origin", "main")
        sb.config(1.0, agent="demo", max_concurrent=6, auto_merge=True, require_review=False,
                  ci={"command": "true"}, overlap=policy)
        sb.ao("plan", "run", str(sb.work / "plan.yaml"))
        with sb.daemon():
            started = time.monotonic()
            while time.monotonic() < started + 600:
                rows = json.loads(sb.ao("plan", "status", str(sb.work / "plan.yaml"),
                                        "--json").stdout)
                if all(r["state"] == "done" for r in rows):
                    break
                time.sleep(0.3)
            else:
                raise SystemExit(f"{policy}: the plan did not merge in time")
            makespan = time.monotonic() - started
        lines = sb.ao("events", "--json", "-n", "5000").stdout.splitlines()
    kinds = [json.loads(line)["type"] for line in lines if line.strip()]
    rebases = kinds.count("pr.conflict")  # each is one rebase round asked of an agent
    return {"conflicts": rebases, "rebase_rounds": rebases,
            "rebase_agent_seconds": rebases * REBASE, "makespan": round(makespan, 1),
            "held": kinds.count("task.held")}


def main() -> None:
    ignore, wait = run("ignore"), run("wait")
    print(f"{'':<26}{'ignore':>10}{'wait':>10}")
    for k in ("conflicts", "rebase_rounds", "rebase_agent_seconds", "makespan", "held"):
        print(f"{k:<26}{ignore[k]:>10}{wait[k]:>10}")
    fewer = (wait["rebase_rounds"] / ignore["rebase_rounds"]) if ignore["rebase_rounds"] \
        else 0.0
    ratio = wait["makespan"] / ignore["makespan"]
    print(f"rebase rounds with wait: {fewer:.2f}x ignore's (target <= 0.5); makespan "
          f"{ratio:.2f}x (target <= 1.1)")
    print(json.dumps({"benchmark": "overlap", "metric": "rebase rounds, wait / ignore",
                      "unit": "ratio", "value": round(fewer, 2), "target": 0.5,
                      "target_on": "value", "makespan_ratio": round(ratio, 2),
                      "ignore": ignore, "wait": wait}))


if __name__ == "__main__":
    main()
