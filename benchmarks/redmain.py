"""Main kept green: two of ten PRs conflict semantically (each green alone, main red once both
merged). How many CI runs on main's earlier commits the bisection needs to name the merge
that turned main red (target <= 2 + ceil(log2(merges since green))), how many ticks from red
seen to culprit named, and how many PRs merge onto main while it is known red (target 0).

The local forge on a real bare remote with a CI command that fails when both files are on
main, the daemon's own tick in this process (every 0.5 s), plain command agents in tmux. Five
PRs (the two conflicting among them) are ready first; five more become ready while main is
red: none of them may merge until main is green again.

Then the same ten PRs with `merge: queue` (the local forge's merge train, keeping main green
before the fact): times main turned red (target 0), PRs merged (target 9: the second of the
two conflicting ones is sent back), CI runs on train commits (against ceil(log2(10)) + 2 per
removed PR plus one per merged train), and ticks until done.

Run: python benchmarks/redmain.py
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from merges import branches
from sandbox import sandbox

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
CI = "test ! -f ao-t-1.txt -o ! -f ao-t-3.txt"  # the two that conflict: each fine alone


def main() -> None:
    from ao import config
    from ao.loop.daemon import Daemon
    from ao.record.state import State
    from ao.record.store import Store
    from ao.world import tmux
    from ao.world.forge.local import LocalForge

    with sandbox("ao-bench-redmain-") as sb:
        sb.config(30, agent={"command": "sleep 100000"}, max_concurrent=20, auto_merge=True,
                  require_review=False, ci={"command": CI, "timeout": "60s"})
        cfg = config.load()
        store = Store()
        srv = tmux.server(cfg.tmux_socket)
        d = Daemon(cfg, store, srv)

        def tick_until(done: object, limit: float = 120) -> int:
            ticks = 0
            end = time.monotonic() + limit
            while time.monotonic() < end:
                d.tick()
                ticks += 1
                if done():  # type: ignore[operator]
                    return ticks
                time.sleep(0.5)
            raise SystemExit(f"gave up after {ticks} ticks")

        tick_until(lambda: store.main_watch("bench").get("green"))  # main green first

        def open_prs(names: list[str]) -> None:
            forge = LocalForge(cfg.project("bench"), store)  # its heads read afresh
            for b in names:
                forge.create_pr(b, b, "")
                s = store.create_session("bench", "ben", b.removeprefix("ao/").upper(),
                                         agent="command", state=State.SPAWNING)
                store.update_session(s.id, branch=b)
                store.set_state(s.id, State.WORKING)
                tmux.new_session(srv, s.id, sb.work, "sleep 100000")

        all_names = branches(sb, "ao/t-", 10)
        open_prs(all_names[:5])

        def seen(kind: str) -> list[dict[str, object]]:
            return [e for e in store.events_after(0, project="bench") if e["type"] == kind]

        tick_until(lambda: seen("main.red"))
        red_at = int(str(seen("main.red")[0]["id"]))
        open_prs(all_names[5:])  # ready while main is red
        ticks = tick_until(lambda: seen("main.culprit"))
        culprit = seen("main.culprit")[0]
        for _ in range(10):  # and a while longer: nothing merges onto red
            d.tick()
            time.sleep(0.5)
        onto_red = [e for e in seen("merged") if int(str(e["id"])) > red_at]
        data = json.loads(str(culprit["data"])) if isinstance(culprit["data"], str) \
            else culprit["data"]
        assert isinstance(data, dict)
        merges, runs = int(data["merges_since_green"]), int(data["ci_runs"])
        bound = 2 + math.ceil(math.log2(max(1, merges)))
        d.deliveries.close()
    queued = train()
    print(f"culprit {data.get('branch')} named after {runs} CI runs on earlier commits "
          f"({merges} merges since green; target <= {bound}), {ticks} ticks after red was "
          f"seen; PRs merged onto red main: {len(onto_red)} (target 0)")
    print(json.dumps({"benchmark": "redmain", "metric": "CI runs to name the culprit",
                      "unit": "runs", "value": runs, "baseline": bound,
                      "ratio": round(runs / bound, 2), "target": 1, "target_on": "ratio",
                      "merged_onto_red": len(onto_red), "ticks": ticks,
                      "culprit": data.get("branch")}))
    print(f"merge: queue: main turned red {queued['red']} times (target 0), "
          f"{queued['merged']} of 10 PRs merged (target 9), {queued['runs']} CI runs on train "
          f"commits, {queued['ticks']} ticks")
    print(json.dumps({"benchmark": "redmain-queue", "metric": "main turned red",
                      "unit": "times", "value": queued["red"], "target": 0, **queued}))


def train() -> dict[str, int]:
    """The ten PRs through the merge train: main is never red, the breaking PR goes back."""
    from ao import config
    from ao.loop.daemon import Daemon
    from ao.record.state import State
    from ao.record.store import Store
    from ao.world import tmux
    from ao.world.forge.local import LocalForge

    with sandbox("ao-bench-train-") as sb:
        sb.config(30, agent={"command": "sleep 100000"}, max_concurrent=20, auto_merge=True,
                  require_review=False, ci={"command": CI, "timeout": "60s"}, merge="queue")
        cfg = config.load()
        store = Store()
        srv = tmux.server(cfg.tmux_socket)
        d = Daemon(cfg, store, srv)
        names = branches(sb, "ao/t-", 10)
        forge = LocalForge(cfg.project("bench"), store)
        heads = set()
        for b in names:  # the session first: a PR older than its session is an earlier one's
            s = store.create_session("bench", "ben", b.removeprefix("ao/").upper(),
                                     agent="command", state=State.SPAWNING)
            store.update_session(s.id, branch=b)
            store.set_state(s.id, State.WORKING)
            tmux.new_session(srv, s.id, sb.work, "sleep 100000")
        time.sleep(1.0)
        heads |= {forge.create_pr(b, b, "").head_sha for b in names}
        ticks, end = 0, time.monotonic() + 180
        while time.monotonic() < end:
            d.tick()
            ticks += 1
            kinds = [e["type"] for e in store.events_after(0, project="bench")]
            if kinds.count("merged") + kinds.count("pr.dequeued") >= 10:
                break
            time.sleep(0.5)
        kinds = [e["type"] for e in store.events_after(0, project="bench")]
        main = store.main_watch("bench")
        trains = [r for r in store.conn.execute(
            "SELECT sha FROM local_ci WHERE project = 'bench'") if r[0] not in heads]
        d.deliveries.close()
    return {"red": kinds.count("main.red"), "merged": kinds.count("merged"),
            "runs": len(trains), "ticks": ticks, "green": int(bool(main.get("green")))}


if __name__ == "__main__":
    main()
