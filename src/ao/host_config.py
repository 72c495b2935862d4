"""The machines agents can run on, as the config says them (`hosts:`, docs/hosts.md): each
host's settings, checked. The base layer: the config reads them, world/hosts.py reaches them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ao.errors import BadInput

LOCAL = "local"
HOST_KEYS = ("ssh", "port", "identity", "max_sessions", "min_free_mb", "workdir", "env",
             "ssh_options")


@dataclass(frozen=True)
class Host:
    name: str
    ssh: str | None = None  # user@host; None: this machine
    port: int | None = None
    identity: Path | None = None
    max_sessions: int | None = None
    min_free_mb: int | None = None  # place nothing here while less memory than this is free
    workdir: str = ".agent-orchestrator"  # on the host; relative paths are under its $HOME
    env: tuple[tuple[str, str], ...] = ()
    options: tuple[str, ...] = ()  # more `-o` options for ssh (known hosts files and the like)

    @property
    def local(self) -> bool:
        return self.ssh is None


def parse(raw: Any, where: str = "config") -> dict[str, Host]:
    """`hosts:` from the config. `local` is always there (and may only set max_sessions and
    min_free_mb)."""
    hosts = {LOCAL: Host(LOCAL)}
    if raw is None:
        return hosts
    if not isinstance(raw, Mapping):
        raise BadInput(f"{where}: `hosts` must map host names to settings",
                       "e.g. hosts: {build-1: {ssh: ao@build-1, max_sessions: 8}}")
    for name, spec in raw.items():
        hosts[str(name)] = _host(str(name), spec or {}, f"{where}: hosts.{name}")
    return hosts


_NUMBERS = {"port": ("a number from 1 to 65535", "e.g. port: 2222", 1, 65535),
            "max_sessions": ("a whole number", "e.g. max_sessions: 8", 0, None),
            "min_free_mb": ("a whole number of megabytes", "e.g. min_free_mb: 4096", 0, None)}


def _number(spec: Mapping[str, Any], key: str, at: str) -> int | None:
    value = spec.get(key)
    what, hint, low, high = _NUMBERS[key]
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                              or value < low or (high is not None and value > high)):
        raise BadInput(f"{at}: {key} must be {what}", hint)
    return value


def _ssh(name: str, spec: Mapping[str, Any], at: str) -> str | None:
    ssh = spec.get("ssh")
    if name == LOCAL and (ssh or set(spec) - {"max_sessions", "min_free_mb"}):
        raise BadInput(f"{at}: `local` is this machine; it takes only max_sessions and "
                       "min_free_mb", "name an SSH host otherwise")
    if name != LOCAL and not (isinstance(ssh, str) and ssh.strip()):
        raise BadInput(f"{at}: needs `ssh: user@host`", "e.g. ssh: ao@build-1")
    if isinstance(ssh, str) and (ssh.startswith("-") or any(c.isspace() for c in ssh)):
        raise BadInput(f"{at}: ssh target {ssh!r} is not a user@host", "e.g. ao@build-1")
    return ssh.strip() if isinstance(ssh, str) else None


def _host(name: str, spec: Any, at: str) -> Host:
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise BadInput(f"{at}: a host name is letters, digits, '-', '_' and '.'", "rename it")
    if not isinstance(spec, Mapping):
        raise BadInput(f"{at} must be a mapping", "e.g. {ssh: ao@build-1}")
    extra = set(spec) - set(HOST_KEYS)
    if extra:
        raise BadInput(f"{at}: unknown key `{sorted(extra)[0]}`",
                       f"valid keys: {', '.join(sorted(HOST_KEYS))}")
    ssh = _ssh(name, spec, at)
    env = spec.get("env") or {}
    opts = spec.get("ssh_options") or []
    if not isinstance(env, Mapping) or not isinstance(opts, list):
        raise BadInput(f"{at}: env is a mapping and ssh_options a list",
                       'e.g. ssh_options: ["UserKnownHostsFile=~/.ssh/ao_known_hosts"]')
    identity = spec.get("identity")
    return Host(
        name=name, ssh=ssh, port=_number(spec, "port", at),
        identity=Path(str(identity)).expanduser() if identity else None,
        max_sessions=_number(spec, "max_sessions", at),
        min_free_mb=_number(spec, "min_free_mb", at),
        workdir=str(spec.get("workdir") or ".agent-orchestrator"),
        env=tuple((str(k), str(v)) for k, v in env.items()),
        options=tuple(str(o) for o in opts))
