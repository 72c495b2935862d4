"""Where sessions run: this machine and SSH hosts (docs/hosts.md). The first layer of
`Fleet`: each session's tmux server, placement, and a host's reachability."""

from __future__ import annotations

import functools
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ao.decide import placement
from ao.errors import ExternalError
from ao.host_config import LOCAL, Host
from ao.record.events import Event, emit
from ao.record.rows import Session
from ao.record.state import RUNNING
from ao.services import hostwork
from ao.world import hosts as hostsmod
from ao.world import memory, tmux

if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    from libtmux import Server

    from ao.config import Config, ProjectConfig
    from ao.record.store import Store
    from ao.world.agents import Profile



LATE_KEPT = 60.0  # seconds a late poll's answer waits for the look it belongs to


class Machines:
    """The machines a fleet's sessions run on: each session's tmux server (here, or its SSH
    host's), placement over a project's hosts, and each host's reachability."""

    def __init__(self, cfg: Config, store: Store, srv: Server | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.srv = srv or tmux.server(cfg.tmux_socket)
        self._servers: dict[str, Server] = {}  # SSH hosts' tmux servers, made on first use
        # during a batch spawn: the hosts that answered since it began (asked no more in it)
        self._batch_up: set[str] | None = None
        # hosts being asked in the background (ask_ahead), and since when
        self._ahead: tuple[Future[dict[str, object]], float] | None = None
        # hosts whose poll outlasted a tick's wait and is still going (observing.py): not
        # answering now, so nothing is placed there meanwhile
        self._late: dict[tuple[str, frozenset[str]], tuple[Future[Any], float]] = {}

    def host(self, name: str) -> Host:
        h = self.cfg.hosts.get(name)
        if h is None:
            raise ExternalError(f"host {name} is no longer under `hosts:` in the config",
                                "add it back to reach its sessions")
        return h

    def server(self, s: Session | str) -> Server:
        """The tmux server the session's agent runs on (here, or its host's)."""
        return self.host_server(s.host if isinstance(s, Session) else self.store.session(s).host)

    def host_server(self, name: str) -> Server:
        if name == LOCAL:
            return self.srv
        if name not in self._servers:
            h = self.host(name)
            self._servers[name] = tmux.host_server(h, self.cfg.tmux_socket,
                                                       str(hostwork.tmux_conf(h)))
        return self._servers[name]

    def place(self, project: ProjectConfig, profile: Profile) -> tuple[str | None, str]:
        """The host a new session of the project goes to (placement.py), or None and why
        not. A host in its unreachable backoff has no room; one with a memory floor is asked
        for its free memory."""
        here = self.host(LOCAL)
        live = self.store.sessions(states=set(RUNNING))
        starting = _starting(live, profile.name)
        if project.hosts == (LOCAL,) and here.max_sessions is None:
            # the project's max_concurrent, and this machine's memory (memory.py)
            short = memory.room(profile.name, here.min_free_mb, starting)
            return (None, short) if short else (LOCAL, "")
        running: dict[str, int] = {}
        for x in live:
            running[x.host] = running.get(x.host, 0) + 1
        rooms = [self._room(self.host(name), running.get(name, 0), profile.name, starting)
                 for name in project.hosts if name == LOCAL or profile.on_hosts]
        if not rooms:
            return None, f"agent {profile.name} runs on this machine only, and the project " \
                "does not list `local` under its hosts"
        choice = placement.choose(rooms)
        while choice is not None and not self.reachable(choice):
            # asked first (one quick round trip): a silent host would hold the start for as
            # long as ssh waits on it, then fail it
            rooms = [replace(r, reachable=False) if r.host == choice else r for r in rooms]
            choice = placement.choose(rooms)
        return choice, "" if choice else placement.why_full(rooms)

    def _room(self, h: Host, running: int, agent: str, starting: int) -> placement.Room:
        """A machine's room for one more session: a host in its backoff has none; one with a
        memory floor is asked for its free memory; this machine reads its own (memory.py),
        and keeps its floor free after the agent's measured size."""
        now = time.time()
        reachable, free = h.local or hostsmod.due(h.name, now), None
        if h.local:
            free, floor, needs = memory.here(agent, h.min_free_mb, starting)
            return placement.Room(h.name, running, h.max_sessions, True, free, floor, needs)
        needs = memory.estimates().get(agent, 0)
        if reachable and h.min_free_mb is not None:
            pr = self.probe([h])[0]
            reachable, free = pr.reachable, pr.mem_available_mb
        return placement.Room(h.name, running, h.max_sessions, reachable, free, h.min_free_mb,
                              needs)

    def probe(self, machines: list[Host], binaries: tuple[str, ...] = ()
              ) -> list[hostsmod.Probe]:
        """Each machine probed (hosts.probe: reachability, load, memory, the binaries), side
        by side, and what was learnt recorded for everything else: a host that answers ends
        its backoff at once, one that does not is recorded down."""
        now = time.time()
        answers = hostsmod.side_by_side({h.name: functools.partial(hostsmod.probe, h, binaries)
                                         for h in machines})
        out = []
        for h in machines:
            pr = answers[h.name]
            if isinstance(pr, Exception):
                raise pr
            if not h.local and pr.reachable:
                self.host_up(h)
            elif not h.local:
                self.host_down(h, pr.error, now)
            out.append(pr)
        return out

    def slow(self, name: str) -> bool:
        """Whether a poll of the host outlasted a tick's wait and has not ended yet, or ended
        without an answer (recorded down now: no later look may come to read it, when the
        host has no live session left). An answer is left to the look it belongs to; one
        nobody came for in LATE_KEPT is dropped."""
        slow = False
        for key, (fut, since) in list(self._late.items()):
            if key[0] != name:
                continue
            if not fut.done():
                slow = True
                continue
            answer = fut.result()
            if isinstance(answer, hostsmod.Unreachable):
                del self._late[key]
                self.host_down(self.host(name), answer.message)
                slow = True
            elif time.monotonic() - since > LATE_KEPT:
                del self._late[key]
        return slow

    def reachable(self, name: str) -> bool:
        """Whether the machine answers now (this one always does); a host in its backoff is
        not asked, nor one that answered since the batch spawn under way began."""
        if name == LOCAL:
            return True
        if self.slow(name):
            return False
        self._heard_ahead()
        if self._batch_up is not None and name in self._batch_up:
            return True
        return name in self.answering([name])

    def answering(self, names: list[str]) -> set[str]:
        """The hosts among `names` that answer now, asked side by side (a host in its
        backoff is not asked); each recorded up or down."""
        now = time.time()
        return self._record(self._ask(names, now), now)

    def ask_ahead(self, names: list[str]) -> None:
        """`answering(names)` begun in the background: a batch's first starts here go on
        while its hosts connect; the first placement on one of them waits for the answers
        (recorded then, on the caller's thread: the store is its own)."""
        now = time.time()
        pool = ThreadPoolExecutor(1, thread_name_prefix="ao-ask")
        self._ahead = (pool.submit(self._ask, names, now), now)
        pool.shutdown(wait=False)

    def _heard_ahead(self) -> None:
        """The answers `ask_ahead` was waiting for, recorded (once)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            self._record(ahead[0].result(), ahead[1])

    def _ask(self, names: list[str], now: float) -> dict[str, object]:
        asked = [n for n in names if n in self.cfg.hosts and hostsmod.due(n, now)]
        return hostsmod.side_by_side({n: functools.partial(
            hostsmod.run, self.host(n), ["true"],
            timeout=hostsmod.question_timeout(self.host(n)), silence_is_down=True)
            for n in asked})

    def _record(self, answers: dict[str, object], now: float) -> set[str]:
        up = set()
        for n, answer in answers.items():
            if isinstance(answer, ExternalError):  # `true` failing any way: not usable now
                self.host_down(self.host(n), answer.message, now)
            elif isinstance(answer, Exception):
                raise answer
            else:
                self.host_up(self.host(n))
                up.add(n)
        if self._batch_up is not None:
            self._batch_up |= up
        return up

    def host_down(self, h: Host, error: str, now: float | None = None) -> None:
        """Recorded down; its backoff counts from now, after the failed call (which may have
        taken its whole timeout), not from when the call began."""
        if hostsmod.mark_down(h.name, error, time.time()):
            from ao.services.notify import Notifier

            event = emit(Event("host.unreachable", data={"host": h.name, "error": error}),
                         self.store)
            Notifier(self.cfg, self.store).notify(
                event, f"host {h.name} is unreachable",
                f"{error}; its sessions wait, and nothing new is placed there")
        self._servers.pop(h.name, None)

    def host_up(self, h: Host) -> None:
        was = hostsmod.mark_up(h.name)
        if was is not None:
            emit(Event("host.reachable", data={"host": h.name,
                                               "down_for": round(time.time() - was["since"])}),
                 self.store)


def _starting(live: list[Session], agent: str) -> int:
    """This machine's sessions of `agent` started in the last memory.GROWING seconds."""
    since = time.time() - memory.GROWING
    return sum(1 for x in live if x.host == LOCAL and x.agent == agent and x.created_at >= since)
