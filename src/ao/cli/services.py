"""Build the services a command needs, once per process."""

from __future__ import annotations

import functools
import time

from .. import config
from ..fleet import Fleet
from ..store import Session, Store

SESSION_HELP = "Session id (wor-1), task key (AUTH-001) or project/KEY."


@functools.cache
def cfg() -> config.Config:
    return config.load()


@functools.cache
def store() -> Store:
    return Store()


@functools.cache
def fleet() -> Fleet:
    return Fleet(cfg(), store())


def session(ref: str) -> Session:
    """The session a command names: by id, task key, or project/KEY."""
    return store().find_session(ref)


def age(ts: float | None) -> str:
    if not ts:
        return "-"
    s = max(0, int(time.time() - ts))
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s // n}{unit}"
    return f"{s}s"
