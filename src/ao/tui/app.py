"""`ao board`: watch and steer the fleet. The App holds the services; widgets render the store;
changes are picked up by watching the store's event id (no full reload per tick)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Input,
    Label,
    Static,
    TabbedContent,
    TabPane,
)

from .. import attention, events, paths, scheduler, tmux, views
from .. import plan as planmod
from ..config import Config
from ..errors import AoError
from ..fleet import Fleet
from ..messaging import Messenger
from ..reactions import DEFAULT_CI_RETRIES, Policy
from ..sanitize import clean, for_terminal
from ..store import Session, Store

COLUMNS = ("zone", "id", "task", "title", "activity", "pr", "review", "round", "age", "last")
ZONE_STYLE = {"respond": "bold red", "gate": "bold magenta", "merge": "bold green",
              "fixing": "yellow",
              "working": "cyan", "queued": "dim", "done": "dim green"}


AGE_EVERY = 5.0  # seconds between age refreshes when nothing else changed


def _age(ts: float, now: float) -> str:
    return views.duration(now - ts)


class SendScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="send.cancel")]

    def __init__(self, sid: str) -> None:
        super().__init__()
        self.sid = sid

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Message to {self.sid} (Enter sends, Escape cancels)")
            yield Input(placeholder="Please add tests for the login function", id="message")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("y", "yes", "Yes", id="confirm.yes"),
                Binding("n,escape", "no", "No", id="confirm.no")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question)
            with Horizontal():
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class SessionTable(DataTable[Text | str]):
    """Sessions grouped by attention zone; rows updated in place."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for c in COLUMNS:
            self.add_column(c, key=c)


class BoardApp(App[None]):
    CSS_PATH = "board.tcss"
    TITLE = "ao board"
    BINDINGS = [
        Binding("a", "attach", "Attach", id="attach"),
        Binding("s", "send", "Send", id="send"),
        Binding("k", "kill", "Kill", id="kill"),
        Binding("r", "restore", "Restore", id="restore"),
        Binding("m", "merge", "Merge", id="merge"),
        Binding("p", "pause", "Pause", id="pause"),
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("tab", "switch", "View", id="switch", priority=True),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, cfg: Config, store: Store, fleet: Fleet | None = None,
                 project: str | None = None, plan_file: Path | None = None,
                 refresh_every: float = 0.5, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.clock = clock
        self.cfg = cfg
        self.store = store
        self.fleet = fleet
        self.project = project
        self.plan_file = plan_file
        self.refresh_every = refresh_every
        self.filter_text = ""
        self.last_event = 0
        self.last_seen = 0.0
        self.shown: dict[str, tuple[Any, ...]] = {}
        self.last_aged = 0.0

    # ---- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with TabbedContent(id="views", initial="sessions-tab"):
            with TabPane("Sessions", id="sessions-tab"), Horizontal():
                yield SessionTable(id="sessions")
                yield Static(id="detail")
            with TabPane("Plan", id="plan-tab"):
                yield Static(id="plan")
        yield Input(placeholder="filter: id, task or title (Escape clears)", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one(SessionTable).focus()
        self.rebuild()
        self.render_plan()
        self.render_header()
        self.set_interval(self.refresh_every, self.poll)

    # ---- data -----------------------------------------------------------------------------

    def sessions(self) -> list[Session]:
        rows = self.store.sessions(self.project)
        if self.filter_text:
            f = self.filter_text.lower()
            rows = [s for s in rows if f in s.id.lower() or f in s.task.lower()
                    or f in s.title.lower()]
        return rows

    def last_events(self, ids: list[str] | None = None) -> dict[str, str]:
        return self.store.last_event_types(ids)

    def cells(self, s: Session, last: str, now: float) -> tuple[Any, ...]:
        z = attention.zone(s, now)
        rounds = len(self.store.attempts(s.id, "fix-ci"))
        project = self.cfg.projects.get(s.project)
        limit = Policy.for_project(project).ci_retries if project else DEFAULT_CI_RETRIES
        pr = f"#{s.pr_number} {s.pr_checks or ''}".strip() if s.pr_number else "-"
        review = (s.pr_review or "-").replace("_", " ")
        if s.step and s.step not in ("implement", "merge", "merged"):
            review = f"{review} → {s.step}"  # the step that holds the merge (steps.py)
        # plain Text, never markup: a title like "[/bold] x" is text, and escapes are gone
        return (Text(z, style=ZONE_STYLE[z]), *(Text(for_terminal(str(x))) for x in (
                s.id, s.task, s.title[:36], s.activity if s.state.value != "queued" else "-",
                pr, review,
                f"{rounds}/{limit}" if rounds else "-",
                _age(s.created_at, now), last or "-")))

    def rebuild(self) -> None:
        """The whole table from scratch (start, filter change)."""
        table = self.query_one(SessionTable)
        table.clear()
        self.shown.clear()
        now = self.clock()
        last = self.last_events()
        for s in sorted(self.sessions(), key=lambda s: (attention.rank(s, now), s.created_at)):
            cells = self.cells(s, last.get(s.id, ""), now)
            table.add_row(*cells, key=s.id)
            self.shown[s.id] = cells
        self.last_event = self.store.last_event_id()
        self.last_seen = now
        self.render_detail()

    def poll(self) -> None:
        """Rows whose session changed (an event, or an observation written without one, such
        as activity or CI going pending -> passing); ages tick every few seconds."""
        eid = self.store.last_event_id()
        newest = self.store.newest_update()
        now = self.clock()
        if eid == self.last_event and newest < self.last_seen:
            if now - self.last_aged >= AGE_EVERY:
                self.tick_ages(now)
            return
        changed = self.store.changed_since(self.last_event, self.last_seen)
        self.last_event = eid
        self.last_seen = now
        self.apply(sorted(changed))
        self.render_plan()
        self.render_header()

    def tick_ages(self, now: float) -> None:
        table = self.query_one(SessionTable)
        for sid, cells in list(self.shown.items()):
            try:
                created = self.store.session(sid).created_at
            except AoError:
                continue
            age = Text(_age(created, now))
            if str(cells[COLUMNS.index("age")]) != str(age):
                table.update_cell(sid, "age", age)
                self.shown[sid] = (*cells[:COLUMNS.index("age")], age,
                                   *cells[COLUMNS.index("age") + 1:])
        self.last_aged = now

    def render_header(self) -> None:
        """The plan's progress in the header: merged/total, running, queued, escalated."""
        try:
            p = self.plan()
        except AoError:
            p = None
        if p is None:
            self.sub_title = ""
            return
        project = self.project or p.project or ""
        prog = views.plan_status(self.store, p, project)["progress"]
        paused = " · paused" if project and self.store.paused(project) else ""
        self.sub_title = (f"{project}: {prog['merged']}/{prog['total']} merged · "
                          f"{prog['running']} running · {prog['queued']} queued · "
                          f"{prog['escalated']} escalated{paused}")

    def apply(self, ids: list[str]) -> None:
        """Update just these sessions' rows; re-sort only if a zone changed."""
        table = self.query_one(SessionTable)
        now = self.clock()
        last = self.last_events(ids)
        resort = False
        for sid in ids:
            try:
                s = self.store.session(sid)
            except AoError:
                continue
            if self.project and s.project != self.project:
                continue
            cells = self.cells(s, last.get(sid, ""), now)
            old = self.shown.get(sid)
            if old is None:
                table.add_row(*cells, key=sid)
                resort = True
            else:
                for col, (a, b) in zip(COLUMNS, zip(old, cells, strict=True), strict=True):
                    if str(a) != str(b):
                        table.update_cell(sid, col, b)
                resort = resort or str(old[0]) != str(cells[0])
            self.shown[sid] = cells
        if resort:
            table.sort("zone", key=lambda z: attention.ZONES.index(str(z)))
        current = self.selected()
        if current is not None and current.id in ids:
            self.render_detail()

    def selected(self) -> Session | None:
        table = self.query_one(SessionTable)
        if table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            return self.store.session(str(key))
        except (AoError, Exception):
            return None

    # ---- rendering ------------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.render_detail()

    def render_detail(self) -> None:
        s = self.selected()
        detail = self.query_one("#detail", Static)
        if s is None:
            detail.update("no session selected")
            return
        t = Text()
        t.append(f"{s.id}  {s.task}  {s.state.value}"
                 + (f"  on {s.host}" if s.host != "local" else "") + "\n", style="bold")
        t.append(f"{for_terminal(s.title)}\n")
        if s.pr_number:
            t.append(f"PR #{s.pr_number} {s.pr_state or ''}  CI {s.pr_checks or '-'}  review "
                     f"{s.pr_review or '-'}  {s.pr_mergeable or ''}\n")
        queued = self.store.messages(s.id, "queued")
        if queued:
            t.append(f"{len(queued)} message(s) queued\n", style="yellow")
        t.append("\nscreen\n", style="bold")
        screen = ""
        if s.activity == "unreachable":
            screen = f"(host {s.host} is unreachable)"
        elif self.fleet is not None and s.state.value not in ("queued", "cleaned"):
            try:
                screen = tmux.capture(self.fleet.server(s), s.id)
            except AoError:
                screen = ""
        lines = [ln for ln in clean(screen).splitlines() if ln.strip()][-10:]
        t.append("\n".join(ln[:70] for ln in lines) or "(no terminal)")
        t.append("\n\nevents\n", style="bold")
        log = paths.ao_home() / "sessions" / s.project / s.id / "events.log"
        evs = list(events.read(log, include_rotated=False))[-8:] if log.exists() else []
        for e in evs:
            t.append(f"{e.ts[11:19]} {e.type} {json.dumps(e.data)[:40]}\n")
        detail.update(t)

    def plan(self) -> planmod.Plan | None:
        if self.plan_file is not None:
            return planmod.load_valid(self.plan_file)
        for run in self.store.plan_runs(self.project):
            return planmod.load_valid(Path(run["plan"]))
        return None

    def render_plan(self) -> None:
        target = self.query_one("#plan", Static)
        try:
            p = self.plan()
        except AoError as e:
            target.update(f"plan: {e}")
            return
        if p is None:
            target.update("no plan running (`ao plan run FILE -p PROJECT`, or "
                          "`ao board --plan FILE`)")
            return
        states: dict[str, str] = {}
        project = self.project or p.project or ""
        sessions = self.store.sessions(project)
        for s in sessions:
            states[s.task] = s.state.value
        done = scheduler.done_tasks(scheduler.by_task(sessions),
                                    self.store.closed_tasks(project)) & set(p.tasks)
        crit, _ = planmod.critical_path(p)
        t = Text()
        t.append(f"{len(done)}/{len(p.tasks)} done", style="bold")
        rest = planmod.Plan(tasks={k: planmod.Task(k, v.title, deps=tuple(
            d for d in v.deps if d not in done), estimate=v.estimate)
            for k, v in p.tasks.items() if k not in done})
        if rest.tasks:
            left = planmod.simulate(rest, self.cfg.projects[p.project].max_concurrent
                                    if p.project in self.cfg.projects else 5)
            t.append(f"; about {left:g}d of work remaining on the critical path\n")
        else:
            t.append("\n")
        for i, layer in enumerate(planmod.layers(p), start=1):
            t.append(f"\nwave {i}\n", style="bold")
            for k in layer:
                state = "done" if k in done else states.get(k, "not queued")
                waits = [d for d in p.tasks[k].deps if d not in done]
                style = "green" if k in done else "bold magenta" if k in crit else ""
                t.append(f"  {'*' if k in crit else ' '} {k:<14} {state:<11}", style=style)
                t.append(f" {for_terminal(p.tasks[k].title[:40])}")
                if waits and k not in done:
                    t.append(f"  waits on {', '.join(waits)}", style="dim")
                t.append("\n")
        target.update(t)

    # ---- actions --------------------------------------------------------------------------

    def _need(self) -> Session | None:
        s = self.selected()
        if s is None:
            self.notify("select a session first", severity="warning")
        return s

    def action_switch(self) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = "plan-tab" if tabs.active == "sessions-tab" else "sessions-tab"

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        self.call_after_refresh(box.focus)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            # the "/" that opened the filter can reach the input too
            self.filter_text = event.value.strip().lstrip("/").strip()
            event.input.display = bool(self.filter_text)
            self.rebuild()
            self.query_one(SessionTable).focus()

    def action_attach(self) -> None:
        s = self._need()
        if s is None or self.fleet is None:
            return
        if not tmux.has_session(self.fleet.server(s), s.id):
            self.notify(f"{s.id} has no running terminal", severity="warning")
            return
        argv = tmux.attach_argv(self.cfg.tmux_socket, s.id, self.fleet.server(s))
        with self.suspend():
            subprocess.run(argv, env={k: v for k, v in os.environ.items()
                                      if k not in ("TMUX", "TMUX_PANE")})

    def action_send(self) -> None:
        s = self._need()
        if s is None:
            return

        def sent(text: str | None) -> None:
            if text:
                self.deliver(s.id, text)

        self.push_screen(SendScreen(s.id), sent)

    @work(thread=True, exclusive=True, group="send")
    def deliver(self, sid: str, text: str) -> None:
        if self.fleet is None:
            return
        worker_fleet = Fleet(self.cfg, Store(self.store.path), self.fleet.srv)
        r = Messenger(worker_fleet).send(sid, text)
        severity = "information" if r.status == "delivered" else \
            "warning" if r.status == "queued" else "error"
        self.call_from_thread(self.notify, f"{sid}: {r.status} {r.detail}".strip(),
                              severity=severity)

    def action_kill(self) -> None:
        s = self._need()
        if s is None or self.fleet is None:
            return
        fleet = self.fleet

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            try:
                out = fleet.kill(s.id)
                self.notify(f"{s.id} killed; worktree {out['worktree']}")
            except AoError as e:
                self.notify(str(e), severity="error")

        self.push_screen(ConfirmScreen(f"Kill {s.id} ({s.task})? Unpushed work is kept."),
                         confirmed)

    def action_restore(self) -> None:
        s = self._need()
        if s is None or self.fleet is None:
            return
        try:
            self.fleet.restore(s.id)
            self.notify(f"{s.id} restored")
        except AoError as e:
            self.notify(str(e), severity="error")

    def action_merge(self) -> None:
        s = self._need()
        if s is None:
            return
        if not s.pr_gate_ok:
            # what the merge gate said when the daemon last looked; merge_now asks it again
            self.notify(f"{s.id} cannot merge: {s.pr_gate or 'no pull request seen yet'}",
                        severity="warning")
            return
        if self.fleet is None:
            return
        from ..merging import merge_now

        try:
            # the same gate as `ao pr merge` and the daemon, on the PR as it is now
            number, _sha = merge_now(self.cfg, self.store, self.fleet.server(s), s)
            self.notify(f"{s.id}: PR #{number} merged")
        except AoError as e:
            self.notify(str(e), severity="error")

    def action_pause(self) -> None:
        s = self.selected()
        project = self.project or (s.project if s else None)
        if project is None:
            self.notify("no project to pause", severity="warning")
            return
        paused = not self.store.paused(project)
        if project in self.cfg.projects:
            p = self.cfg.projects[project]
            self.store.ensure_project(p.name, str(p.path), p.repo)
        self.store.set_paused(project, paused)
        self.notify(f"{project} {'paused' if paused else 'resumed'}")


def make_app(cfg: Config, store: Store, fleet: Fleet | None = None, project: str | None = None,
             plan_file: Path | None = None, refresh_every: float = 0.5,
             clock: Callable[[], float] = time.time) -> BoardApp:
    """The one constructor the CLI and the tests use."""
    return BoardApp(cfg, store, fleet, project, plan_file, refresh_every, clock)
