"""Hosts: the machines agents can run on, and the runner that reaches them (docs/hosts.md).

`local` is this machine. An SSH host is reached with OpenSSH's own client and connection
multiplexing (ControlMaster/ControlPersist): the first command opens one connection, every
later one rides it, so a command costs one round trip on an open channel, not a handshake.
A host's tmux server is driven through the same connection: `tmux.host_server()` gives a libtmux
Server whose commands go over ssh with their arguments quoted for the remote shell
(tmux.HostServer), so everything in tmux.py works on a host unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import subprocess
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ao import paths
from ao.errors import ExternalError
from ao.world import channel

log = logging.getLogger(__name__)
T = TypeVar("T")

if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    from ao.config import Config
    from ao.host_config import Host

SSH_FAILED = 255  # what ssh exits with when the connection (not the command) failed


class Unreachable(ExternalError):
    """The host could not be reached (ssh itself failed): nothing is known of it."""

CONNECT_TIMEOUT = 10
QUICK = 2.0  # a question on an open channel: a live host answers in milliseconds


@dataclass(frozen=True)
class Probe:
    """One round trip's worth of a host's state."""

    host: str
    reachable: bool
    error: str = ""
    cpus: int | None = None
    load: float | None = None
    mem_available_mb: int | None = None
    tools: dict[str, str] = field(default_factory=dict)  # name -> version ("" if missing)
    seconds: float = 0.0


def control_dir() -> Path:
    """Where the master connections' sockets live: a unix socket path is limited to about
    100 bytes (104 on macOS), and ssh names it %C (40 hex digits) plus a 17-character
    suffix while it is made; a long AO_HOME gets a short private folder under /tmp."""
    here = paths.home() / "ssh"
    if len(str(here)) <= 40:
        return paths.ensure_dir(here)
    import hashlib
    import stat
    import tempfile

    key = hashlib.sha1(str(paths.home()).encode()).hexdigest()[:10]
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    short = Path(base) / f"ao-ssh-{os.getuid()}-{key}"
    with contextlib.suppress(FileExistsError):
        short.mkdir(mode=0o700)
    st = os.lstat(short)  # never follow a link someone put there in a shared /tmp
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ExternalError(f"{short} is not a private folder of yours (a link, or someone "
                            "else's)", "set AO_HOME to a shorter path, or remove it")
    return short


def ssh_argv(host: Host) -> list[str]:
    """OpenSSH with multiplexing: the first call opens the master connection, later ones ride
    it; BatchMode, so a host that wants a password fails at once instead of waiting."""
    if host.ssh is None:
        raise ValueError("the local host has no ssh")
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=auto",
            "-o", f"ControlPath={control_dir()}/%C", "-o", "ControlPersist=300",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT}", "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=2"]
    if host.port:
        argv += ["-p", str(host.port)]
    if host.identity:
        argv += ["-i", str(host.identity), "-o", "IdentitiesOnly=yes"]
    for o in host.options:
        argv += ["-o", o]
    return [*argv, host.ssh]


def outcome(call: Callable[[], T]) -> T | Exception:
    """What a host's call returned, or the exception it raised: handed back, for the caller
    knows what each means."""
    try:
        return call()
    except Exception as e:
        return e


def side_by_side(calls: Mapping[str, Callable[[], T]], within: float | None = None
                 ) -> dict[str, T | Exception]:
    """Each host's call at once (a thread each; one alone runs here): what it returned, or
    the exception it raised, by host. A host that hangs holds the answer up by its own
    timeout, not by the sum of every host's; with `within` (a command's look), by that long
    at most: a call still going then is Unreachable, and left to end on its own (its thread
    holds up neither the caller nor the process's exit). The calls touch the network only:
    the store is the caller's to write, after."""
    if within is not None and calls:
        import threading
        import time

        answers: dict[str, T | Exception] = {}
        threads = {name: threading.Thread(target=lambda n=name, c=call: answers.__setitem__(
            n, outcome(c)), name=f"ao-look-{name}", daemon=True)
            for name, call in calls.items()}
        deadline = time.monotonic() + within
        for t in threads.values():
            t.start()
        for t in threads.values():
            t.join(max(0.0, deadline - time.monotonic()))
        return {name: answers[name] if name in answers else Unreachable(
            f"host {name} did not answer in {within:g}s", f"is {name} reachable?")
            for name in calls}
    if len(calls) <= 1:
        return {name: outcome(call) for name, call in calls.items()}
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="ao-hosts") as pool:
        futures = {name: pool.submit(outcome, call) for name, call in calls.items()}
    return {name: f.result() for name, f in futures.items()}


def run(host: Host, argv: list[str], input: str | None = None, timeout: float = 60,
        silence_is_down: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a command on the host (here for `local`; on an SSH host over one of its open
    channels, channel.py): the runner seam. Raises Unreachable when ssh could not reach the
    host (and, with `silence_is_down`, when the command did not answer in time: a poll's
    quick question); a slow command is an ExternalError."""
    if host.local:
        try:
            return subprocess.run(argv, input=input, capture_output=True, text=True,
                                  timeout=timeout, stdin=None if input is not None
                                  else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise (Unreachable if silence_is_down else ExternalError)(
                f"host {host.name}: `{argv[0]}` did not answer in {timeout:g}s",
                "is this machine overloaded?") from None
    try:
        a = channel.run(tuple(ssh_argv(host)), shlex.join(argv), (input or "").encode(),
                        timeout)
    except channel.Broken as e:
        log.warning("host %s: `%s` got no whole answer (%s)", host.name, argv[0], e)
        if e.timed_out:
            error = Unreachable if silence_is_down or not connected(host) else ExternalError
            raise error(f"host {host.name}: `{argv[0]}` did not answer in {timeout:g}s",
                        f"is {host.ssh} reachable?") from None
        if not connected(host):
            raise Unreachable(f"host {host.name}: {e}", "see `ao hosts check`") from None
        raise ExternalError(f"host {host.name}: {e}", "see `ao hosts check`") from None
    return subprocess.CompletedProcess(argv, a.returncode,
                                       a.stdout.decode("utf-8", "replace"),
                                       a.stderr.decode("utf-8", "replace"))


def question_timeout(host: Host) -> float:
    """How long a quick question to the host may take: QUICK on an open channel, the login's
    time too when one must be opened first."""
    if host.local or channel.is_open(tuple(ssh_argv(host))):
        return QUICK
    return CONNECT_TIMEOUT + 5


def connected(host: Host) -> bool:
    """Whether the host's master connection is up (`ssh -O check`)."""
    if host.local:
        return True
    argv = ssh_argv(host)
    try:
        return subprocess.run([*argv[:-1], "-O", "check", argv[-1]], capture_output=True,
                              timeout=10, stdin=subprocess.DEVNULL).returncode == 0
    except subprocess.TimeoutExpired:
        return False


_PROBE = r"""
echo "cpus $(nproc 2>/dev/null)"
echo "load $(cut -d' ' -f1 /proc/loadavg 2>/dev/null)"
echo "mem $(awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo 2>/dev/null)"
for t in tmux git; do
  if command -v "$t" >/dev/null 2>&1; then
    echo "tool $t $("$t" -V 2>/dev/null || "$t" --version 2>/dev/null | head -1)"
  else
    echo "tool $t"
  fi
done
for t in "$@"; do
  if command -v "$t" >/dev/null 2>&1; then echo "tool $t yes"; else echo "tool $t"; fi
done
echo "tool git-identity $(git config user.email 2>/dev/null)"
"""


def probe(host: Host, binaries: tuple[str, ...] = ()) -> Probe:
    """Reachability, CPUs, load, free memory and the tools ao needs, in one round trip."""
    import time

    t0 = time.monotonic()
    try:
        r = run(host, ["sh", "-c", _PROBE, "probe", *binaries], timeout=CONNECT_TIMEOUT + 20,
                silence_is_down=True)
    except Unreachable as e:
        return Probe(host.name, False, str(e), seconds=time.monotonic() - t0)
    seconds = time.monotonic() - t0
    if r.returncode != 0:
        err = (r.stderr or "").strip().splitlines()
        return Probe(host.name, False, err[-1] if err else f"exit {r.returncode}",
                     seconds=seconds)
    values: dict[str, str] = {}
    tools: dict[str, str] = {}
    for line in r.stdout.splitlines():
        key, _, rest = line.partition(" ")
        if key == "tool":
            name, _, version = rest.partition(" ")
            tools[name] = version.strip()
        else:
            values[key] = rest.strip()

    def num(key: str) -> float | None:
        try:
            return float(values.get(key, ""))
        except ValueError:
            return None

    cpus, load, mem = num("cpus"), num("load"), num("mem")
    return Probe(host.name, True, cpus=int(cpus) if cpus else None, load=load,
                 mem_available_mb=int(mem) if mem is not None else None, tools=tools,
                 seconds=seconds)


# ---- reachability: a host that stops answering is retried with backoff ----------------------

BACKOFF_FIRST, BACKOFF_MAX = 5.0, 300.0


def _down_file(name: str) -> Path:
    return paths.home() / "hosts" / name / "down.json"


def down(name: str) -> dict[str, Any] | None:
    """Since when the host is unreachable, how often it failed, when to try it again."""
    import json

    try:
        data = json.loads(_down_file(name).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def connect_early(cfg: Config, project: str) -> None:
    """The project's SSH hosts' channels begun now (channel.open_early), each host not in
    its backoff: a command that is about to start sessions there logs in while its own
    start-up goes on."""
    import time

    now = time.time()
    for name in cfg.project(project).hosts:
        h = cfg.hosts.get(name)
        if h is not None and not h.local and due(name, now):
            channel.open_early(tuple(ssh_argv(h)))


def due(name: str, now: float) -> bool:
    """Whether to talk to the host now: it is up, or its backoff has passed."""
    d = down(name)
    return d is None or now >= float(d.get("retry_at", 0))


def mark_down(name: str, error: str, now: float) -> bool:
    """Record a failed round trip; True when the host was up until now."""
    import json

    d = down(name)
    failures = int(d["failures"]) + 1 if d else 1
    wait = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1))
    log.warning("host %s did not answer (%s); asked again in %.0fs", name, error[-200:], wait)
    paths.ensure_dir(_down_file(name).parent)
    paths.write_atomic(_down_file(name), json.dumps({
        "since": d["since"] if d else now, "failures": failures, "retry_at": now + wait,
        "error": error[-300:]}))
    return d is None


def mark_up(name: str) -> dict[str, Any] | None:
    """The host answered; what its down record said, if it was down."""
    d = down(name)
    if d is not None:
        log.info("host %s answers again", name)
        with contextlib.suppress(FileNotFoundError):
            _down_file(name).unlink()
    return d
