"""Helpers shared by the tests: run the real `ao`, poll with a timeout, run git."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_ao(*args: str, cwd: Path | None = None, input: str | None = None,
           env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    """Run the real `ao` command in a subprocess (exit codes and stderr as a user sees them)."""
    proc = subprocess.run(
        [sys.executable, "-m", "ao", *args], cwd=cwd, capture_output=True, text=True,
        input=input, timeout=timeout, env={**os.environ, **(env or {})},
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def retry_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
                message: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail with `message` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last: {last!r}")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()
