"""A throwaway world for a benchmark: its own HOME, AO_HOME, git identity, tmux socket and a
repository with a bare remote. Used by the benchmarks that run a real daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Sandbox:
    root: Path
    work: Path
    bare: Path
    env: dict[str, str]

    def ao(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ao", *args], env=self.env, cwd=self.work,
                              check=check, capture_output=True, text=True)

    def config(self, poll: float, **project: object) -> None:
        (self.root / "ao" / "config.yaml").write_text(json.dumps({
            "poll_interval": f"{poll}s", "cleanup": {"grace": "600s"},
            "projects": {"bench": {"path": str(self.work), **project}}}))


    def working_sessions(self, n: int, command: str) -> list[str]:
        """n live sessions of a command agent running `command` in tmux, each with a pushed
        branch one commit ahead of main (an agent's work): each is an open PR on the local
        forge, so a tick does its forge read and per-session PR work (without branches the
        tick skipped both: 7 ms where a real one costs about 23 ms of CPU at 200)."""
        from ao import config
        from ao.record.state import State
        from ao.record.store import Store
        from ao.world import tmux

        store = Store()
        srv = tmux.server(config.load().tmux_socket)
        tree = git(self.work, "rev-parse", "HEAD^{tree}")
        ahead = git(self.work, "commit-tree", tree, "-p", "HEAD", "-m", "work")
        for i in range(n):
            git(self.work, "branch", f"ao/t-{i}", ahead)
        git(self.work, "push", "-q", "origin", *[f"ao/t-{i}" for i in range(n)])
        sids = []
        for i in range(n):
            s = store.create_session("bench", "ben", f"T-{i}", agent="command",
                                     state=State.SPAWNING)
            store.update_session(s.id, branch=f"ao/t-{i}")
            store.set_state(s.id, State.WORKING)
            tmux.new_session(srv, s.id, self.work, command)
            sids.append(s.id)
        store.close()
        return sids

    @contextmanager
    def daemon(self, *args: str) -> Iterator[subprocess.Popen[bytes]]:
        """A real `ao daemon run` for the length of the block, stopped as `ao stop` would."""
        proc = subprocess.Popen([sys.executable, "-m", "ao", "daemon", "run", *args],
                                env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


@contextmanager
def sandbox(prefix: str) -> Iterator[Sandbox]:
    # agents killed with the tmux server may still write their last hook lines meanwhile
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        env = {**os.environ, "HOME": str(root), "AO_HOME": str(root / "ao"),
               "GIT_CONFIG_GLOBAL": str(root / "gitconfig"), "TMUX_TMPDIR": str(root),
               "AO_TMUX_SOCKET": "bench"}
        env.pop("TMUX", None)
        saved = {k: os.environ.get(k) for k in ("HOME", "AO_HOME", "GIT_CONFIG_GLOBAL",
                                                "TMUX_TMPDIR", "AO_TMUX_SOCKET")}
        os.environ.update({k: env[k] for k in saved})
        (root / "gitconfig").write_text("[user]\n\tname = b\n\temail = b@example.invalid\n")
        bare, work = root / "remote.git", root / "work"
        git(root, "init", "-q", "--bare", "-b", "main", str(bare))
        git(root, "init", "-q", "-b", "main", str(work))
        (work / "README.md").write_text("x\n")
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", "init")
        git(work, "remote", "add", "origin", str(bare))
        git(work, "push", "-q", "origin", "main")
        (root / "ao").mkdir(mode=0o700)
        try:
            yield Sandbox(root, work, bare, env)
        finally:
            subprocess.run(["tmux", "-L", "bench", "kill-server"], env=env, capture_output=True)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
