"""Starts that fit in memory (docs/hosts.md "Memory"): what each agent takes, measured, and
whether this machine has room for one more.

At most every `SAMPLE_EVERY` seconds the daemon measures each local session's agent: the
resident memory of its pane's whole process tree (the CLI, its node or python, the shells and
tools it runs), from one scan of /proc. The largest of an agent's last `KEPT` measurements is
its estimate, kept in AO_HOME/agent-memory.json (0600) so a restarted daemon knows it. Before
a local start, the machine must keep `floor` MB free after the agent's estimate (its
`min_free_mb` under `hosts: local:`, else `DEFAULT_FLOOR_MB`); otherwise the task waits in the
queue and says why. An agent never measured yet needs only the floor.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ao import paths

SAMPLE_EVERY = 30.0
GROWING = 60.0  # seconds a started agent counts as not grown yet
KEPT = 20
DEFAULT_FLOOR_MB = 512
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


def available_mb() -> int | None:
    """This machine's MemAvailable, in MB (None where /proc/meminfo is not there)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def tree_rss_mb(roots: dict[str, int]) -> dict[str, int]:
    """The resident memory of each root pid's process tree, in MB, from one scan of /proc
    (processes that end meanwhile are skipped)."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
            with open(f"/proc/{pid}/statm", encoding="ascii") as f:
                pages = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        # the command name (field 2) may hold spaces and parentheses: fields after its `)`
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1].isdigit():
            parent[pid] = int(fields[1])
            rss[pid] = pages * _PAGE_KB
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for name, root in roots.items():
        total, todo, seen = 0, [root], set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            total += rss.get(pid, 0)
            todo += children.get(pid, [])
        if root in rss:
            out[name] = total // 1024
    return out


def _file() -> Path:
    return paths.home() / "agent-memory.json"


def estimates() -> dict[str, int]:
    """Each agent's estimate in MB: the largest of its last measurements."""
    return {agent: max(samples) for agent, samples in _samples().items() if samples}


def _samples() -> dict[str, list[int]]:
    try:
        data = json.loads(_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): [int(x) for x in v if isinstance(x, int)][-KEPT:]
            for k, v in data.items() if isinstance(v, list)} if isinstance(data, dict) else {}


def record(by_agent: dict[str, list[int]]) -> None:
    """New measurements (MB) of each agent's sessions, kept with the last ones."""
    if not by_agent:
        return
    data = _samples()
    for agent, values in by_agent.items():
        data[agent] = (data.get(agent, []) + [v for v in values if v > 0])[-KEPT:]
    f = _file()
    tmp = f.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, f)


class Sampler:
    """The daemon's measurements, at most every SAMPLE_EVERY seconds."""

    def __init__(self, clock: object = time.monotonic) -> None:
        self.clock = clock
        self.last = float("-inf")

    def due(self) -> bool:
        now = self.clock()  # type: ignore[operator]
        if now - self.last < SAMPLE_EVERY:
            return False
        self.last = float(now)
        return True


def here(agent: str, floor_mb: int | None, starting: int = 0
         ) -> tuple[int | None, int, int]:
    """This machine's free memory (None where it cannot be read), the floor kept free, and
    what one more `agent` needs, in MB. `starting`: its sessions started a moment ago, not
    grown yet (a wave of starts would each see the same free memory): counted at the
    agent's size too."""
    floor = DEFAULT_FLOOR_MB if floor_mb is None else floor_mb
    return available_mb(), floor, estimates().get(agent, 0) * (1 + starting)


def room(agent: str, floor_mb: int | None, starting: int = 0) -> str | None:
    """Why this machine has no room for one more `agent` now, or None when it has."""
    free, floor, needs = here(agent, floor_mb, starting)
    if free is None or free - needs >= floor:
        return None  # (not Linux: nothing to go by)
    took = f"; {agent} takes about {needs // (1 + starting)} MB (measured)" if needs else ""
    return (f"this machine has {free} MB of memory free{took}, and {floor} MB are kept free "
            "(hosts: local: min_free_mb)")
