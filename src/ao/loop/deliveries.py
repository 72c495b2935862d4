"""Held messages delivered beside the daemon's tick: the tick hands each session with queued
messages to a bounded pool and goes on observing, merging and starting; a session whose
delivery is still going is not handed again, and the next tick hands what is left. Each worker
has its own store connection; each session's messages go in order under its own send lock
(messaging.py). 150 reminders delivered inside the tick held it for 42 s, then (side by side,
the tick waiting for them) for about a second: nothing was observed or merged meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from ao.errors import AoError
from ao.record.store import Store
from ao.services.messaging import Messenger

if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    from libtmux import Server

    from ao.config import Config
    from ao.services.fleet import Fleet

log = logging.getLogger(__name__)
WORKERS = 8  # sessions whose held messages are delivered side by side


class Deliveries:
    def __init__(self, cfg: Config, store: Store, srv: Server | None,
                 fleet_of: Callable[[Config, Store, Server | None], Fleet]) -> None:
        """`fleet_of`: a fleet for a worker thread (its own store connection), from the
        daemon that composes the services."""
        self.cfg, self.store, self.srv, self.fleet_of = cfg, store, srv, fleet_of
        self._pool: ThreadPoolExecutor | None = None
        self._going: dict[str, Future[None]] = {}
        self._local = threading.local()
        self._stores: list[Store] = []
        self._lock = threading.Lock()

    def hand(self, sids: list[str]) -> None:
        """Each session's held messages to the pool, unless its delivery is under way."""
        for sid in [s for s, f in self._going.items() if f.done()]:
            del self._going[sid]
        if not sids:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="ao-deliver")
        for sid in sids:
            if sid not in self._going:
                self._going[sid] = self._pool.submit(self._one, sid)

    def settle(self, timeout: float | None = None) -> bool:
        """Wait for the deliveries under way (the daemon's stop; a test's look); whether all
        ended in time."""
        _, left = wait(list(self._going.values()), timeout=timeout)
        return not left

    def close(self) -> None:
        """The deliveries under way finished (those not begun stay queued in the store, for
        the next daemon), the pool and its store connections closed."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self._lock:
            for s in self._stores:
                s.close()
            self._stores.clear()

    def _messenger(self) -> Messenger:
        """This worker's messenger, made again when the daemon reloaded its config."""
        if getattr(self._local, "cfg", None) is not self.cfg:
            fleet = self.fleet_of(self.cfg, Store(self.store.path), self.srv)
            with self._lock:
                self._stores.append(fleet.store)
            self._local.cfg, self._local.messenger = self.cfg, Messenger(fleet)
        messenger: Messenger = self._local.messenger
        return messenger

    def _one(self, sid: str) -> None:
        try:
            self._messenger().deliver_queued(sid)
        except AoError as e:  # one session's trouble is its own: the others go on
            log.warning("%s: delivery failed: %s", sid, e)
        except Exception:  # a worker's crash is logged, never lost in its future
            log.exception("%s: delivery crashed", sid)
