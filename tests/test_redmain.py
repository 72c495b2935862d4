"""Main stays green: the bisection that names the merge that turned main red (redmain.py)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from ao.decide.redmain import FAILING, PASSING, Step, bisect


def _watch_until(store: Any, project: Any, forge: Any, done: Callable[[dict[str, Any]], object],
                 what: str) -> str | None:
    """Look at main as each tick does until `done(main's watch)`; the last reason it gave."""
    from ao.loop import mainwatch

    for _ in range(300):
        forge.poll(["ao/a-1"])  # as a tick reads the remote first
        reason = mainwatch.watch(store, project, forge)
        if done(store.main_watch(project.name)):
            return reason
        time.sleep(0.2)
    raise AssertionError(f"{what}: {store.main_watch(project.name)}")


def _merge_pr(clone: Any, forge: Any, name: str, files: dict[str, str]) -> int:
    """Push `ao/<name>-1` with `files` from main, open its PR and merge it; its number."""
    from .helpers import push_branch

    sha = push_branch(clone, f"ao/{name}-1", files, base="origin/main")
    forge.poll([f"ao/{name}-1"])
    pr = forge.create_pr(f"ao/{name}-1", name, "")
    forge.merge(pr, sha)
    return int(pr.number)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_the_first_red_merge_is_found_in_log2_runs(n: int) -> None:
    merges = [f"m{i}" for i in range(n)]
    for culprit in range(n):
        truth = {m: PASSING if i < culprit else FAILING for i, m in enumerate(merges)}
        verdicts = {merges[-1]: FAILING}  # the red head is what was seen
        runs = 0
        while True:
            step = bisect(merges, verdicts)
            if step.culprit is not None:
                break
            assert step.run is not None and step.run not in verdicts
            verdicts[step.run] = truth[step.run]
            runs += 1
        assert step.culprit == merges[culprit], (n, culprit)
        assert runs <= math.ceil(math.log2(n)) if n > 1 else runs == 0


def test_a_verdict_not_in_yet_waits_and_nothing_runs_twice() -> None:
    merges = ["a", "b", "c", "d"]
    first = bisect(merges, {"d": FAILING})
    assert first.run == "b"
    assert bisect(merges, {"d": FAILING, "b": "pending"}) == Step(waiting=True)
    assert bisect(merges, {"d": FAILING, "b": PASSING}).run == "c"
    assert bisect(merges, {"d": FAILING, "b": PASSING, "c": FAILING}).culprit == "c"
    assert bisect([], {}) == Step()


def test_a_semantic_conflict_turns_main_red_and_its_merge_is_named(env: object,
                                                                   tmp_path: object) -> None:
    """Two PRs, each green alone, red together (each adds a file; CI fails when both are
    there), then a third merged on top: main's CI turns red, and the bisection over main's
    merges since its last green head names the second PR, with CI run on no more than
    ceil(log2(merges)) earlier commits. Merges wait meanwhile; a fix on main turns it green."""
    from pathlib import Path

    from ao import config
    from ao.loop import mainwatch
    from ao.record.store import Store
    from ao.world.forge.local import LocalForge

    from .fleet_helpers import Env
    from .helpers import git, retry_until

    assert isinstance(env, Env) and isinstance(tmp_path, Path)
    env.write_config(ci={"command": "test ! -f a.txt -o ! -f b.txt", "timeout": "60s"})
    project = config.load().project("shop")
    store = Store()
    forge = LocalForge(project, store)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(env.remote), str(clone))

    def settle() -> dict[str, object]:
        """Watch as each tick does, until CI has nothing running for main."""
        def quiet() -> bool:
            forge.poll(["ao/a-1"])  # as a tick reads the remote first
            mainwatch.watch(store, project, forge)
            rows = [store.local_ci("shop", s) for s in store.main_watch("shop").values()
                    if isinstance(s, str) and len(s) == 40]
            return all(r is None or r["status"] != "pending" for r in rows) and \
                store.main_watch("shop").get("head") == forge.main_head() and \
                forge.main_ci(forge.main_head() or "", start=False) != "pending"
        retry_until(quiet, timeout=60, interval=0.3, message="main's CI")
        return store.main_watch("shop")

    assert settle().get("green")  # main starts green
    numbers = {}
    for name in ("a", "b", "c"):
        numbers[name] = _merge_pr(clone, forge, name, {f"{name}.txt": name})
        if name == "a":
            assert settle().get("green") == forge.main_head()  # a alone: green
    reason = _watch_until(store, project, forge, lambda w: w.get("culprit"), "the culprit")
    w = store.main_watch("shop")
    assert w.get("culprit_pr") == numbers["b"], w
    assert reason is not None and f"PR #{numbers['b']}" in reason
    kinds = [e["type"] for e in store.events_after(0, project="shop")]
    assert kinds.count("main.red") == 1 and kinds.count("main.culprit") == 1
    runs = [e for e in store.events_after(0, project="shop") if e["type"] == "main.culprit"]
    import json

    assert json.loads(runs[0]["data"])["ci_runs"] <= 1  # two merges since green: log2(2)
    # a fix on main: green again, and merging goes on
    git(clone, "checkout", "-q", "main")
    git(clone, "pull", "-q", "origin", "main")
    git(clone, "rm", "-q", "b.txt")
    git(clone, "commit", "-q", "-m", "fix main")
    git(clone, "push", "-q", "origin", "main")
    w = settle()
    assert w.get("green") == forge.main_head() and not w.get("red")
    assert "main.green" in [e["type"] for e in store.events_after(0, project="shop")]


def test_nothing_starts_from_a_red_main_and_status_says_why(env: object) -> None:
    """Main's CI fails: the daemon starts no new task from it (each would begin on a broken
    base), `ao status` names it, and once main is green the plan goes on."""
    import json
    import sys

    from ao import config
    from ao.loop.daemon import Daemon
    from ao.record.state import State
    from ao.record.store import Store

    from .fleet_helpers import Env
    from .helpers import git, retry_until, run_ao
    from .test_daemon import PLAN

    assert isinstance(env, Env)
    env.plan_file.write_text(json.dumps({"tasks": {"A-1": PLAN["tasks"]["A-1"]}}))
    env.write_config(ci={"command": f"test ! -f RED.txt && {sys.executable} -c pass"},
                     auto_merge=True, require_review=False)
    store = Store()
    d = Daemon(config.load(), store, env.server())

    def green_seen() -> bool:
        d.tick()
        return bool(store.main_watch("shop").get("green"))

    retry_until(green_seen, timeout=60, interval=0.3, message="main green")
    (env.repo / "RED.txt").write_text("main is broken\n")
    git(env.repo, "add", "RED.txt")
    git(env.repo, "commit", "-q", "-m", "break main")
    git(env.repo, "push", "-q", "origin", "main")

    def red_seen() -> bool:
        d.tick()
        return bool(store.main_watch("shop").get("red"))

    retry_until(red_seen, timeout=60, interval=0.3, message="main red")
    assert run_ao("plan", "run", str(env.plan_file), "-p", "shop").code == 0
    for _ in range(3):
        d.tick()
    assert [s.state for s in store.sessions("shop")] == [State.QUEUED]  # nothing started
    out = run_ao("status").out
    assert "main is red since" in out, out
    git(env.repo, "rm", "-q", "RED.txt")
    git(env.repo, "commit", "-q", "-m", "fix main")
    git(env.repo, "push", "-q", "origin", "main")

    def started() -> bool:
        d.tick()
        return any(s.state is not State.QUEUED for s in store.sessions("shop"))

    retry_until(started, timeout=60, interval=0.3, message="the plan going on")


def test_on_red_main_revert_opens_and_merges_the_revert_of_the_culprit(env: object,
                                                                     tmp_path: object) -> None:
    """`on_red_main: revert`: two PRs green alone turn main red together; ao names the second,
    opens a PR that reverts its merge (CI runs on it, as on any PR), merges it once green
    while every other merge waits, and main is green again without the culprit's file."""
    import json
    from pathlib import Path

    from ao import config
    from ao.record.store import Store
    from ao.world.forge.local import LocalForge

    from .fleet_helpers import Env
    from .helpers import git

    assert isinstance(env, Env) and isinstance(tmp_path, Path)
    env.write_config(ci={"command": "test ! -f a.txt -o ! -f b.txt", "timeout": "60s"},
                     on_red_main="revert", auto_merge=True)
    project = config.load().project("shop")
    assert project.on_red_main == "revert"
    store = Store()
    forge = LocalForge(project, store)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(env.remote), str(clone))

    def watch_until(done: Callable[[dict[str, Any]], object], what: str) -> None:
        _watch_until(store, project, forge, done, what)

    watch_until(lambda w: w.get("green"), "main green at first")
    numbers = {}
    for name in ("a", "b"):
        numbers[name] = _merge_pr(clone, forge, name, {f"{name}.txt": name})
        if name == "a":
            watch_until(lambda w: w.get("green") == forge.main_head(), "a alone green")
    watch_until(lambda w: w.get("reverted"), "the revert merged")
    watch_until(lambda w: not w.get("red") and w.get("green") == forge.main_head(),
                "main green again")
    git(clone, "fetch", "-q", "origin")
    files = git(clone, "ls-tree", "--name-only", "origin/main").split()
    assert "a.txt" in files and "b.txt" not in files
    events = store.events_after(0, project="shop")
    kinds = [e["type"] for e in events]
    for kind in ("main.red", "main.culprit", "main.revert_opened", "main.reverted",
                 "main.green"):
        assert kinds.count(kind) == 1, (kind, kinds)
    opened = json.loads(next(e for e in events if e["type"] == "main.revert_opened")["data"])
    revert = store.local_pr("shop", opened["branch"])
    assert revert is not None and revert["state"] == "merged"
    assert str(revert["title"]) == f"Revert PR #{numbers['b']}"
    # the culprit's own PR stays merged: the revert is a new commit on main, not a rewrite
    assert store.local_pr("shop", "ao/b-1")["state"] == "merged"  # type: ignore[index]


def test_a_revert_that_conflicts_tells_a_person_and_waits(env: object, tmp_path: object) -> None:
    """The culprit cannot be reverted cleanly (a later merge changed the same lines): no PR,
    one `main.revert_failed` event, and main stays held for a person."""
    import time
    from pathlib import Path

    from ao import config
    from ao.loop import mainwatch
    from ao.record.store import Store
    from ao.world.forge.local import LocalForge

    from .fleet_helpers import Env
    from .helpers import git

    assert isinstance(env, Env) and isinstance(tmp_path, Path)
    env.write_config(ci={"command": "test ! -f a.txt -o ! -f b.txt", "timeout": "60s"},
                     on_red_main="revert", auto_merge=True)
    project = config.load().project("shop")
    store = Store()
    forge = LocalForge(project, store)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(env.remote), str(clone))
    for name, files in (("a", {"a.txt": "a"}), ("b", {"b.txt": "b"}),
                        ("c", {"b.txt": "b changed after"})):
        _merge_pr(clone, forge, name, files)
        for _ in range(300):  # a's head seen green; b and c merge before main is looked at
            mainwatch.watch(store, project, forge)
            if name != "a" or store.main_watch("shop").get("green") == forge.main_head():
                break
            time.sleep(0.2)
    reason = _watch_until(store, project, forge, lambda w: w.get("revert_failed"),
                          "the revert refused")
    w = store.main_watch("shop")
    assert w.get("red") and "conflicts" in str(w.get("revert_failed")), w
    assert reason is not None and "main is red" in reason
    kinds = [e["type"] for e in store.events_after(0, project="shop")]
    assert kinds.count("main.revert_failed") == 1 and "main.revert_opened" not in kinds
    assert not [r for r in store.local_prs("shop") if str(r["branch"]).startswith("ao/revert")]


def test_a_merge_train_step_is_a_bisection() -> None:
    from ao.world.forge.local_train import Step, step

    assert step(4, "passing") == Step("merge", 4)
    assert step(4, "failing") == Step("test", 2)
    assert step(3, "error") == Step("test", 1)
    assert step(1, "failing") == Step("remove", 1)
    assert step(2, "pending") == Step("wait")


def test_merge_queue_keeps_main_green_and_sends_the_breaking_pr_back(
        env: object, tmp_path: object) -> None:
    """`merge: queue` on the local forge: three PRs pass the gate; c is fine, a and b break
    main together (each green alone). The daemon queues them instead of merging; the train
    runs CI on the PRs merged one onto the other and bisects a red train, so whichever of a
    and b queued second is removed from the queue, its agent told with the train's failing CI
    as a fix round, and the others merge. Main is never red: every commit on it passed CI
    first."""
    import time
    from pathlib import Path

    from ao import config
    from ao.decide.reactions import History
    from ao.loop.daemon import Daemon
    from ao.record.state import State
    from ao.record.store import Store
    from ao.world import tmux

    from .fleet_helpers import Env
    from .helpers import git, push_branch

    assert isinstance(env, Env) and isinstance(tmp_path, Path)
    env.write_config(ci={"command": "test ! -f a.txt -o ! -f b.txt", "timeout": "60s"},
                     merge="queue", auto_merge=True, require_review=False,
                     agent={"command": "cat"})
    store = Store()
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(env.remote), str(clone))
    start = git(clone, "rev-parse", "origin/main").strip()
    sessions = {}
    for name in ("a", "b", "c"):
        s = store.create_session("shop", "sho", f"{name.upper()}-1", state=State.WORKING)
        store.update_session(s.id, branch=f"ao/{name}-1")
        tmux.new_session(env.server(), s.id, env.repo, "cat")
        sessions[name] = s.id
        push_branch(clone, f"ao/{name}-1", {f"{name}.txt": name})
    d = Daemon(config.load(), store, env.server())
    deadline = time.monotonic() + 80
    while time.monotonic() < deadline:
        d.tick()
        states = {n: store.session(sid).state for n, sid in sessions.items()}
        # a and b break main together: whichever queued second is sent back
        merged = {n for n, st in states.items() if st is State.MERGED}
        told = {n: [m["body"] for m in store.messages(sessions[n])] for n in ("a", "b")}
        if len(merged) == 2 and any(told.values()):
            break
        time.sleep(0.3)
    assert "c" in merged and len(merged & {"a", "b"}) == 1, states
    back = ({"a", "b"} - merged).pop()
    assert states[back] is State.PR_OPEN
    assert any("merge queue removed this PR" in b for b in told[back]), told
    assert len(History.of(store.attempts(sessions[back])).ci_rounds) == 1
    kinds = [e["type"] for e in store.session_events(sessions[back])]
    assert kinds.count("pr.enqueued") == 1 and kinds.count("pr.dequeued") == 1
    # main moved only to commits CI had passed: never red. A train that lands two PRs at once
    # moves main by two commits, and CI ran on the last (the head main was ever at)
    git(clone, "fetch", "-q", "origin")
    line = git(clone, "rev-list", "--first-parent", f"{start}..origin/main").split()
    assert len(line) == 2  # the two merges
    head = store.local_ci("shop", line[0])
    assert head is not None and head["status"] == "passing"
    assert "main.red" not in [e["type"] for e in store.events_after(0, project="shop")]
    files = git(clone, "ls-tree", "--name-only", "origin/main").split()
    assert f"{back}.txt" not in files and {f"{n}.txt" for n in merged} <= set(files)
    assert not store.main_watch("shop").get("red")


def test_on_red_main_fix_starts_a_fix_task_that_alone_starts_and_merges(
        env: object, tmp_path: object) -> None:
    """`on_red_main: fix`: a and b turn main red together; ao names b, records FIX-MAIN-<b>
    whose prompt holds main's failing CI and the PR merged before b, and starts it at once
    (past max_concurrent: the running session cannot merge meanwhile) while the plan's other
    task waits; the fix's PR is the one that merges onto the red main, and main is green."""
    import json
    import time
    from pathlib import Path

    from ao import config
    from ao.loop.daemon import Daemon
    from ao.record.state import State
    from ao.record.store import Store
    from ao.world.forge.local import LocalForge

    from .fleet_helpers import Env
    from .helpers import git, push_branch, run_ao
    from .test_daemon import PLAN

    assert isinstance(env, Env) and isinstance(tmp_path, Path)
    env.plan_file.write_text(json.dumps({"tasks": {"A-1": PLAN["tasks"]["A-1"]}}))
    env.write_config(ci={"command": "test ! -f a.txt -o ! -f b.txt", "timeout": "60s"},
                     on_red_main="fix", auto_merge=True, require_review=False,
                     agent={"command": "cat"}, max_concurrent=1)
    project = config.load().project("shop")
    store = Store()
    forge = LocalForge(project, store)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(env.remote), str(clone))
    d = Daemon(config.load(), store, env.server())

    def ticks_until(done: Callable[[], object], what: str) -> None:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            d.tick()
            if done():
                return
            time.sleep(0.3)
        raise AssertionError(f"{what}: {store.main_watch('shop')}")

    ticks_until(lambda: store.main_watch("shop").get("green"), "main green first")
    # the one slot taken by a session whose PR cannot merge while main is red: the fix task
    # starts anyway (it would wait for that slot forever)
    fleet = env.fleet()
    busy = fleet.spawn("shop", fleet.one_off("shop", "something long", None))
    assert busy.status == "spawned", busy
    first = _merge_pr(clone, forge, "a", {"a.txt": "a"})
    ticks_until(lambda: store.main_watch("shop").get("green") == forge.main_head(), "a green")
    culprit = _merge_pr(clone, forge, "b", {"b.txt": "b"})
    ticks_until(lambda: store.main_watch("shop").get("red"), "main red")
    assert run_ao("plan", "run", str(env.plan_file), "-p", "shop").code == 0
    key = f"FIX-MAIN-{culprit}"
    ticks_until(lambda: store.sessions("shop", task=key), "the fix task started")
    task = store.task("shop", key)
    assert task is not None and f"PR #{first}" in task["body"] and f"PR #{culprit}" in task["body"]
    assert "test ! -f a.txt" in task["body"]  # main's failing check, as the agent reads it
    assert [s.state for s in store.sessions("shop", task="A-1")] == [State.QUEUED]
    fix = store.sessions("shop", task=key)[0]
    assert "fixes it" in (run_ao("status").out), run_ao("status").out
    # the agent's fix: b's file goes, on its branch; its PR merges onto the red main
    push_branch(clone, str(fix.branch), {"FIX.md": "b and a clash\n"}, message="why")
    git(clone, "rm", "-q", "b.txt")
    git(clone, "commit", "-q", "-m", "drop b.txt")
    git(clone, "push", "-q", "origin", str(fix.branch))
    ticks_until(lambda: store.session(fix.id).state is State.MERGED, "the fix merged")
    ticks_until(lambda: not store.main_watch("shop").get("red"), "main green again")
    fleet.kill(str(busy.session))  # its slot back: the plan goes on
    ticks_until(lambda: any(s.state is not State.QUEUED
                            for s in store.sessions("shop", task="A-1")), "the plan going on")
    kinds = [e["type"] for e in store.events_after(0, project="shop")]
    assert kinds.count("main.fix_task") == 1 and "main.green" in kinds
