"""Helpers shared by the tests: run the real `ao`, poll with a timeout, run git."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

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


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet HTTP/1.1 handler that answers JSON (the base of the fake model servers)."""

    protocol_version = "HTTP/1.1"
    extra_headers: ClassVar[tuple[tuple[str, str], ...]] = ()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, obj: Any, headers: tuple[tuple[str, str], ...] = ()) -> None:
        import json

        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (*self.extra_headers, *headers):
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free port of 127.0.0.1 in a thread; yields the base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def push_branch(clone: Path, branch: str, files: dict[str, str], message: str = "work",
                base: str = "origin/main") -> str:
    """Commit `files` on `branch` (made from `base` if new) in `clone` and force-push it, as an
    agent would; returns the new head sha."""
    git(clone, "fetch", "-q", "origin")
    if git(clone, "branch", "--list", branch):
        git(clone, "checkout", "-q", branch)
    else:
        git(clone, "checkout", "-q", "-b", branch, base)
    for name, text in files.items():
        p = clone / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", message)
    git(clone, "push", "-q", "-f", "origin", f"{branch}:{branch}")
    return git(clone, "rev-parse", "HEAD")
