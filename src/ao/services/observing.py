"""Observing sessions: one look per machine per poll (panes, the screens that moved, new
hook lines), and the activity each session's agent shows. The second layer of `Fleet`."""

from __future__ import annotations

import functools
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime
from typing import TYPE_CHECKING

from ao.decide import activity, limits
from ao.errors import AoError
from ao.host_config import LOCAL
from ao.record.state import Activity
from ao.services import hostwork
from ao.services.machines import Machines
from ao.world import agent_hooks, agents, tmux
from ao.world import hosts as hostsmod
from ao.world.agent_hooks import HOOK_FILE

if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    from libtmux import Server

    from ao.config import Config
    from ao.record.store import Session, Store
    from ao.world.agents import Profile

# how long a command's look (`ao session ls`) waits for a host: a live host answers a poll
# in milliseconds; one the daemon has recorded down is not waited for at all
LOOK_PATIENCE = 2.0
# the daemon's: a host that has not answered its poll in POLL_DEADLINE seconds is down (its
# sessions unreachable); one already down is probed with RETRY_DEADLINE. The tick itself
# waits TICK_WAIT at most: a host slower than that is read at a later tick, when its poll has
# ended, and the other hosts' sessions are observed, merged and started meanwhile (a silent
# host cost every tick 15 s, and each retry 18-20 s)
POLL_DEADLINE = 5.0
RETRY_DEADLINE = 2.0
TICK_WAIT = 1.0

# a host's poll: its panes' lines (None: no tmux server there), new hook bytes per session,
# and the offset in each session's hook file the bytes start at
_Answer = tuple[list[str] | None, dict[str, bytes], dict[str, int]]


class Late(Exception):
    """The host's poll has not ended within the tick's wait: nothing new is known of it."""


class Observing(Machines):
    """What each session's agent is doing, from its pane, its screen and its hooks."""

    def __init__(self, cfg: Config, store: Store, srv: Server | None = None) -> None:
        super().__init__(cfg, store, srv)
        # per session: (pane output time, capture time, screen hash, what the screen shows)
        self._screens: dict[str, tuple[int, float, str, Activity | None, float | None,
                                       bool]] = {}
        self._polls: ThreadPoolExecutor | None = None

    def observe(self, s: Session) -> Activity:
        """Look at one session's pane and record what it shows (hooks first, then screen); a
        host that does not answer in LOOK_PATIENCE (or is recorded down) shows it unreachable
        (`ao send` queued after 18 s on a silent host)."""
        return self.observe_all([s], patience=LOOK_PATIENCE)[s.id]

    def observe_all(self, sessions: list[Session], now: float | None = None,
                    patience: float | None = None) -> dict[str, Activity]:
        """Observe many sessions for the price of one: one `list-panes -a` for liveness and
        last output, a `capture-pane` only for a pane whose output moved since this process
        last looked, and one transaction for the rows whose observations changed. That is
        per machine: one `list-panes` per host with sessions, over its open connection, the
        hosts asked side by side. A host that does not answer leaves its sessions
        `unreachable` (not exited: nothing is known of them) and is asked again after its
        backoff. With `patience` (a command's look, not the daemon's poll) a host is waited
        for that long at most, and one that does not answer in it is not recorded down."""
        now = time.time() if now is None else now
        states, down, fresh = self._look_machines(sessions, now, patience)
        changes: dict[str, dict[str, object]] = {}
        out: dict[str, Activity] = {}
        for s in (fresh.get(x.id, x) for x in sessions):
            if s.host in down and down[s.host] is Late:  # as last seen, till its poll ends
                out[s.id] = Activity(s.activity) if s.activity else Activity.UNREACHABLE
                continue
            out[s.id], new = self._observe_one(s, states.get(s.id), s.host in down, now)
            diff = {k: v for k, v in new.items() if getattr(s, k) != v}
            if diff:
                changes[s.id] = {**diff, "activity_at": now, "runtime_seen_at": now}
        self.store.update_many(changes)
        return out

    def _look_machines(self, sessions: list[Session], now: float, patience: float | None
                       ) -> tuple[dict[str, tmux.PaneState], dict[str, type[Exception]],
                                  dict[str, Session]]:
        """Each machine with sessions asked once: the panes seen, the machines that did not
        answer (Late: not yet), and the sessions as their new hook lines left them."""
        states: dict[str, tmux.PaneState] = {}
        down: dict[str, type[Exception]] = {}
        fresh: dict[str, Session] = {}
        names = sorted({s.host for s in sessions})
        answers = self._ask_hosts({n: [s for s in sessions if s.host == n]
                                   for n in names if n != LOCAL}, now, patience)
        for name in names:
            here = [s for s in sessions if s.host == name]
            if name == LOCAL:
                states.update(self._poll_here(here, fresh))
                continue
            if isinstance(answers[name], Late):
                down[name] = Late
                continue
            seen = self._host_seen(name, here, answers[name], fresh, now, patience is None)
            if seen is None:
                down[name] = hostsmod.Unreachable
            else:
                states.update(seen)
        return states, down, fresh

    def _host_seen(self, name: str, here: list[Session], answer: _Answer | Exception,
                   fresh: dict[str, Session], now: float, record: bool
                   ) -> dict[str, tmux.PaneState] | None:
        """A host's panes as its poll answered; None when they cannot be known (the host did
        not answer, which the daemon's poll (`record`) records; or it left the config)."""
        try:
            return self._answered(name, here, answer, fresh)
        except hostsmod.Unreachable as e:
            if record and hostsmod.due(name, now):
                self.host_down(self.host(name), e.message, now)
        except AoError:  # a host taken out of the config: its sessions cannot be seen
            pass
        return None

    def _ask_hosts(self, remote: dict[str, list[Session]], now: float,
                   patience: float | None) -> dict[str, _Answer | Exception]:
        """Each host's poll (hostwork.poll), side by side. A command's look (`patience`)
        waits that long at most and skips a host the daemon has recorded down until its
        retry; the daemon's tick waits TICK_WAIT at most, and a poll still going then is
        read at a later tick (Late meanwhile)."""
        def ask(name: str, here: list[Session], deadline: float) -> _Answer:
            h = self.host(name)
            reads = [(s.id, hostwork.place(h, s.project, s.id).session_dir / HOOK_FILE,
                      s.hooks_read) for s in here if agents.get(s.agent or "command").uses_hooks]
            lines, chunks = hostwork.poll(h, self.cfg.tmux_socket, reads, timeout=deadline)
            return lines, chunks, {sid: offset for sid, _, offset in reads}

        out: dict[str, _Answer | Exception] = {}
        asked: dict[str, list[Session]] = {}
        for name, here in remote.items():
            if not hostsmod.due(name, now) and (name, _ids(here)) not in self._late:
                out[name] = hostsmod.Unreachable(f"host {name} is in its retry backoff", "")
            else:
                asked[name] = here
        if patience is not None:
            out.update(hostsmod.side_by_side({name: functools.partial(ask, name, here, patience)
                                              for name, here in asked.items()},
                                             within=patience))
            return out
        if self._polls is None:
            self._polls = ThreadPoolExecutor(8, thread_name_prefix="ao-host-poll")
        for name in {key[0] for key in self._late}:
            self.slow(name)  # a poll that ended unanswered is recorded; one left long, dropped
        going: dict[str, Future[_Answer | Exception]] = {}
        for name, here in asked.items():
            # short, so a silent host is soon known down; shorter still for a host already
            # down (its retry is a probe: an answer in time means it is back)
            deadline = RETRY_DEADLINE if hostsmod.down(name) else POLL_DEADLINE
            # a poll still going is this look's own (the same host and sessions: another
            # project's look never takes its answer); one of a set since changed is left
            late = self._late.pop((name, _ids(here)), None)
            going[name] = late[0] if late is not None else self._polls.submit(
                hostsmod.outcome, functools.partial(ask, name, here, deadline))
        wait(going.values(), timeout=TICK_WAIT)
        for name, fut in going.items():
            if fut.done():
                out[name] = fut.result()
            else:
                self._late[(name, _ids(remote[name]))] = (fut, time.monotonic())
                out[name] = Late(name)
        return out

    def _observe_one(self, s: Session, p: tmux.PaneState | None, away: bool,
                     now: float) -> tuple[Activity, dict[str, object]]:
        """What the session's agent is doing, and the observation columns that say so."""
        if away:
            return Activity.UNREACHABLE, {"activity": Activity.UNREACHABLE.value}
        if p is None or p.dead:
            return Activity.EXITED, {"activity": Activity.EXITED.value, "pane_alive": 0,
                                     "exit_status": p.exit_status if p else None}
        profile = agents.get(s.agent or "command")
        digest, seen, until, settled = self._screen(s, p, profile)
        seen = profile.title_activity(p.title) or seen
        changed_at = s.screen_changed_at if digest == s.screen_hash and \
            s.screen_changed_at else now
        hook = s.hook_activity
        doing = activity.infer(seen, hook, s.hook_at, profile.uses_hooks, changed_at, now,
                               settled)
        new: dict[str, object] = {"activity": doing.value, "screen_hash": digest,
                                  "screen_changed_at": changed_at, "pane_alive": 1,
                                  "exit_status": None}
        if until is not None and until > now and \
                limits.believable(until, now, s.limited_until):
            # the usage limit outranks everything: the agent can do nothing till then
            new.update(activity=Activity.LIMITED.value, limited_until=until)
            return Activity.LIMITED, new
        if s.activity is Activity.LIMITED and (s.limited_until or 0) > now and \
                doing is Activity.ACTIVE:
            new["limited_until"] = None  # working again, its limit line gone: over early
        return doing, new

    def _poll_here(self, sessions: list[Session],
                   fresh: dict[str, Session]) -> dict[str, tmux.PaneState]:
        """This machine's panes (`list-panes`), and its sessions' new hook lines."""
        for s in sessions:
            if agents.get(s.agent or "command").uses_hooks:
                fresh[s.id] = agent_hooks.ingest_local(self.store, s)
        return tmux.panes(self.srv)

    def _answered(self, name: str, sessions: list[Session], answer: _Answer | Exception,
                  fresh: dict[str, Session]) -> dict[str, tmux.PaneState]:
        """A host's poll as it answered: its panes, and its sessions' new hook lines
        recorded; the poll's error raised."""
        if isinstance(answer, Exception):
            raise answer
        lines, chunks, offsets = answer
        self.host_up(self.host(name))
        for s in sessions:
            if s.id in chunks:  # from where the poll read (a late answer: a tick ago)
                fresh[s.id] = agent_hooks.ingest(self.store, s, chunks[s.id],
                                                 offsets.get(s.id, s.hooks_read))
        return tmux.parse_panes(lines) if lines is not None else {}

    def read_hooks(self, s: Session) -> Session:
        """The session's new hook lines recorded now (`ao send` waits on them)."""
        s = self.store.session(s.id)
        if s.host == LOCAL:
            return agent_hooks.ingest_local(self.store, s)
        h = self.host(s.host)
        path = hostwork.place(h, s.project, s.id).session_dir / HOOK_FILE
        return agent_hooks.ingest(self.store, s, hostwork.read_from(h, path, s.hooks_read),
                                  s.hooks_read)

    def hook_seen(self, s: Session, event: str, after_id: int) -> bool:
        """The agent's hook reported `event` after the event id `after_id`."""
        self.read_hooks(s)
        return self.store.hook_seen(s.id, event, after_id)

    def _screen(self, s: Session, p: tmux.PaneState, profile: Profile
                ) -> tuple[str, Activity | None, float | None, bool]:
        """The screen's hash, what the profile reads on it and when a usage limit shown on
        it resets; captured again only when the pane printed something since the last
        capture (tmux keeps output times in seconds, so output in the second of the capture
        counts as new)."""
        cached = self._screens.get(s.id)
        if cached is not None and cached[0] == p.activity and p.activity < cached[1] - 1:
            return cached[2], cached[3], cached[4], cached[5]
        taken = time.time()
        screen = tmux.capture(self.server(s), s.id)
        seen = profile.activity(screen)
        line = limits.limit_line("\n".join(screen.splitlines()[-40:])) \
            if profile.shows_limits else None
        until = limits.reset_at(line, datetime.now().astimezone()) if line else None
        digest = tmux.screen_hash(screen)
        settled = profile.settled(screen)
        self._screens[s.id] = (p.activity, taken, digest, seen, until, settled)
        return digest, seen, until, settled


def _ids(sessions: list[Session]) -> frozenset[str]:
    return frozenset(s.id for s in sessions)
