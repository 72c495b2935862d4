"""What the board draws from the record, as rich Text: no I/O beyond the store's reads."""

from __future__ import annotations

from rich.text import Text

from ao import paths
from ao.config import Config
from ao.decide import attention, scheduler, waiting
from ao.decide import plan as planmod
from ao.decide.reactions import DEFAULT_CI_RETRIES, Policy
from ao.record import events
from ao.record.store import Session, Store
from ao.sanitize import clean, for_terminal
from ao.services import views

ENDED_NAMES = ("merged", "cleaned", "killed", "failed")
ZONE_STYLE = {"respond": "bold red", "gate": "bold magenta", "merge": "bold green",
              "fixing": "yellow", "working": "cyan", "queued": "dim", "done": "dim green"}


def session_row(store: Store, cfg: Config, s: Session, last: str, now: float,
                hosted: bool = False) -> tuple[Text, ...]:
    """A session's row of the board: zone, id, task, title, activity, (with `hosted`, the
    machine it runs on,) PR, review (and the step holding the merge), fix rounds against
    the limit, age, last event."""
    z = attention.zone(s, now)
    rounds = len(store.attempts(s.id, "fix-ci"))
    project = cfg.projects.get(s.project)
    limit = Policy.for_project(project).ci_retries if project else DEFAULT_CI_RETRIES
    pr = f"#{s.pr_number} {s.pr_checks or ''}".strip() if s.pr_number else "-"
    review = (s.pr_review or "-").replace("_", " ")
    if s.step and s.step not in ("implement", "merge", "merged"):
        review = f"{review} → {s.step}"  # the step that holds the merge (steps.py)
    # plain Text, never markup: a title like "[/bold] x" is text, and escapes are gone
    # an ended session says how it ended (merged, killed, failed): "done" alone hid it
    doing = s.activity if s.state.value not in ("queued", *ENDED_NAMES) else \
        ("-" if s.state.value == "queued" else (s.outcome.value if s.outcome else
                                                 s.state.value))
    return (Text(z, style=ZONE_STYLE[z]), *(Text(for_terminal(str(x))) for x in (
            s.id, s.task, s.title[:36], doing,
            *([s.placed_on or "-"] if hosted else []), pr, review,
            f"{rounds}/{limit}" if rounds else "-",
            views.duration(now - s.created_at), last or "-")))


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
        t.append(f"{e.ts[11:19]} {e.type} {_said(e.data)}\n")
    return t


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
