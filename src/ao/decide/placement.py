"""Where a new session runs (docs/hosts.md): a pure decision over the project's hosts.

A host has room when it answers, holds fewer sessions than its `max_sessions`, and (when it
has a `min_free_mb` floor; this machine always has one, memory.py) keeps that much memory free
after the agent's measured size. Among hosts with room the
least full is chosen (running / max_sessions; `local` first on a tie), so work spreads over
the pool instead of filling the first host; a host without `max_sessions` counts as empty.
No host with room: the task waits in the queue.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Room:
    host: str
    running: int
    max_sessions: int | None  # None: no limit of its own (the project's max_concurrent holds)
    reachable: bool = True
    free_mb: int | None = None  # read from the host when it has a floor
    floor_mb: int | None = None
    needs_mb: int = 0  # the agent's measured size (memory.py), 0 before it was measured

    @property
    def free(self) -> bool:
        if not self.reachable:
            return False
        if self.max_sessions is not None and self.running >= self.max_sessions:
            return False
        return not self.short_of_memory

    @property
    def short_of_memory(self) -> bool:
        return self.floor_mb is not None and self.free_mb is not None and \
            self.free_mb - self.needs_mb < self.floor_mb

    @property
    def load(self) -> float:
        """How full it is, 0 to 1 (a host without a limit counts as empty)."""
        return self.running / self.max_sessions if self.max_sessions else 0.0


def choose(rooms: list[Room]) -> str | None:
    """The host a new session goes to, or None when the pool is full."""
    free = [r for r in rooms if r.free]
    if not free:
        return None
    return min(free, key=lambda r: (r.load, r.host != "local", r.host)).host


def why_full(rooms: list[Room]) -> str:
    parts = []
    for r in rooms:
        if not r.reachable:
            parts.append(f"{r.host} unreachable")
        elif r.max_sessions is not None and r.running >= r.max_sessions:
            parts.append(f"{r.host} full ({r.running}/{r.max_sessions})")
        elif r.short_of_memory:
            needs = f", the agent takes about {r.needs_mb} MB" if r.needs_mb else ""
            parts.append(f"{r.host} low on memory ({r.free_mb} MB free{needs}, "
                         f"{r.floor_mb} MB kept free)")
    return "no host has room: " + ", ".join(parts)
