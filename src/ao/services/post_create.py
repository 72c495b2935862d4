"""A project's `post_create` commands, run in a new worktree before its agent starts: each in a
process group of its own, ended whole by a Ctrl-C, an error or its timeout."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from ao.errors import ExternalError
from ao.services import interrupts


def run(cmd: str, cwd: Path, env: dict[str, str], timeout: float = 600) -> None:
    """The command, in a process group of its own: a Ctrl-C (noted, see interrupts.py), any
    other exception here, or its timeout ends all of it (an `npm install`'s children too),
    and the start is undone."""
    proc = subprocess.Popen(cmd, shell=True, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                interrupts.check()
                if time.monotonic() > deadline:
                    raise ExternalError(f"post_create `{cmd}` timed out after {timeout:g}s",
                                        "fix the command") from None
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    if proc.returncode != 0:
        tail = (err or out).strip().splitlines()[-1:] or [""]
        raise ExternalError(f"post_create `{cmd}` failed (exit {proc.returncode}): {tail[0]}",
                            "fix the command in the project's config")
