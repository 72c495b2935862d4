"""Build the services a command needs, once per process."""

from __future__ import annotations

import functools
import sys
import time
from typing import Any

from ao import config
from ao.errors import AoError
from ao.record.store import Session, Store
from ao.services import views
from ao.services.ending import started_elsewhere
from ao.services.fleet import Fleet
from ao.services.messaging import Messenger

SESSION_HELP = "Session id (wor-1), task key (AUTH-001) or project/KEY."


@functools.cache
def cfg() -> config.Config:
    return config.load()


@functools.cache
def store() -> Store:
    s = Store()
    _repair(s)
    return s


def _repair(s: Store) -> None:
    """Repair on open: a start or a delivery whose process died is finished, undone or
    escalated by whichever `ao` command looks next, not only by a daemon restart."""
    from ao.record.state import State

    dead = [x for x in s.sessions(states={State.SPAWNING}) if not started_elsewhere(x)]
    if not dead and not s.sending():
        return
    f = Fleet(cfg(), s)
    try:
        f.recover()
        Messenger(f).recover()
    except AoError as e:
        sys.stderr.write(f"ao: could not repair an interrupted step: {e}\n")


@functools.cache
def fleet() -> Fleet:
    return Fleet(cfg(), store())


def session(ref: str) -> Session:
    """The session a command names: by id, task key, or project/KEY."""
    return store().find_session(ref)


def age(ts: float | None) -> str:
    return views.duration(time.time() - ts) if ts else "-"


def wait_context(project: str) -> Any:
    """waiting.Context of a project (a default one for a project no longer configured)."""
    from ao.services import views

    return views.wait_context(store(), cfg().projects.get(project))
