"""Waiting for a started agent: ready by its screen (its profile's reading, or a configured
pattern), or at least alive, with the reason it is not (its last lines) when it is neither."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ao.errors import ExternalError
from ao.world import tmux

if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    from libtmux import Server

    from ao.world.agents import LaunchContext, Profile


def await_ready(srv: Server, sid: str, profile: Profile, ctx: LaunchContext) -> None:
    """Until the agent's screen says it is ready (its profile's reading, or the project's
    `ready_pattern`); an agent that died or never got there is an error naming why."""
    if ctx.ready_pattern:
        pattern = re.compile(ctx.ready_pattern, re.M)
        screen = tmux.wait_screen(srv, sid, lambda sc: bool(pattern.search(sc)),
                                  profile.ready_timeout)
    elif profile.ready_when_alive_after:
        # a plain command may draw nothing until it gets input: alive after a settle time
        # is ready (one that dies at once is caught below)
        tmux.wait_screen(srv, sid, lambda _s: False, profile.ready_when_alive_after)
        p = tmux.pane(srv, sid)
        screen = tmux.capture(srv, sid) if p is not None and not p.dead else None
    else:
        screen = tmux.wait_screen(srv, sid, profile.is_ready, profile.ready_timeout)
    if screen is None:
        p = tmux.pane(srv, sid)
        last = tmux.capture(srv, sid).strip().splitlines()[-3:]
        if p is None or p.dead:
            raise ExternalError(
                f"agent {profile.name} exited (status {p.exit_status if p else '?'}) before "
                f"it was ready: {' | '.join(last) or 'no output'}",
                "check the agent's command and that it runs in this worktree")
        raise ExternalError(f"agent {profile.name} was not ready after "
                            f"{profile.ready_timeout:g}s: {' | '.join(last)}",
                            "a first-run dialog may be waiting; attach to see it")

def await_alive(srv: Server, sid: str) -> None:
    """A command agent that cannot start (not found, bad flags) dies within moments."""
    # a command that cannot start (not found, bad flags) dies within moments
    tmux.wait_screen(srv, sid, lambda _s: False, 0.5)
    p = tmux.pane(srv, sid)
    if p is None or (p.dead and p.exit_status not in (0, None)):
        last = tmux.capture(srv, sid).strip().splitlines()[-3:]
        raise ExternalError(f"agent command exited at once (status "
                            f"{p.exit_status if p else '?'}): {' | '.join(last)}",
                            "check the command template in the project's config")
