"""`ao logs`, `ao open`, `ao status`, `ao agents` and the agents' `ao hook`."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer

from .. import (
    agent_hooks,
    agents,
    attention,
    events,
    hosts,
    hostwork,
    paths,
    scheduler,
    tmux,
    waiting,
)
from ..errors import BadInput, ExternalError
from ..hosts import LOCAL
from ..sanitize import clean, for_terminal, transcript
from ..state import LIVE, RUNNING, State
from ..store import Session, Store
from . import services
from .output import emit_json, note, table
from .services import SESSION_HELP


def logs(
    session: str = typer.Argument(..., help=SESSION_HELP),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new output."),
    show_events: bool = typer.Option(False, "--events", "-e",
                                     help="The session's event timeline instead."),
    lines: int = typer.Option(200, "--lines", "-n", min=1, help="How many recent lines."),
) -> None:
    """The agent's terminal transcript (escape sequences stripped), or its events."""
    s = services.session(session)
    sdir = paths.session_dir(s.project, s.id)
    if show_events:
        log = sdir / "events.log"
        for e in list(events.read(log, include_rotated=False))[-lines:]:
            typer.echo(f"{e.ts[:19].replace('T', ' ')}  {e.type:<20} {_brief(e.data)}")
        if follow:
            for e in events.follow(log):
                typer.echo(f"{e.ts[:19].replace('T', ' ')}  {e.type:<20} {_brief(e.data)}")
        return
    jsonl = _agent_transcript(sdir)
    if jsonl is not None and not follow:
        # a full-screen agent's pane log is cursor moves; its own transcript reads well
        for line in agent_transcript(jsonl)[-lines:]:
            typer.echo(line)
        return
    if s.host != LOCAL:
        _host_log(s, lines, follow)
        return
    pane = sdir / "pane.log"
    if not pane.exists():
        note(f"no transcript yet at {paths.display(pane)}")
        return
    with pane.open("rb") as fh:
        text = transcript(fh.read())
        for line in text.splitlines()[-lines:]:
            typer.echo(line)
        while follow:
            chunk = fh.read()
            if chunk:
                sys.stdout.write(transcript(chunk))
                sys.stdout.flush()
            else:
                time.sleep(0.2)


def _host_log(s: Session, lines: int, follow: bool) -> None:
    """The pane log in the session's folder on its host, read (and followed) over ssh."""
    fleet = services.fleet()
    host = fleet.host(s.host)
    log = hostwork.place(host, s.project, s.id).session_dir / "pane.log"
    # bytes, as the local log is read: the terminal's \r and a multibyte character cut by
    # `tail -c` are the transcript's to handle, not a text decoder's
    try:
        data = hostwork.read_end(host, log, 2_000_000)
    except hosts.Unreachable:
        raise ExternalError(f"host {host.name} does not answer, so {s.id}'s transcript there "
                            "cannot be read", "see `ao hosts`; it is read again once the "
                            "host is back") from None
    if data is None:
        note(f"no transcript yet at {host.name}:{log}")
        return
    for line in transcript(data).splitlines()[-lines:]:
        typer.echo(line)
    if follow:
        code = _follow_over_ssh([*hosts.ssh_argv(host), "--",
                                 f"tail -c 0 -f {shlex.quote(str(log))}"])
        if code in (130, -signal.SIGINT):  # a Ctrl-C that reached ssh first
            raise KeyboardInterrupt
        raise ExternalError(f"the connection to host {host.name} ended (ssh exit {code})",
                            f"`ao logs -f {s.id}` again once `ao hosts` sees it answer")


def _follow_over_ssh(argv: list[str]) -> int:
    """Print what the ssh command prints until it ends (its exit status) or ao is stopped:
    Ctrl-C, and also a SIGTERM or SIGHUP (a closed terminal), end the ssh client too, never
    leaving it behind."""
    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    # in place before ssh starts: a stop that comes as it starts still ends both
    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    p: subprocess.Popen[bytes] | None = None
    try:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert p.stdout is not None
        fd = p.stdout.fileno()
        for chunk in iter(lambda: os.read(fd, 65536), b""):
            sys.stdout.write(transcript(chunk))
            sys.stdout.flush()
        return p.wait(10)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if p is not None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _agent_transcript(sdir: Path) -> Path | None:
    """The transcript file the agent's hooks named (Claude Code's JSONL), if it exists."""
    log = sdir / "events.log"
    if not log.exists():
        return None
    found = None
    for e in events.read(log, include_rotated=False):
        p = e.data.get("transcript_path") if e.type == "agent.hook" else None
        if isinstance(p, str) and p:
            found = p
    return Path(found) if found and Path(found).is_file() else None


def agent_transcript(path: Path) -> list[str]:
    """Claude Code's JSONL as lines to read: who said what, and the tools it ran."""
    out: list[str] = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if rec.get("type") not in ("user", "assistant"):
            continue
        who = "you" if rec["type"] == "user" else "agent"
        content = (rec.get("message") or {}).get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else \
            content if isinstance(content, list) else []
        for part in parts:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and str(part.get("text", "")).strip():
                text = clean(str(part["text"])).strip()
                out += [f"{who}: {text.splitlines()[0]}"] + \
                    [f"  {ln}" for ln in text.splitlines()[1:]]
            elif part.get("type") == "tool_use":
                arg = json.dumps(part.get("input") or {}, ensure_ascii=False)[:100]
                out.append(f"{who} runs {part.get('name')}: {clean(arg)}")
    return out


def _brief(data: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in data.items())[:160]


def open_(project: str = typer.Argument(..., help="Project name.")) -> None:
    """One tmux window per live session of the project, in an overview session; attach to it."""
    services.cfg().project(project)
    srv = services.fleet().srv
    running = services.store().sessions(project, set(RUNNING))
    away = [s.id for s in running if s.host != LOCAL]
    if away:  # windows link only within one tmux server
        note(f"on other hosts (attach with `ao session attach`): {', '.join(away)}")
    live = [s for s in running if s.host == LOCAL and tmux.has_session(srv, s.id)]
    names = [s.id for s in live]
    if not names:
        raise BadInput(f"{project} has no running sessions", "start some with `ao spawn`")
    overview = f"ao-{project}"
    tmux.link_windows(srv, overview, names, {s.id: f"{s.id} {s.task}" for s in live})
    argv = tmux.attach_argv(services.cfg().tmux_socket, overview)
    if not sys.stdin.isatty():
        typer.echo(f"{overview}: {len(names)} windows ({', '.join(names)}); attach with: "
                   + " ".join(argv))
        return
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
    os.execvpe(argv[0], argv, env)


def status(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Per project: sessions by state, queued tasks, and what runs next."""
    cfg = services.cfg()
    store = services.store()
    from ..daemon import read_state

    state = read_state()
    if state:
        last = state.get("last_poll")
        daemon = (f"running (pid {state['pid']}, since {services.age(state['started_at'])} "
                  f"ago, last poll {services.age(last) + ' ago' if last else 'pending'})")
    else:
        daemon = "not running (`ao start`)"
    fault = paths.store_trouble()
    if fault:
        daemon += f"; {fault}: the daemon waits and tries again each poll"
    projects = {name: _project_status(store, name, p.max_concurrent)
                for name, p in cfg.projects.items()}
    if json_out:
        emit_json({"daemon": daemon, "dashboard": (state or {}).get("web"),
                   "store_fault": fault, "projects": projects})
        return
    typer.echo(f"daemon: {daemon}")
    if state and state.get("web"):
        typer.echo(f"dashboard: {state['web']}")
    for name, info in projects.items():
        _print_project_status(name, info)
    if not cfg.projects:
        note("no projects configured: run `ao init` in a repository")


def _project_status(store: Store, name: str, max_concurrent: int) -> dict[str, Any]:
    sessions = store.sessions(name)
    ctx = services.wait_context(name)
    by_state: dict[str, int] = {}
    for s in sessions:
        by_state[s.state.value] = by_state.get(s.state.value, 0) + 1
    now = time.time()
    return {
        "by_state": by_state, "running": sum(1 for s in sessions if s.state in RUNNING),
        "max_concurrent": max_concurrent,
        "queued": [{"id": s.id, "task": s.task, "note": s.note} for s in sessions
                   if s.state is State.QUEUED],
        "needs_human": [s.id for s in sessions if s.state is State.NEEDS_HUMAN],
        # held at an approval gate: `ao approve` (steps.py)
        "gate": [s.id for s in sessions if attention.zone(s) == "gate"],
        # killed by hand: not queued again until someone starts them (scheduler.py)
        "stopped": sorted(k for k, t in scheduler.by_task(sessions).items() if t.held),
        "limited": [{"id": s.id, "agent": s.agent, "until": s.limited_until}
                    for s in sessions if _limited(s, now)],
        "paused": store.paused(name),
        "main_red": ctx.main_red,  # main's CI fails (mainwatch.py)
        "budget": ctx.budget,  # the agents spent the project's budget_usd (agent_usage.py)
        "next": _next_startable(store, name, sessions),
        # why each running session is not moving on by itself (waiting.py), and on whom
        "waiting": [{"id": s.id, "task": s.task, "reason": w.reason, "on": w.who}
                    for s in sessions if s.state in LIVE and s.state is not State.QUEUED
                    and (w := waiting.why(s, ctx, now)) is not None],
    }


def _limited(s: Session, now: float) -> bool:
    """Running, and its agent at a usage limit that has not reset yet."""
    return s.state in RUNNING and (s.limited_until or 0) > now


def _print_project_status(name: str, info: dict[str, Any]) -> None:
    states = ", ".join(f"{n} {k}" for k, n in sorted(info["by_state"].items())) or "none"
    paused = " (paused: `ao resume` to go on)" if info["paused"] else ""
    typer.echo(f"{name}{paused}: {info['running']}/{info['max_concurrent']} running; {states}")
    lines = [
        ("  ", info.get("main_red") or "", ": merges and new starts wait until it is green"),
        ("  ", info.get("budget") or "", ": nothing new starts (raise budget_usd)"),
        ("  queued: ", ", ".join(f"{q['id']} {q['task']}" + (
            f" ({for_terminal(q['note'])})" if q.get("note") else "") for q in info["queued"]),
         ""),
        ("  starts next: ", "" if info.get("main_red") or info.get("budget")
         else ", ".join(info["next"]), ""),
        ("  stopped by hand: ", ", ".join(info["stopped"]),
         " (`ao spawn PROJECT KEY` starts one again)"),
    ]
    for head, what, tail in lines:
        if what:
            typer.echo(head + what + tail)
    for w in info["waiting"]:
        typer.echo(f"  {w['id']} {w['task']}: {for_terminal(w['reason'])} [{w['on']}]")
    for x in info["limited"]:
        until = time.strftime("%H:%M", time.localtime(x["until"]))
        typer.echo(f"  usage limit: {x['id']} ({x['agent']}) until {until}; no new "
                   f"{x['agent']} sessions start before then")


def stats(json_out: bool = typer.Option(False, "--json", help="Print JSON."),
          project: str | None = typer.Option(None, "--project", "-p",
                                             help="Only this project.")) -> None:
    """Per project: tasks merged and failed, success and error rates, time to merge, fix
    rounds, escalations and utilisation (the same figures as /api/stats and /metrics)."""
    from .. import views

    cfg = services.cfg()
    names = [project] if project else list(cfg.projects)
    rows = [views.stats(services.store(), n, cfg.project(n).max_concurrent) for n in names]
    if json_out:
        emit_json(rows)
        return

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x * 100:.0f}%"

    def dur(x: float | None) -> str:
        return "-" if x is None else views.duration(x)

    typer.echo(table(["project", "sessions", "running", "merged", "failed", "abandoned",
                      "success", "errors", "to merge", "fix rounds", "escalations"],
                     [(r["project"], r["sessions"], f"{r['running']}/{r['max_concurrent']}",
                       r["merged"], r["failed"], r["abandoned"], pct(r["success_rate"]),
                       pct(r["error_rate"]), dur(r["median_seconds_to_merge"]),
                       r["fix_rounds"], r["escalations"]) for r in rows]))


def _next_startable(store: Store, project: str, sessions: list[Session]) -> list[str]:
    """Queued tasks of running plans whose dependencies are all done, critical path first
    (what the daemon starts as soon as there is room)."""
    from .. import plan as planmod
    from .. import scheduler
    from ..errors import AoError

    tasks = scheduler.by_task(sessions)
    closed = store.closed_tasks(project)
    out: list[str] = []
    for run in store.plan_runs(project):
        try:
            p = planmod.load_valid(Path(run["plan"]))
        except AoError:
            continue
        out += scheduler.ready(p, tasks, closed)
    return out


def agents_(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The agent profiles, whether each CLI is installed, and its version against the range
    its profile was measured with (docs/agents.md)."""
    rows = []
    for name in agents.names():
        p = agents.get(name)
        installed = p.installed()
        version = p.version() if installed and p.binary else None
        rows.append({"name": name, "binary": p.binary or "-", "installed": installed,
                     "version": version, "measured": "-".join(dict.fromkeys(p.measured))
                     if p.measured else None, "version_ok": p.version_ok(version),
                     "description": p.description})
    if json_out:
        emit_json(rows)
        return
    typer.echo(table(["agent", "binary", "installed", "version", "measured", "description"],
                     [(r["name"], r["binary"], "yes" if r["installed"] else "no",
                       r["version"] or "-", r["measured"] or "-", r["description"])
                      for r in rows]))
    for r in rows:
        if r["version_ok"] is False:
            typer.echo(f"warning: {r['binary']} {r['version']} is outside the versions the "
                       f"{r['name']} profile was measured with ({r['measured']}); screens and "
                       "keys may differ", err=True)


def hook(
    agent: str = typer.Argument(..., help="The agent calling (claude-code)."),
    event: str = typer.Argument(..., help="The hook event (Stop, UserPromptSubmit, ...)."),
) -> None:
    """Called by an agent's own hooks: records the event for its session."""
    try:
        raw = "" if sys.stdin.isatty() else sys.stdin.read()
        agent_hooks.record(agent, event, raw)
    except Exception as e:  # a hook must never break the agent it runs in; it is kept, though
        sys.stderr.write(f"ao hook: {e}\n")
        import traceback

        with contextlib.suppress(OSError), (paths.logs_dir() / "hooks.log").open(
                "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {agent} {event}: "
                     f"{traceback.format_exc()}\n")



