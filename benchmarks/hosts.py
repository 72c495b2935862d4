"""What observing a host's sessions costs over SSH, beside the floor of one round trip.

A real sshd on 127.0.0.1 (tests/sshd.py) plays the host; N sessions run in the host's own
tmux server; the poll's observation is `tmux.panes` (one `list-panes -a` for every pane)
through the multiplexed connection. The floor, measured in the same run, is `ssh host true`
over the same connection. Target (issue 18): ratio <= 2.

    python benchmarks/hosts.py [--sessions 30] [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ao-bench-hosts-"))
    os.environ.update(HOME=str(root / "home"), AO_HOME=str(root / "home" / ".ao"))
    (root / "home").mkdir()

    from tests.sshd import sshd

    from ao import hosts, tmux

    with sshd(root / "sshd") as server:
        h = hosts.parse({"bench": server.host_config()})["bench"]
        srv = hosts.tmux_server(h, f"ao-bench-{os.getpid()}")
        try:
            for i in range(args.sessions):
                tmux.new_session(srv, f"b-{i}", Path("/tmp"), "sleep 600", {})
            assert len(tmux.panes(srv)) == args.sessions

            def timed(fn: object) -> float:
                samples = []
                for _ in range(args.rounds):
                    t0 = time.perf_counter()
                    fn()  # type: ignore[operator]
                    samples.append(time.perf_counter() - t0)
                return statistics.median(samples)

            floor = timed(lambda: subprocess.run([*hosts.ssh_argv(h), "--", "true"],
                                                 check=True, capture_output=True))
            poll = timed(lambda: tmux.panes(srv))
        finally:
            srv.cmd("kill-server")
    print(f"{args.sessions} sessions on one SSH host: poll (list-panes over ssh) "
          f"{poll * 1000:.1f} ms; floor (ssh host true) {floor * 1000:.1f} ms; "
          f"ratio {poll / floor:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
