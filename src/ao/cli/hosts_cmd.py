"""`ao hosts`: the machines agents can run on (docs/hosts.md)."""

from __future__ import annotations

from typing import Any

import typer

from ao.cli import services
from ao.cli.output import emit_json, table
from ao.config import AgentSpec
from ao.errors import AoError
from ao.host_config import Host
from ao.record.state import RUNNING
from ao.world import agents, hosts

app = typer.Typer(help="The machines agents can run on: reachability, load, memory, tools.",
                  invoke_without_command=True, no_args_is_help=False)


def _agent_binaries() -> tuple[str, ...]:
    """The CLIs the configured projects' agents need."""
    out = []
    for p in services.cfg().projects.values():
        names: list[AgentSpec | str] = [p.agent]
        if p.agent.fallback:
            names.append(p.agent.fallback)
        for spec in names:
            try:
                profile = agents.get(spec)
            except AoError:  # an unknown agent is `ao config check`'s to report
                continue
            binary = profile.needs()
            if binary and binary not in out:
                out.append(binary)
    return tuple(out)


def _probes(binaries: tuple[str, ...]) -> list[tuple[Host, hosts.Probe]]:
    pool = list(services.cfg().hosts.values())
    # one round trip per host, all hosts at once; what was learnt counts everywhere (a host
    # that answers ends its backoff: its sessions are observed, its messages delivered)
    return list(zip(pool, services.fleet().probe(pool, binaries), strict=True))


@app.callback()
def ls(ctx: typer.Context,
       json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Each host with its reachability, CPUs, load, free memory and sessions."""
    if ctx.invoked_subcommand is not None:
        return
    running: dict[str, int] = {}
    for s in services.store().sessions(states=set(RUNNING)):
        running[s.host] = running.get(s.host, 0) + 1
    rows: list[dict[str, Any]] = []
    for h, p in _probes(()):
        rows.append({"host": h.name, "ssh": h.ssh, "port": h.port, "reachable": p.reachable,
                     "error": p.error or None, "cpus": p.cpus, "load": p.load,
                     "mem_available_mb": p.mem_available_mb,
                     "sessions": running.get(h.name, 0),
                     "down_since": (hosts.down(h.name) or {}).get("since"),
                     "max_sessions": h.max_sessions, "round_trip_ms": round(p.seconds * 1000)})
    if json_out:
        emit_json(rows)
        return
    typer.echo(table(["host", "ssh", "reachable", "cpus", "load", "free mem", "sessions",
                      "round trip"],
                     [(r["host"], r["ssh"] or "-", "yes" if r["reachable"] else
                       f"no: {r['error']}", r["cpus"] or "-", r["load"] if r["load"] is not None
                       else "-", f"{r['mem_available_mb']} MB" if r["mem_available_mb"]
                       is not None else "-", r["sessions"], f"{r['round_trip_ms']} ms")
                      for r in rows]))


@app.command("check")
def check(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Verify ssh, tmux, git and the projects' agent CLIs on every host; exit 1 if any is
    missing."""
    binaries = _agent_binaries()
    rows: list[dict[str, Any]] = []
    for h, p in _probes(binaries):
        if not p.reachable:
            rows.append({"host": h.name, "check": "ssh", "ok": False, "detail": p.error})
            continue
        rows.append({"host": h.name, "check": "ssh", "ok": True,
                     "detail": "this machine" if h.local else f"{p.seconds * 1000:.0f} ms"})
        for tool in ("tmux", "git", *binaries):
            version = p.tools.get(tool, "")
            rows.append({"host": h.name, "check": tool, "ok": bool(version),
                         "detail": version if version not in ("", "yes") else
                         ("installed" if version else "not found on PATH")})
        # an agent's commits there need a git identity, or they fail (and the branch is
        # pushed without them)
        who = p.tools.get("git-identity", "")
        rows.append({"host": h.name, "check": "git identity", "ok": bool(who),
                     "detail": who or "no user.email: `git config --global user.email ...` "
                     "there"})
    failed = [r for r in rows if not r["ok"]]
    if json_out:
        emit_json(rows)
    else:
        typer.echo(table(["host", "check", "ok", "detail"],
                         [(r["host"], r["check"], "yes" if r["ok"] else "NO", r["detail"])
                          for r in rows]))
    if failed:
        raise typer.Exit(1)
