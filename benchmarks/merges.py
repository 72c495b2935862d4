"""Ready PRs merged at the speed of the forge: 20 PRs approved and green at once, each of an
agent that takes 1.5 s to exit when stopped, from the tick that sees them to all merged,
against 20 merge calls of the same forge run back to back with no agent at all, measured in
the same run (target <= 1.5).

The local forge on a real bare remote, the daemon's own tick (in this process), the agents
real processes in tmux that trap the signal and take 1.5 s to end (Claude Code takes 1-2 s):
a merge that waited for its agent to stop before the next one cost about 2 s a PR.

Run: python benchmarks/merges.py [--prs 20] [--exit-after 1.5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sandbox import Sandbox, git, sandbox

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
TARGET = 1.5


def branches(sb: Sandbox, prefix: str, n: int) -> list[str]:
    """n branches off main, each adding a file of its own (none conflicts with another)."""
    names = []
    for i in range(n):
        name = f"{prefix}{i}"
        git(sb.work, "checkout", "-q", "-b", name, "main")
        (sb.work / f"{name.replace('/', '-')}.txt").write_text(f"{name}\n")
        git(sb.work, "add", "-A")
        git(sb.work, "commit", "-q", "-m", f"work of {name}")
        names.append(name)
    git(sb.work, "checkout", "-q", "main")
    git(sb.work, "push", "-q", "origin", *names)
    return names


def measure(n: int, exit_after: float) -> tuple[float, float]:
    from ao import config
    from ao.loop.daemon import Daemon
    from ao.record.state import State
    from ao.record.store import Store
    from ao.world import tmux
    from ao.world.forge.local import LocalForge

    slow = f"sh -c 'trap \"sleep {exit_after}; exit 0\" TERM HUP INT; while :; do sleep 1; done'"
    with sandbox("ao-bench-merges-") as sb:
        sb.config(30, agent={"command": slow}, max_concurrent=n + 1, auto_merge=True,
                  require_review=False, require_checks=False)
        cfg = config.load()
        project = cfg.project("bench")
        store = Store()
        forge = LocalForge(project, store)
        # the floor: the same forge's merge, n times back to back, no agent anywhere
        floor_prs = [forge.create_pr(b, b, "") for b in branches(sb, "floor/f-", n)]
        t0 = time.perf_counter()
        for pr in floor_prs:
            forge.merge(forge.find_pr(pr.head_branch) or pr, pr.head_sha)
        floor = time.perf_counter() - t0
        srv = tmux.server(cfg.tmux_socket)
        git(sb.work, "pull", "-q", "origin", "main")
        forge = LocalForge(project, store)  # its heads read afresh
        for b in branches(sb, "ao/t-", n):
            forge.create_pr(b, b, "")
            s = store.create_session("bench", "ben", b.removeprefix("ao/").upper(),
                                     agent="command", state=State.SPAWNING)
            store.update_session(s.id, branch=b)
            store.set_state(s.id, State.WORKING)
            tmux.new_session(srv, s.id, sb.work, slow)
        d = Daemon(cfg, store, srv)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 300:
            d.tick()
            if all(s.state in (State.MERGED, State.CLEANED) for s in store.sessions("bench")):
                break
        took = time.perf_counter() - t0
        merged = sum(1 for s in store.sessions("bench") if s.merged)
        if merged != n:
            raise SystemExit(f"{merged}/{n} merged in {took:.1f}s")
        return took, floor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prs", type=int, default=20)
    ap.add_argument("--exit-after", type=float, default=1.5)
    args = ap.parse_args()
    took, floor = measure(args.prs, args.exit_after)
    print(f"{args.prs} ready PRs, agents {args.exit_after:g} s to exit: all merged in "
          f"{took:.2f} s; {args.prs} merge calls back to back {floor:.2f} s; ratio "
          f"{took / floor:.2f} (target <= {TARGET:g})")
    print(json.dumps({"benchmark": "merges", "metric": f"{args.prs} ready PRs to merged",
                      "unit": "s", "value": round(took, 3), "baseline": round(floor, 3),
                      "ratio": round(took / floor, 2), "target": TARGET,
                      "target_on": "ratio"}))


if __name__ == "__main__":
    main()
