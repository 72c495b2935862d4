"""Run a local-forge CI job: a clean temporary checkout of one sha, the project's CI command,
a timeout, the output kept in a log, and the verdict recorded in the store. Runs detached from
whoever started it, so a daemon restart does not lose a running job's verdict."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ao import paths
from ao.errors import ExternalError
from ao.record.store import Store
from ao.world import workspace


def run(repo: Path, project: str, sha: str, command: str, timeout: float, log: Path) -> str:
    store = Store()
    tmp = Path(tempfile.mkdtemp(prefix=f"ao-ci-{sha[:8]}-"))
    status, code = "error", None
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as out:
        out.write(f"$ {command}\n# sha {sha}\n")
        out.flush()
        try:
            workspace.detached_copy(repo, sha, tmp / "src")
            proc = subprocess.Popen(command, shell=True, cwd=tmp / "src", stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "CI": "true"})
            try:
                code = proc.wait(timeout=timeout)
                status = "passing" if code == 0 else "failing"
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                out.write(f"\n# timed out after {timeout:g}s\n")
                status = "failing"
        except (ExternalError, OSError) as e:
            out.write(f"\n# could not check out {sha}: {e}\n")
        out.write(f"\n# exit {code} -> {status}\n")
    shutil.rmtree(tmp, ignore_errors=True)
    store.set_local_ci(project, sha, status=status, exit_code=code, finished_at=time.time())
    paths.poke_daemon()
    return status


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--project", required=True)
    ap.add_argument("--sha", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    run(Path(a.repo), a.project, a.sha, a.command, a.timeout, Path(a.log))


if __name__ == "__main__":
    main()
