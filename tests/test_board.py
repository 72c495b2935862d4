"""The board, driven by Textual's Pilot against a real store (and real tmux for send/kill)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widgets import Static

from ao import config
from ao.record.state import State
from ao.record.store import Store
from ao.tui.app import SessionTable, make_app

from .fleet_helpers import Env
from .helpers import REPO, retry_until

pytestmark = pytest.mark.timeout(120)
T0 = 1_800_000_000.0
SNAPSHOTS = REPO / "tests" / "snapshots"


def seed(store: Store) -> dict[str, str]:
    """One session in every zone; returns task -> session id."""
    ids = {}

    def make(task: str, *states: State, **values: object) -> None:
        s = store.create_session("workflow", "wor", task, title=f"title of {task}",
                                 agent="demo", state=State.QUEUED if states[0] is State.QUEUED
                                 else State.SPAWNING)
        for st in states:
            if st not in (State.QUEUED, State.SPAWNING):
                store.set_state(s.id, st)
        if values:
            store.update_session(s.id, **values)
        ids[task] = s.id

    make("Q-1", State.QUEUED)
    make("W-1", State.SPAWNING, State.WORKING, activity="active")
    make("F-1", State.SPAWNING, State.WORKING, State.PR_OPEN, pr_number=3, pr_state="open",
         pr_checks="failing", pr_mergeable="mergeable")
    make("M-1", State.SPAWNING, State.WORKING, State.PR_OPEN, pr_number=4, pr_state="open",
         pr_checks="passing", pr_review="approved", pr_mergeable="mergeable", pr_head_sha="ab",
         pr_gate="approved and green", pr_gate_ok=1)
    make("R-1", State.SPAWNING, State.WORKING, State.NEEDS_HUMAN, activity="idle")
    make("D-1", State.SPAWNING, State.WORKING, State.MERGED)
    for i, sid in enumerate(ids.values()):  # fixed times, so ages render the same every run
        store.update_session(sid, created_at=T0 + 60 * i)
    return ids


def zones(app: object) -> list[tuple[str, str]]:
    table = app.query_one(SessionTable)  # type: ignore[attr-defined]
    return [(str(table.get_row_at(i)[0]), str(table.get_row_at(i)[2]))
            for i in range(table.row_count)]


def test_with_hosts_the_board_says_where_each_session_runs(isolated_home: Path) -> None:
    """Once hosts are configured, a host column: the machine each session runs on, `-` for a
    queued one (placed when it starts); `ao session ls` says the same."""
    import json

    from ao import paths

    from .helpers import run_ao

    paths.config_file().parent.mkdir(parents=True, exist_ok=True)
    paths.config_file().write_text(json.dumps({"hosts": {"build-1": {"ssh": "ao@build-1"}}}))
    store = Store()
    ids = seed(store)
    store.update_session(ids["W-1"], host="build-1")
    cfg = config.load()

    async def go() -> None:
        app = make_app(cfg, store, None, refresh_every=0.05)
        async with app.run_test(size=(140, 36)):
            table = app.query_one(SessionTable)
            at = [str(c.label) for c in table.columns.values()].index("host")
            hosts = {str(table.get_row_at(i)[2]): str(table.get_row_at(i)[at])
                     for i in range(table.row_count)}
            assert hosts["W-1"] == "build-1" and hosts["Q-1"] == "-"
            assert hosts["R-1"] == "local"

    asyncio.run(go())
    r = run_ao("session", "ls", "--json")
    rows = {row["task"]: row["host"] for row in json.loads(r.out)}
    assert rows["W-1"] == "build-1" and rows["Q-1"] is None, r.out


def test_grouping_filter_and_live_updates(tmp_path: Path) -> None:
    store = Store()
    seed(store)

    async def go() -> None:
        app = make_app(config.load(), store, None, refresh_every=0.05)
        async with app.run_test(size=(120, 36)) as pilot:
            assert zones(app) == [("respond", "R-1"), ("merge", "M-1"), ("fixing", "F-1"),
                                  ("working", "W-1"), ("queued", "Q-1"), ("done", "D-1")]
            # an update of one session moves just its row, within the refresh interval
            sid = store.sessions(task="W-1")[0].id
            store.update_session(sid, pr_number=9, pr_state="open", pr_checks="failing")
            from ao.record.events import Event, emit

            emit(Event("ci.failed", "workflow", sid, "W-1"), store)
            for _ in range(40):
                await pilot.pause(0.05)
                if ("fixing", "W-1") in zones(app):
                    break
            assert ("fixing", "W-1") in zones(app)
            # the filter
            await pilot.press("slash")
            await pilot.pause()
            await pilot.press(*"M-1")
            await pilot.press("enter")
            await pilot.pause()
            assert zones(app) == [("merge", "M-1")], (app.filter_text, app.focused)
            await pilot.press("tab")
            app.save_screenshot(str(tmp_path / "board.svg"))

    asyncio.run(go())
    svg = (tmp_path / "board.svg").read_text()
    assert "M-1" in svg


def test_plan_view_of_the_workflow_plan() -> None:
    async def go() -> str:
        app = make_app(config.load(), Store(), None, plan_file=REPO / "plans" / "workflow.yaml")
        async with app.run_test(size=(120, 60)) as pilot:
            await pilot.press("tab")
            await pilot.pause()
            from textual.widgets import Static

            return str(app.query_one("#plan", Static).render())

    text = asyncio.run(go())
    assert "0/24 done" in text and "wave 7" in text and "BOT-004" in text
    assert "* DB-001" in text  # the critical path is marked
    assert "waits on DB-001" in text


def test_send_dialog_and_kill_confirmation(env: Env) -> None:
    from .test_sessions import spawned

    sid = spawned(env)
    fleet = env.fleet()

    async def go() -> None:
        app = make_app(config.load(), fleet.store, fleet, refresh_every=0.1)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("s")
            await pilot.pause()
            await pilot.press(*"hello from the board")
            await pilot.press("enter")
            for _ in range(100):
                await pilot.pause(0.05)
                if "hello from the board" in env.inbox(sid):
                    break
            notes = [n.message for n in app._notifications] + [
                (m["status"], m["body"][:20]) for m in fleet.store.messages(sid)] + [
                str(w) for w in app.workers]
            assert "hello from the board" in env.inbox(sid), (notes, app.screen)
            # the detail pane's screen is captured by a worker, off the UI thread, and drawn
            # when it arrives
            app.render_detail()
            for _ in range(100):
                await pilot.pause(0.05)
                if "hello from the board" in str(app.query_one("#detail", Static).content):
                    break
            assert "hello from the board" in str(app.query_one("#detail", Static).content)
            await pilot.press("k")
            await pilot.pause()
            await pilot.press("n")  # no: nothing happens
            await pilot.pause()
            assert fleet.store.session(sid).state is State.WORKING
            await pilot.press("k")
            await pilot.pause()
            await pilot.press("y")
            await pilot.pause(0.3)

    asyncio.run(go())
    assert "hello from the board" in env.inbox(sid)
    retry_until(lambda: fleet.store.session(sid).state is State.KILLED, message="the kill")


def test_problems_are_notifications_not_tracebacks(tmp_path: Path) -> None:
    store = Store()
    seed(store)

    async def go() -> list[str]:
        app = make_app(config.load(), store, None)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("m")  # the selected (respond) session is not mergeable
            await pilot.pause()
            return [n.message for n in app._notifications]

    notes = asyncio.run(go())
    assert any("cannot merge: no pull request seen yet" in n for n in notes)


def screen_text(svg: str) -> str:
    """The characters of an exported screen, row by row: what the snapshot compares, so a
    Textual release that only restyles its SVG does not fail the test."""
    import html
    import re

    rows: dict[float, list[tuple[float, str]]] = {}
    for m in re.finditer(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>',
                         svg):
        rows.setdefault(float(m.group(2)), []).append(
            (float(m.group(1)), html.unescape(m.group(3))))
    return "\n".join("".join(t for _, t in sorted(r)).replace("\xa0", " ").rstrip()
                     for _, r in sorted(rows.items())) + "\n"


def snapshot(name: str, svg: str, tmp_path: Path) -> None:
    """Compare a screen with its stored snapshot (tests/snapshots/NAME.txt, with the SVG
    beside it to look at); AO_UPDATE_SNAPSHOTS=1 stores them anew."""
    import os

    f = SNAPSHOTS / f"{name}.txt"
    text = screen_text(svg)
    if os.environ.get("AO_UPDATE_SNAPSHOTS") == "1" or not f.exists():
        f.write_text(text)
        f.with_suffix(".svg").write_text(svg)
    if f.read_text() != text:
        (tmp_path / f"{name}.svg").write_text(svg)
        raise AssertionError(f"{name} differs from {f}; the new screen is "
                             f"{tmp_path / (name + '.svg')} (AO_UPDATE_SNAPSHOTS=1 to accept)")


@pytest.mark.parametrize(("view", "size"), [("sessions", (80, 24)), ("sessions", (160, 48)),
                                            ("plan", (100, 30))])
def test_snapshots_of_the_main_screens(view: str, size: tuple[int, int],
                                       tmp_path: Path) -> None:
    """The lanes with their counts over the table; at 80x24 the columns that matter most
    (what each waits for, PR and CI, review) and a footer that fits, at 160x48 all of them
    beside the detail pane."""
    store = Store()
    seed(store)

    async def go() -> str:
        app = make_app(config.load(), store, None, refresh_every=3600,
                       plan_file=REPO / "plans" / "workflow.yaml", clock=lambda: T0 + 3600)
        async with app.run_test(size=size) as pilot:
            if view == "plan":
                await pilot.press("tab")
            await pilot.pause()
            return app.export_screenshot()

    name = f"board-{view}" + ("" if view == "plan" else f"-{size[0]}x{size[1]}")
    snapshot(name, asyncio.run(go()), tmp_path)


def test_at_80_columns_the_table_is_whole_and_escape_clears_the_filter(
        tmp_path: Path) -> None:
    """At 80x24 the detail pane took a third of the width and the PR and review columns
    could not be seen; it is hidden there (`d` shows it). Escape in the filter clears it, as
    its placeholder says. With no daemon running, the header says so."""
    store = Store()
    seed(store)

    async def go() -> str:
        app = make_app(config.load(), store, None)
        async with app.run_test(size=(80, 24)) as pilot:
            assert not app.query_one("#detail").display
            await pilot.press("slash")
            await pilot.pause()
            await pilot.press(*"M-1")
            await pilot.press("enter")
            await pilot.pause()
            assert zones(app) == [("merge", "M-1")]
            await pilot.press("escape")  # from the table, the filter applied: cleared too
            await pilot.pause()
            assert app.filter_text == "" and len(zones(app)) == 6
            await pilot.press("slash")
            await pilot.pause()
            await pilot.press(*"M-1")
            await pilot.press("escape")
            await pilot.pause()
            assert app.filter_text == "" and len(zones(app)) == 6
            assert "daemon not running (`ao start`)" in app.sub_title, app.sub_title
            lanes_line = str(app.query_one("#lanes", Static).render())
            assert "daemon not running" in lanes_line, lanes_line  # shown: no header bar
            await pilot.press("d")
            await pilot.pause()
            assert app.query_one("#detail").display
            await pilot.press("d")
            await pilot.pause()
            app.save_screenshot(str(tmp_path / "narrow.svg"))
        return screen_text((tmp_path / "narrow.svg").read_text())

    text = asyncio.run(go())
    assert "#4 passing" in text and "approve" in text, text  # PR and review columns show


def test_a_changed_row_is_drawn_again_and_only_it(tmp_path: Path) -> None:
    """A change within a zone redraws its row on screen (the row's own render caches are
    dropped, not every row's: one changed cell drew every visible row again); the rows
    around it are drawn from their caches, as they were."""
    store = Store()
    ids = seed(store)

    async def go() -> None:
        app = make_app(config.load(), store, None, refresh_every=3600)
        async with app.run_test(size=(160, 36)) as pilot:
            await pilot.pause()
            table = app.query_one(SessionTable)
            lines = {y: table.render_line(y).text for y in range(1, table.row_count + 1)}
            row = next(i for i in range(table.row_count) if str(table.get_row_at(i)[2]) ==
                       "W-1")
            computed: list[int] = []
            compute = table._compute_row_renderables

            def counting(index: int) -> object:
                computed.append(index)
                return compute(index)

            table._compute_row_renderables = counting  # type: ignore[method-assign]
            store.update_session(ids["W-1"], activity="idle")
            app.poll()
            await pilot.pause()
            after = {y: table.render_line(y).text for y in range(1, table.row_count + 1)}
            changed = [y for y in lines if lines[y] != after[y]]
            assert changed == [row + 1], (changed, row)  # the header is line 0
            assert "idle" in after[row + 1] and "active" in lines[row + 1]
            assert set(computed) == {row}, computed  # the others: from their caches

    asyncio.run(go())


def test_the_approval_gate_is_passed_from_the_board(
        env: Env) -> None:
    """`A` on a session waiting at its approval gate asks, then passes the gate for the PR's
    head as `ao approve` does (the gate zone had no key for it)."""
    import json

    from ao.world.forge.local import LocalForge

    from .test_cleanup import ended
    from .test_sessions import spawned

    sid = spawned(env)
    ended(env, sid)  # its branch pushed
    fleet = env.fleet()
    s = fleet.store.session(sid)
    forge = LocalForge(config.load().project("shop"), fleet.store)
    pr = forge.create_pr(s.branch or "", "[A-1] a", "")
    fleet.store.put_task("shop", s.task, s.title, steps=json.dumps(["implement", "approve"]))
    fleet.store.update_session(sid, step="approve", pr_number=pr.number, pr_state="open",
                               pr_head_sha=pr.head_sha)

    async def go() -> None:
        app = make_app(config.load(), fleet.store, fleet, refresh_every=0.1)
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.press("A")
            await pilot.pause()
            await pilot.press("y")
            for _ in range(60):
                await pilot.pause(0.05)
                if fleet.store.attempts(sid, "gate"):
                    break

    asyncio.run(go())
    gates = fleet.store.attempts(sid, "gate")
    assert [g["fingerprint"] for g in gates] == [f"gate:approve:{pr.head_sha}"]


def test_a_forge_text_with_brackets_is_shown_as_text(tmp_path: Path) -> None:
    """A check name or rule from GitHub can hold `[/]` or `[link=...]`: shown in a
    notification, it is text (Textual's markup failed on it and the board crashed)."""
    store = Store()
    ids = seed(store)
    gate = 'the PR is blocked by branch protection: required check "build [/]" has not run'
    store.update_session(ids["F-1"], pr_gate=gate, pr_gate_ok=0)

    async def go() -> None:
        app = make_app(config.load(), store, None, refresh_every=3600)
        async with app.run_test(size=(120, 36)) as pilot:
            table = app.query_one(SessionTable)
            row = next(i for i in range(table.row_count)
                       if str(table.get_row_at(i)[2]) == "F-1")
            table.move_cursor(row=row)
            await pilot.press("m")
            await pilot.pause()
            notes = [str(n.message) for n in app._notifications]
            assert any('"build [/]" has not run' in n for n in notes), notes

    asyncio.run(go())


def test_c_shows_what_the_agent_changed_and_escape_closes_it(env: Env) -> None:
    """The board's diff: `c` on a session opens what its agent changed (the stat, then the
    diff against the default branch, an escape in it shown as text), Escape closes it."""

    from ao.tui.screens import DiffScreen

    env.write_config(agent={"command": "cat"})
    sid = env.spawn("A-1")
    fleet = env.fleet()
    env.commit_in_worktree(sid, {"done.txt": "committed \x1b]0;pwned\x07\n"})

    async def go() -> None:
        app = make_app(config.load(), fleet.store, fleet, refresh_every=0.1)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("c")
            for _ in range(100):
                await pilot.pause(0.05)
                if isinstance(app.screen, DiffScreen):
                    break
            assert isinstance(app.screen, DiffScreen), [n.message for n in app._notifications]
            shown = str(app.screen.query_one("#diff", Static).content)
            assert "done.txt" in shown and "+committed" in shown and "\x1b" not in shown
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, DiffScreen)

    asyncio.run(go())


def test_events_read_as_sentences_never_raw_json() -> None:
    from ao.tui.views import sentence

    assert sentence("ci.failed", {"sha": "a1b2c3d4e5", "round": 1,
                                  "checks": ["test", "lint"]}) == \
        "CI failed on a1b2c3d: 2 check(s); fix round 1 sent"
    assert sentence("pr.opened", {"pr": 4}) == "PR #4 opened"
    assert sentence("escalated", {"reason": "CI still failing\x1b[31m"}) == \
        "a person is needed: CI still failing"  # text from outside, cleaned
    other = sentence("post-create", {"worktree": "/tmp/" + "x" * 80, "ok": True})
    assert "{" not in other and other.startswith("post-create ok True")


def test_lanes_count_the_sessions_and_a_paused_project_shows_until_resumed(env: Env) -> None:
    import json

    from ao import paths

    paths.config_file().write_text(json.dumps({"projects": {"workflow": {
        "path": str(env.repo), "agent": "demo"}}}))
    store = Store()
    seed(store)

    async def go() -> tuple[str, str, str]:
        app = make_app(config.load(), store, None, refresh_every=3600)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            before = str(app.query_one("#lanes", Static).render())
            await pilot.press("p")
            await pilot.pause()
            paused = str(app.query_one("#lanes", Static).render())
            await pilot.press("p")
            await pilot.pause()
            return before, paused, str(app.query_one("#lanes", Static).render())

    before, paused, after = asyncio.run(go())
    assert before.startswith("needs you 1 · ready to merge 1 · fixing 1"), before
    assert "paused: workflow" in paused and "paused" not in before + after, paused


def test_the_selected_session_stays_selected_when_the_columns_refit(tmp_path: Path) -> None:
    """`d` and a resize build the table again with the columns that fit: the session the
    person chose stays the one a key acts on."""
    store = Store()
    seed(store)

    async def go() -> tuple[str, str, str]:
        app = make_app(config.load(), store, None, refresh_every=3600)
        async with app.run_test(size=(200, 40)) as pilot:
            await pilot.pause()
            await pilot.press("down", "down")
            await pilot.pause()
            before = app.selected()
            await pilot.press("d")
            await pilot.pause()
            after_d = app.selected()
            await pilot.resize_terminal(80, 24)
            await pilot.pause()
            after_resize = app.selected()
            assert before and after_d and after_resize
            return before.id, after_d.id, after_resize.id

    before, after_d, after_resize = asyncio.run(go())
    assert before == after_d == after_resize
