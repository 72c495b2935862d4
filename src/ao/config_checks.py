"""Reading one key of a config mapping: its type checked, an unknown key named with the nearest
valid one, and every error naming the file the value came from (`Merged.source_of`)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ao import paths
from ao.errors import ConfigError

if TYPE_CHECKING:
    from ao.config_files import Merged


def check_keys(raw: Mapping[str, Any], allowed: tuple[str, ...], where: str, m: Merged) -> None:
    for key in raw:
        if key not in allowed:
            dotted = f"{where}.{key}" if where else str(key)
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean `{near[0]}`?" if near else f"valid keys: {', '.join(allowed)}"
            raise ConfigError(f"{paths.display(m.source_of(dotted))}: unknown key `{dotted}`", hint)


def refused(m: Merged, where: str, why: str, hint: str = "see docs/configuration.md"
            ) -> ConfigError:
    """The error for the value at `where`: the file it came from, the dotted key, why."""
    return ConfigError(f"{paths.display(m.source_of(where))}: `{where}` {why}", hint)


def mapping(value: Any, where: str, m: Merged) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise refused(m, where, "must be a mapping")
    return value


def checked(value: Any, where: str, keys: tuple[str, ...], m: Merged) -> Mapping[str, Any]:
    """A mapping (or nothing, read as empty) whose keys are all known ones."""
    raw = mapping(value, where, m)
    check_keys(raw, keys, where, m)
    return raw


def optional(raw: Mapping[str, Any], key: str, kind: Any, where: str, m: Merged) -> Any:
    """`raw[key]` when set, of type `kind`; None when not set."""
    value = raw.get(key)
    if value is not None:
        typed(value, kind, f"{where}.{key}", m)
    return value


def typed(value: Any, kind: type | tuple[type, ...], where: str, m: Merged) -> Any:
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is int)
    if not ok:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise refused(m, where, f"must be {names}, got {value!r}")
    return value


def str_list(value: Any, where: str, m: Merged) -> tuple[str, ...]:
    if value is None:
        return ()
    items = typed(value, list, where, m)
    return tuple(str(typed(v, str, where, m)) for v in items)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object, where: str = "duration") -> float:
    """Seconds from `30s`, `5m`, `2h`, `7d`, `250ms` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration, got {value!r}", "write e.g. 30s, 5m, 2h")
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ConfigError(f"{where}: {value!r} is not a duration", "write e.g. 30s, 5m, 2h, 7d")
    return float(m.group(1)) * _UNITS[m.group(2)]
