"""What the board draws from the record, as rich Text: no I/O beyond the store's reads."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text

from ao import paths
from ao.decide import attention, scheduler, waiting
from ao.decide import plan as planmod
from ao.decide.reactions import DEFAULT_CI_RETRIES, Policy
from ao.record import events
from ao.sanitize import clean, for_terminal
from ao.services import views

if TYPE_CHECKING:
    from ao.config import Config
    from ao.record.store import Session, Store

ENDED_NAMES = ("merged", "cleaned", "killed", "failed")
ZONE_STYLE = {"respond": "bold red", "gate": "bold magenta", "merge": "bold green",
              "fixing": "yellow", "working": "cyan", "queued": "dim", "done": "dim green"}


# the board's columns in the order drawn, and the order they give way in as the terminal
# narrows (the last first): what needs you, its PR and review before the title and the log
COLUMNS = ("zone", "id", "task", "waits", "pr", "review", "round", "age", "activity", "title",
           "last")
HOSTED = (*COLUMNS[:9], "host", *COLUMNS[9:])  # with hosts configured: where each one runs
PRIORITY = ("zone", "id", "waits", "pr", "review", "task", "round", "age", "activity", "host",
            "title", "last")
CAP = {"waits": 30, "title": 30, "last": 24, "task": 14}  # the widest a cell is drawn
LANES = {"respond": "needs you", "gate": "at a gate", "merge": "ready to merge",
         "fixing": "fixing", "working": "working", "queued": "queued", "done": "done"}


def fit(columns: tuple[str, ...], widths: dict[str, int], width: int) -> tuple[str, ...]:
    """The columns that fit in `width`, taken by priority (zone and id always), drawn in
    their own order. `widths`: each column's widest cell (headers included)."""
    room, chosen = width - 2, set()  # the scrollbar
    for c in (c for c in PRIORITY if c in columns):
        need = min(widths.get(c, len(c)), CAP.get(c, 99)) + 2  # cell padding
        if room - need < 0 and c not in ("zone", "id"):
            continue
        chosen.add(c)
        room -= need
    return tuple(c for c in columns if c in chosen)


def _short(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[:cap - 1] + "…"


def session_row(store: Store, cfg: Config, s: Session, last: str, now: float,
                ctx: waiting.Context | None = None) -> dict[str, Text]:
    """A session's row of the board, every column (the app draws those that fit): zone, id,
    task, what it waits for (and on whom), PR and CI, review (and the step holding the
    merge), fix rounds against the limit, age, activity, the machine it runs on, title,
    last event."""
    z = attention.zone(s, now)
    rounds = len(store.attempts(s.id, "fix-ci"))
    project = cfg.projects.get(s.project)
    limit = Policy.for_project(project).ci_retries if project else DEFAULT_CI_RETRIES
    pr = f"#{s.pr_number} {s.pr_checks or ''}".strip() if s.pr_number else "-"
    review = (s.pr_review or "-").replace("_", " ")
    if s.step and s.step not in ("implement", "merge", "merged"):
        review = f"{review} → {s.step}"  # the step that holds the merge (steps.py)
    # an ended session says how it ended (merged, killed, failed): "done" alone hid it
    doing = s.activity if s.state.value not in ("queued", *ENDED_NAMES) else \
        ("-" if s.state.value == "queued" else (s.outcome.value if s.outcome else
                                                 s.state.value))
    w = waiting.why(s, ctx or waiting.Context(), now)
    # the reason without its hint in brackets (the detail pane and `ao status` have it)
    waits = re.sub(r"\s*\(`[^)]*\)", "", w.reason) if w else "-"
    # plain Text, never markup: a title like "[/bold] x" is text, and escapes are gone
    cells = {"zone": Text(z, style=ZONE_STYLE[z])}
    for col, value in (("id", s.id), ("task", _short(s.task, CAP["task"])),
                       ("pr", pr), ("review", review),
                       ("round", f"{rounds}/{limit}" if rounds else "-"),
                       ("age", views.duration(now - s.created_at)), ("activity", doing),
                       ("host", s.placed_on or "-"), ("title", _short(s.title, CAP["title"])),
                       ("last", _short(last or "-", CAP["last"]))):
        cells[col] = Text(for_terminal(str(value)))
    cells["waits"] = Text(for_terminal(_short(waits, CAP["waits"])),
                          style="bold yellow" if w and w.needs_person else "")
    return cells


def lanes(counts: dict[str, int]) -> Text:
    """The lanes and how many sessions each holds: the ones that need you first."""
    t = Text()
    for zone, name in LANES.items():
        n = counts.get(zone, 0)
        if n or zone == "respond":
            if t:
                t.append(" · ", style="dim")
            t.append(f"{name} {n}", style=ZONE_STYLE[zone] if n else "dim")
    return t


def plan_view(store: Store, cfg: Config, p: planmod.Plan, project: str | None) -> Text:
    """The plan's waves, each task's state, the critical path starred, what is left."""
    project = project or p.project or ""
    sessions = store.sessions(project)
    states = {s.task: s.state.value for s in sessions}
    done = scheduler.done_tasks(scheduler.by_task(sessions),
                                store.closed_tasks(project)) & set(p.tasks)
    crit, _ = planmod.critical_path(p)
    t = Text()
    t.append(f"{len(done)}/{len(p.tasks)} done", style="bold")
    t.append(_remaining(cfg, p, done))
    for i, layer in enumerate(planmod.layers(p), start=1):
        t.append(f"\nwave {i}\n", style="bold")
        for k in layer:
            _plan_line(t, p, k, "done" if k in done else states.get(k, "not queued"), done,
                       k in crit)
    return t


def _remaining(cfg: Config, p: planmod.Plan, done: set[str]) -> str:
    """The work left on the critical path, simulated on the tasks not done."""
    rest = planmod.Plan(tasks={k: planmod.Task(k, v.title, deps=tuple(
        d for d in v.deps if d not in done), estimate=v.estimate)
        for k, v in p.tasks.items() if k not in done})
    if not rest.tasks:
        return "\n"
    left = planmod.simulate(rest, cfg.projects[p.project].max_concurrent
                            if p.project in cfg.projects else 5)
    return f"; about {left:g}d of work remaining on the critical path\n"


def _plan_line(t: Text, p: planmod.Plan, k: str, state: str, done: set[str],
               critical: bool) -> None:
    waits = [d for d in p.tasks[k].deps if d not in done]
    style = "green" if k in done else "bold magenta" if critical else ""
    t.append(f"  {'*' if critical else ' '} {k:<14} {state:<11}", style=style)
    t.append(f" {for_terminal(p.tasks[k].title[:40])}")
    if waits and k not in done:
        t.append(f"  waits on {', '.join(waits)}", style="dim")
    t.append("\n")


def detail_view(store: Store, s: Session, screen: str, cfg: Config | None = None) -> Text:
    """A session's detail: its task, PR, queued messages, the last of its screen (as the
    board read it) and its latest events."""
    t = Text()
    where = f"  on {s.placed_on}" if s.placed_on not in (None, "local") else ""
    t.append(f"{s.id}  {s.task}  {s.state.value}{where}\n", style="bold")
    t.append(f"{for_terminal(s.title)}\n")
    if s.pr_number:
        t.append(f"PR #{s.pr_number} {s.pr_state or ''}  CI {s.pr_checks or '-'}  review "
                 f"{s.pr_review or '-'}  {s.pr_mergeable or ''}\n")
    queued = store.messages(s.id, "queued")
    if queued:
        t.append(f"{len(queued)} message(s) queued\n", style="yellow")
    project = cfg.projects.get(s.project) if cfg is not None else None
    w = waiting.why(s, views.wait_context(store, project))
    if w is not None:
        t.append(f"waiting: {for_terminal(w.reason)} [{w.who}]\n",
                 style="bold yellow" if w.needs_person else "yellow")
    t.append("\nscreen\n", style="bold")
    lines = [ln for ln in clean(screen).splitlines() if ln.strip()][-10:]
    t.append("\n".join(ln[:70] for ln in lines) or "(no terminal)")
    t.append("\n\nevents\n", style="bold")
    log = paths.ao_home() / "sessions" / s.project / s.id / "events.log"
    evs = list(events.read(log, include_rotated=False))[-8:] if log.exists() else []
    for e in evs:
        t.append(f"{e.ts[11:19]} {sentence(e.type, e.data)}\n")
    return t


def _count(x: object) -> int:
    return len(x) if isinstance(x, list | tuple) else 0


def _sha(d: dict[str, object]) -> str:
    return str(d.get("sha") or "")[:7]


# the events a person reads most, as sentences; any other as its type and its short values
SENTENCES: dict[str, Callable[[dict[str, object]], str]] = {
    "ci.failed": lambda d: f"CI failed on {_sha(d)}: {_count(d.get('checks'))} check(s); "
                           f"fix round {d.get('round')} sent",
    "review.forwarded": lambda d: f"review round {d.get('round')}: {d.get('comments')} "
                                  "comment(s) sent to the agent",
    "pr.opened": lambda d: f"PR #{d.get('number') or d.get('pr') or '?'} opened",
    "merged": lambda d: "merged" + (f" at {_sha(d)}" if d.get("sha") else ""),
    "session.started": lambda d: "started",
    "session.spawned": lambda d: "the agent started",
    "session.killed": lambda d: "killed by hand",
    "message.delivered": lambda d: f"message delivered ({d.get('source') or 'user'})",
    "message.queued": lambda d: f"message held: {d.get('why')}",
    "message.failed": lambda d: f"message not delivered: {d.get('why') or d.get('error')}",
    "escalated": lambda d: f"a person is needed: {d.get('reason')}",
    "session.waiting": lambda d: f"waits: {d.get('reason')}",
    "session.parked": lambda d: f"parked at {d.get('agent')}'s usage limit",
    "agent.limit_reset": lambda d: "the usage limit reset: told to continue",
    "session.restored": lambda d: "the agent restarted in place",
    "session.resumed": lambda d: "handed back to ao",
}


def sentence(kind: str, data: dict[str, object]) -> str:
    """An event as a person reads it ("CI failed on a1b2c3d: 2 check(s); fix round 1
    sent"), never raw JSON."""
    said = SENTENCES.get(kind)
    if said is None:
        return f"{kind} {_said(data)}"
    try:
        return for_terminal(said(data))[:72]
    except (TypeError, ValueError):
        return f"{kind} {_said(data)}"


def _said(data: dict[str, object], width: int = 48) -> str:
    """An event's data in words: its short values as `key value`, never raw JSON."""
    parts = []
    for k, v in data.items():
        if isinstance(v, str | int | float | bool) and not (isinstance(v, str) and len(v) > 60
                                                            and "/" in v):
            parts.append(f"{k} {v}")
    return for_terminal(", ".join(parts))[:width]


def progress_line(store: Store, p: planmod.Plan, project: str) -> str:
    """The board's header: the plan's merged/total, running, queued, escalated, paused."""
    prog = views.plan_status(store, p, project)["progress"]
    paused = " · paused" if project and store.paused(project) else ""
    return (f"{project}: {prog['merged']}/{prog['total']} merged · {prog['running']} running"
            f" · {prog['queued']} queued · {prog['escalated']} escalated{paused}")
