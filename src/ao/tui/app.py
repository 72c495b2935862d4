"""`ao board`: watch and steer the fleet. The App holds the services; widgets render the store;
changes are picked up by watching the store's event id (no full reload per tick)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane
from textual.widgets.data_table import CellDoesNotExist

from ao.decide import attention, waiting
from ao.decide import plan as planmod
from ao.errors import AoError
from ao.record.state import Activity
from ao.services import views
from ao.tui.acting import Acting
from ao.tui.table import SessionTable, _show
from ao.tui.views import (
    COLUMNS,
    HOSTED,
    detail_view,
    fit,
    lanes,
    plan_view,
    progress_line,
    session_row,
)
from ao.world import tmux

if TYPE_CHECKING:
    from ao.config import Config
    from ao.record.store import Session, Store
    from ao.services.fleet import Fleet

NARROW = 180  # columns under which the detail pane is hidden (`d` shows it): the
# table takes all of a narrower terminal, every column of it from 160
AGE_EVERY = 5.0  # seconds between age refreshes when nothing else changed


class BoardApp(Acting, App[None]):
    CSS_PATH = "board.tcss"
    TITLE = "ao board"
    BINDINGS = [
        Binding("a", "attach", "Attach", id="attach"),
        Binding("s", "send", "Send", id="send"),
        Binding("k", "kill", "Kill", id="kill"),
        Binding("r", "restore", "Restore", id="restore"),
        Binding("m", "merge", "Merge", id="merge"),
        Binding("A", "approve", "Approve", id="approve", show=False),
        Binding("p", "pause", "Pause", id="pause"),
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("tab", "switch", "View", id="switch", priority=True),
        Binding("d", "detail", "Detail", id="detail", show=False),
        Binding("c", "changes", "Diff", id="changes", show=False),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, cfg: Config, store: Store, fleet: Fleet | None = None,
                 project: str | None = None, plan_file: Path | None = None,
                 refresh_every: float = 0.5, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.clock = clock
        self.cfg = cfg
        self.all_columns: tuple[str, ...] = HOSTED if len(cfg.hosts) > 1 else COLUMNS
        self.columns: tuple[str, ...] = self.all_columns  # those that fit (views.fit)
        self.store = store
        self.fleet = fleet
        self.project = project
        self.plan_file = plan_file
        self.refresh_every = refresh_every
        self.filter_text = ""
        self.last_event = 0
        self.last_seen = 0.0
        self.shown: dict[str, dict[str, Text]] = {}
        self.contexts: dict[str, waiting.Context] = {}  # each project's, read once a refresh
        self.screens: dict[str, str] = {}  # each session's last captured screen (a worker's)
        self.last_aged = 0.0
        self._detail_chosen = False  # `d` pressed: the person's choice, kept on resize

    # ---- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with TabbedContent(id="views", initial="sessions-tab"):
            with TabPane("Sessions", id="sessions-tab"):
                yield Static(id="lanes")
                with Horizontal():
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
        self.set_interval(self.refresh_every, self._poll_tick)

    # ---- data -----------------------------------------------------------------------------

    def sessions(self) -> list[Session]:
        f = self.filter_text.lower()
        return [s for s in self.store.sessions(self.project) if not f or f in s.id.lower()
                or f in s.task.lower() or f in s.title.lower()]

    def rebuild(self) -> None:
        """The whole table from scratch (start, filter change, a width that fits other
        columns)."""
        table = self.query_one(SessionTable)
        self.shown.clear()
        self.contexts.clear()
        now = self.clock()
        last = self.store.last_event_types(None)
        rows = []
        for s in sorted(self.sessions(), key=lambda s: (attention.rank(s, now), s.created_at)):
            cells = session_row(self.store, self.cfg, s, last.get(s.id, ""), now,
                                self.context(s.project))
            rows.append((s.id, cells))
            self.shown[s.id] = cells
        self.columns = fit(self.all_columns, self.widths(), self.table_width())
        chosen = self.selected()  # kept across the rebuild: `d` or a resize moves nothing
        table.clear(columns=True)
        for c in self.columns:
            table.add_column(c, key=c)
        for sid, cells in rows:
            table.add_row(*(cells[c] for c in self.columns), key=sid)
        if chosen is not None and chosen.id in self.shown:
            table.move_cursor(row=table.get_row_index(chosen.id), animate=False)
        self.last_event = self.store.last_event_id()
        self.last_seen = now
        self.render_lanes()
        self.render_detail()

    def table_width(self) -> int:
        """The table's share of the width: all of it, or two thirds beside the detail."""
        width = self.size.width or 80
        detail = self.query_one("#detail", Static)
        return max(20, width - max(30, width // 3)) if detail.display else width

    def context(self, project: str) -> waiting.Context:
        """What `waiting.why` needs of the session's project, read once a refresh."""
        if project not in self.contexts:
            self.contexts[project] = views.wait_context(self.store,
                                                        self.cfg.projects.get(project))
        return self.contexts[project]

    def widths(self) -> dict[str, int]:
        """Each column's widest cell, its header included."""
        out = {c: len(c) for c in self.all_columns}
        for cells in self.shown.values():
            for c, v in cells.items():
                out[c] = max(out.get(c, 0), v.cell_len)
        return out

    def render_lanes(self) -> None:
        counts: dict[str, int] = {}
        for cells in self.shown.values():
            z = str(cells["zone"])
            counts[z] = counts.get(z, 0) + 1
        line = lanes(counts)
        names = [self.project] if self.project else sorted({*self.cfg.projects,
                                                            *self.contexts})
        paused = [n for n in names if self.store.paused(n)]
        if paused:  # a lasting sign, whatever the plan view says
            line.append(f"  ⏸ paused: {', '.join(paused)} (`p` or `ao resume`)",
                        style="bold red")
        if self.sub_title:  # the plan's progress; the daemon not running
            line.append(f"\n{self.sub_title}", style="dim")
        _show(self.query_one("#lanes", Static), line)

    def _poll_tick(self) -> None:
        with contextlib.suppress(NoMatches):  # a tick while the board closes: its widgets gone
            self.poll()

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
        self.contexts.clear()  # paused, main red, a budget: read again for this refresh
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
            age = Text(views.duration(now - created))
            if str(cells["age"]) != str(age):
                if "age" in self.columns:
                    table.set_cells(sid, {"age": age})
                cells["age"] = age
        self.last_aged = now

    def render_header(self) -> None:
        """The plan's progress in the header: merged/total, running, queued, escalated."""
        try:
            p = self.plan()
        except AoError:
            p = None
        from ao.paths import daemon_state as read_state

        # a board with no daemon behind it shows a still world: it says so
        down = "" if read_state() else "daemon not running (`ao start`)"
        if p is None:
            self.sub_title = down
        else:
            line = progress_line(self.store, p, self.project or p.project or "")
            self.sub_title = f"{line} · {down}" if down else line
        self.render_lanes()  # where the board shows it (it has no header bar)

    def apply(self, ids: list[str]) -> None:
        """Update just these sessions' rows; re-sort only if a zone changed."""
        table = self.query_one(SessionTable)
        now = self.clock()
        last = self.store.last_event_types(ids)
        resort = False
        for sid in ids:
            try:
                s = self.store.session(sid)
            except AoError:
                continue
            if self.project and s.project != self.project:
                continue
            cells = session_row(self.store, self.cfg, s, last.get(sid, ""), now,
                                self.context(s.project))
            old = self.shown.get(sid)
            if old is None:
                table.add_row(*(cells[c] for c in self.columns), key=sid)
                resort = True
            else:
                table.set_cells(sid, {c: cells[c] for c in self.columns
                                      if str(old[c]) != str(cells[c])})
                resort = resort or str(old["zone"]) != str(cells["zone"])
            self.shown[sid] = cells
        if resort:
            table.sort("zone", key=lambda z: attention.ZONES.index(str(z)))
            self.render_lanes()
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
        except (AoError, CellDoesNotExist):  # a row gone since, or a session removed
            return None

    # ---- rendering ------------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.render_detail()

    def render_detail(self) -> None:
        """The detail now with the last screen; a worker captures it anew, off the UI thread."""
        s = self.selected()
        detail = self.query_one("#detail", Static)
        if s is None:
            detail.update("no session selected")
            return
        if s.activity is Activity.UNREACHABLE:
            detail.update(detail_view(self.store, s, f"(host {s.host} is unreachable)", self.cfg))
            return
        detail.update(detail_view(self.store, s, self.screens.get(s.id, ""), self.cfg))
        if self.fleet is not None and s.state.value not in ("queued", "cleaned"):
            self.capture(s)

    @work(thread=True, exclusive=True, group="capture")
    def capture(self, s: Session) -> None:
        assert self.fleet is not None
        try:
            screen = tmux.capture(self.fleet.server(s), s.id)
        except AoError:
            return
        self.call_from_thread(self.captured, s.id, screen)

    def captured(self, sid: str, screen: str) -> None:
        """A worker's capture arrived: redraw the detail if it changed and still shows."""
        if self.screens.get(sid) == screen:
            return
        self.screens[sid] = screen
        s = self.selected()
        if s is not None and s.id == sid and s.activity is not Activity.UNREACHABLE:
            self.query_one("#detail", Static).update(detail_view(self.store, s, screen, self.cfg))

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
            _show(target, f"plan: {e}")
            return
        _show(target, plan_view(self.store, self.cfg, p, self.project) if p is not None else
              "no plan running (`ao plan run FILE -p PROJECT`, or `ao board --plan FILE`)")

    # ---- actions --------------------------------------------------------------------------


    def action_switch(self) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = "plan-tab" if tabs.active == "sessions-tab" else "sessions-tab"

    def on_resize(self) -> None:
        """The detail pane beside the table only where both fit (at 80 columns the table's
        PR and review columns were cut off); `d` shows or hides it."""
        if not self._detail_chosen:
            self.query_one("#detail", Static).display = self.size.width >= NARROW
        # the footer's keys close up where they would not fit (the palette's hint goes first)
        footer = self.query_one(Footer)
        footer.compact = self.size.width < 120
        footer.show_command_palette = self.size.width >= 100
        if fit(self.all_columns, self.widths(), self.table_width()) != self.columns:
            self.rebuild()  # the columns that fit this width

    def action_detail(self) -> None:
        detail = self.query_one("#detail", Static)
        detail.display = not detail.display
        self._detail_chosen = True
        self.rebuild()  # the columns that fit beside it, or without it

    def on_key(self, event: Any) -> None:
        """Escape in the filter clears it (its placeholder says so) and closes it."""
        box = self.query_one("#filter", Input)
        if event.key == "escape" and (box.has_focus or self.filter_text):
            box.value = ""
            box.display = False
            self.filter_text = ""
            self.rebuild()
            self.query_one(SessionTable).focus()
            event.stop()

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


def make_app(cfg: Config, store: Store, fleet: Fleet | None = None, project: str | None = None,
             plan_file: Path | None = None, refresh_every: float = 0.5,
             clock: Callable[[], float] = time.time) -> BoardApp:
    """The one constructor the CLI and the tests use."""
    return BoardApp(cfg, store, fleet, project, plan_file, refresh_every, clock)
