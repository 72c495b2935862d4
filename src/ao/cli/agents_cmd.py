"""`ao agents` (the agent CLIs here, and the versions measured) and the agents' `ao hook`."""

from __future__ import annotations

import contextlib
import os
import sys
import time

import typer

from ao import paths
from ao.cli.output import emit_json, table
from ao.errors import AoError
from ao.record.store import Store
from ao.world import agent_hooks, agents
from ao.world.agent_hooks import HOOK_MAX_PAYLOAD


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
        _record(agent, event, raw)
    except Exception as e:  # a hook must never break the agent it runs in; it is kept, though
        sys.stderr.write(f"ao hook: {e}\n")
        import traceback

        with contextlib.suppress(OSError), (paths.logs_dir() / "hooks.log").open(
                "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {agent} {event}: "
                     f"{traceback.format_exc()}\n")


def _record(agent: str, event: str, raw: str) -> bool:
    """`ao hook AGENT EVENT` (hooks installed by an earlier ao): the same line, written and
    read at once. False (and nothing recorded) outside an ao session."""
    sid = os.environ.get("AO_SESSION")
    if not sid:
        return False
    store = Store()
    try:
        s = store.session(sid)
    except AoError:
        return False
    body = raw.replace("\n", "").replace("\r", "")[:HOOK_MAX_PAYLOAD] or "{}"
    line = f"{event}\t{time.time():.6f}\t{body}\n".encode()
    fd = os.open(agent_hooks.local_file(s), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)  # one write: lines of concurrent hooks never interleave
    finally:
        os.close(fd)
    agent_hooks.ingest_local(store, s)
    return True
