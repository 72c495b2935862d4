"""Agent profiles by name, from the `ao.agents` entry point group (built-ins included)."""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ao.errors import BadInput
from ao.world.agents.base import LaunchContext, Profile

if TYPE_CHECKING:
    from ao.config import AgentSpec

__all__ = ["LaunchContext", "Profile", "get", "names"]


@functools.cache
def _registry() -> dict[str, type[Profile]]:
    """Read once per process: scanning entry points costs milliseconds, and grows with every
    installed package (`reload()` reads them again)."""
    found: dict[str, type[Profile]] = {}
    for ep in entry_points(group="ao.agents"):
        try:
            cls = ep.load()
        except ImportError as e:  # an install older than its code (the modules moved)
            raise BadInput(f"agent {ep.name!r} cannot be loaded from {ep.value}: {e}",
                           "reinstall ao (`pip install -e .` in its checkout)") from None
        if isinstance(cls, type) and issubclass(cls, Profile):
            found[ep.name] = cls
    return found


def reload() -> None:
    _registry.cache_clear()


def names() -> list[str]:
    return sorted(_registry())


def get(spec: AgentSpec | str) -> Profile:
    # a spec's name is "command" when only a command was given; a named profile with a
    # command too (the command a `command` fallback would run) stays that profile
    name = spec if isinstance(spec, str) else spec.name
    registry = _registry()
    if name not in registry:
        raise BadInput(f"unknown agent {name!r}; agents: {', '.join(sorted(registry))}",
                       'or set agent: {command: "..."} for any command line')
    return registry[name]()
