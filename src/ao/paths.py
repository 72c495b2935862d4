"""Where `ao` keeps its files (DESIGN.md "Files"). Everything is created on first use, mode 0700."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil


def ao_home() -> Path:
    env = os.environ.get("AO_HOME")
    return Path(env).expanduser() if env else Path.home() / ".agent-orchestrator"


def ensure_dir(path: Path) -> Path:
    """Create `path` (and missing parents below AO_HOME) with mode 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


_checked: set[Path] = set()


def home() -> Path:
    """AO_HOME, made 0700 when new and tightened (with a warning) when an earlier version or
    a copy left it readable by others: it holds prompts, transcripts and CI logs."""
    h = ao_home()
    # exist_ok: two processes starting at once on a fresh AO_HOME both see it missing
    h.mkdir(parents=True, exist_ok=True, mode=0o700)
    if h not in _checked:
        _checked.add(h)
        try:
            mode = h.stat().st_mode & 0o777
            if mode & 0o077:
                os.chmod(h, 0o700)
                sys.stderr.write(f"ao: {display(h)} was readable by others (mode {mode:o}); "
                                 "made it 0700\n")
        except OSError:
            pass
    return h


def config_file() -> Path:
    return ao_home() / "config.yaml"


def state_db() -> Path:
    return home() / "state.db"


def installation_id() -> str:
    """This installation's id (AO_HOME/installation-id, made once): it marks the workdir it
    uses on each SSH host, so two installations never share one."""
    f = home() / "installation-id"
    try:
        known = f.read_text().strip()
    except FileNotFoundError:
        known = ""
    if not known:
        import secrets

        # made whole and put in place only if absent (a hard link fails on an existing
        # name): two starts that race here (threads of a batch, two commands) agree on the
        # first one's id, never mark two hosts with different ones
        tmp = _tmp_name(f)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(secrets.token_hex(8) + "\n", encoding="utf-8")
        try:
            os.link(tmp, f)
        except FileExistsError:  # another's, made first; or an empty one, replaced
            if not f.read_text().strip():
                tmp.replace(f)
        except OSError:  # a file system without hard links
            if not f.exists():
                tmp.replace(f)
        finally:
            tmp.unlink(missing_ok=True)
        known = f.read_text().strip()
    return known


def logs_dir() -> Path:
    return ensure_dir(home() / "logs")


def events_log() -> Path:
    return logs_dir() / "events.log"


def session_dir(project: str, session_id: str) -> Path:
    return ensure_dir(home() / "sessions" / project / session_id)


def worktrees_dir(project: str) -> Path:
    return ensure_dir(home() / "worktrees" / project)


def worktree_path(project: str, session_id: str) -> Path:
    return worktrees_dir(project) / session_id


def daemon_pid() -> Path:
    return home() / "daemon.pid"


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def wake_file() -> Path:
    return home() / "wake"


def poke_daemon() -> None:
    """Wake the daemon now instead of at its next poll (it watches this file): CI finished,
    an agent stopped, a message or a plan was queued. Harmless when no daemon runs."""
    with suppress(OSError):
        wake_file().write_text(f"{os.getpid()}\n", encoding="utf-8")


def display(path: Path | str) -> str:
    """A path for people: $HOME shown as `~`."""
    p = str(path)
    h = str(Path.home())
    if p == h:
        return "~"
    if p.startswith(h + os.sep):
        return "~" + p[len(h):]
    return p


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write a whole file or nothing: a temporary file beside it (given `mode` before it has
    any content), then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    if mode is not None:
        tmp.touch()
        os.chmod(tmp, mode)
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _tmp_name(path: Path) -> Path:
    """A temporary name beside `path`, this thread's own (threads of one process write the
    same files: a batch's starts)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextmanager
def try_locked(lockfile: Path) -> Iterator[bool]:
    """Like `locked`, without waiting: yields False when another process holds the lock."""
    lockfile.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(str(lockfile), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def session_lock(session_id: str) -> Path:
    """Held by whoever changes a session's life (a kill, a restore, the daemon acting on
    it): the CLI, the daemon and the web take it, so a kill and the daemon's restore of the
    agent the kill just stopped never interleave. Not the send lock: a daemon action that
    holds this one delivers messages under that one."""
    return home() / "locks" / f"session-{session_id}.lock"


LOW_SPACE = 1 << 20  # bytes free under which ao's disk counts as full


def store_trouble() -> str | None:
    """ao's home on a full disk or a read-only filesystem, in words; None when writable.
    Read from the filesystem, not from a record: a full disk cannot take one."""
    home_dir = ao_home()
    try:
        st = os.statvfs(home_dir)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return f"{display(home_dir)} is on a read-only filesystem"
    free = st.f_bavail * st.f_frsize
    if free < LOW_SPACE:
        return f"the disk of {display(home_dir)} is full ({free // 1024} KB free)"
    return None


def kill_intent(session_id: str) -> Path:
    """Written before a kill touches the agent, removed once the kill is recorded: a kill cut
    short (Ctrl-C, a closed terminal) is finished by the next daemon tick or `ao` command
    that sees it, never undone by a restore of the agent it had already stopped."""
    return home() / "locks" / f"session-{session_id}.killing"


def kill_intents() -> set[str]:
    """The sessions with a kill intent recorded (one listing, for a whole tick)."""
    d = home() / "locks"
    try:
        return {e.name[len("session-"):-len(".killing")] for e in os.scandir(d)
                if e.name.startswith("session-") and e.name.endswith(".killing")}
    except OSError:
        return set()


def send_lock(session_id: str) -> Path:
    """Held by whoever is typing into a session's agent, from clearing its input to the
    confirmation: one sender at a time, so two messages are never glued together."""
    return home() / "locks" / f"send-{session_id}.lock"


@contextmanager
def locked(lockfile: Path) -> Iterator[None]:
    """An exclusive flock on `lockfile` (created 0600), held for the block. The one file lock
    of the house: it dies with its holder, so a killed process never leaves it stuck."""
    lockfile.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(str(lockfile), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def process_tree(pids: list[int]) -> list[psutil.Process]:
    """Each process and everything under it, as it is now."""
    out: list[psutil.Process] = []
    for pid in pids:
        try:
            top = psutil.Process(pid)
            out += [top, *top.children(recursive=True)]
        except psutil.Error:
            continue  # gone already
    return out


def end_processes(procs: list[psutil.Process], grace: float) -> None:
    """`grace` seconds to exit, then SIGTERM, then SIGKILL. psutil checks each process's
    start time before signalling it: a pid the system has given to a new process since is
    left alone."""
    if not procs:
        return
    alive = wait_gone(procs, grace)
    for sig in ("terminate", "kill"):
        for p in alive:
            with contextlib.suppress(psutil.Error):
                getattr(p, sig)()
        alive = wait_gone(alive, 1.0)
        if not alive:
            return


def _running(p: psutil.Process) -> bool:
    """Alive and not a zombie: a process that has exited but that nobody has reaped yet (an
    orphan in a container without an init) has ended; psutil's wait_procs counted it alive
    and every stop waited its whole grace (2 s of each merge's record)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of `procs` still running after up to `timeout` seconds (looked at every few
    milliseconds, then less often)."""
    deadline = time.monotonic() + timeout
    pause = 0.002
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.05)
        alive = [p for p in alive if _running(p)]
    return alive

def daemon_state() -> dict[str, Any] | None:
    """The running daemon's state file, or None when no daemon runs (a stale file is ignored)."""
    f = ao_home() / "daemon.pid"
    try:
        data: dict[str, Any] = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    try:
        alive = pid_alive(int(data["pid"]))
    except (ValueError, KeyError, TypeError):
        return None
    return data if alive else None
