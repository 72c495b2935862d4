"""`ao logs` (a session's terminal, transcript and events) and `ao open`."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from ao import paths
from ao.cli import services
from ao.cli.output import note
from ao.cli.services import SESSION_HELP
from ao.errors import BadInput, ExternalError
from ao.host_config import LOCAL
from ao.record import events
from ao.record.state import RUNNING
from ao.record.store import Session
from ao.sanitize import clean, transcript
from ao.services import hostwork
from ao.world import hosts, tmux


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

