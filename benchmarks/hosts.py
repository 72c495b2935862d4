"""Sessions on SSH hosts: what a poll costs, and what spreading a batch spawn costs.

Real sshd servers on 127.0.0.1 (tests/sshd.py) play the hosts, each with its own tmux
server (its own TMUX_TMPDIR through sshd's SetEnv), as separate machines would have.

poll: N sessions spread over three hosts' tmux servers; ao's poll of the three (`hostwork.poll`
a host: every pane and the new bytes of every hook file, one round trip over the host's open
channel, channel.py) beside the floor of one `ssh host true` a host over the same
multiplexed connection. Target: ratio <= 2.

spawn: `ao batch-spawn` of 12 tasks (demo agent, first prompt delivered and confirmed) on
this machine alone, beside the same 12 spread over this machine and two hosts (4 each),
from cold (ssh connects first) and with the connections up (as with the daemon running);
`--spawn-rounds` rounds of the three side by side, medians compared. Target: ratio <= 1.2.
The CPU this machine spent in each is printed beside: when the "hosts" are sshd servers on
this machine they add their own work (their logins, clones, tmux servers and agents, the
commands ao sends) to the same cores.

outage: the daemon's loop (2 s poll) over 3 hosts with 10 sessions each, for --outage-seconds
without a fault, then as long with one host frozen (its sshd stopped: connections open and
silent, the worst case). The mean time between two ticks that observed the healthy hosts,
during the freeze against without it (target <= 1.5), the longest tick, and `ao session ls`
during the freeze (once the daemon recorded the host down) against without it (target <= 1.5).

    python benchmarks/hosts.py [--sessions 30] [--rounds 20] [--tasks 12] [--spawn-rounds 3]
                               [--outage-seconds 20] [--only poll|spawn|outage]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--tasks", type=int, default=12)
    ap.add_argument("--spawn-rounds", type=int, default=3)
    ap.add_argument("--outage-seconds", type=float, default=20)
    ap.add_argument("--only", choices=("poll", "spawn", "outage"))
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ao-bench-hosts-"))
    os.environ.update(HOME=str(root / "home"), AO_HOME=str(root / "home" / ".ao"),
                      GIT_CONFIG_GLOBAL=str(root / "gitconfig"))
    (root / "home").mkdir()
    (root / "gitconfig").write_text("[user]\n\tname = bench\n\temail = b@example.invalid\n")
    if args.only in (None, "poll"):
        poll(root, args)
    if args.only in (None, "spawn"):
        spawn(root, args.tasks, args.spawn_rounds)
    if args.only in (None, "outage"):
        outage(root, args.outage_seconds)


def outage(root: Path, seconds: float, interval: float = 2.0) -> None:
    """Ticks of the daemon (its own loop's cadence: a tick every `interval`, or right after
    one that took longer) without a fault, then with one host frozen."""
    import contextlib
    import shutil

    from tests.sshd import sshd

    from ao import config, paths
    from ao.loop.daemon import Daemon
    from ao.record.state import Activity, State
    from ao.record.store import Store
    from ao.services import hostwork
    from ao.world import channel, hosts, tmux

    home = root / "outage"
    home.mkdir()
    os.environ["AO_HOME"] = str(home / "ao")
    socket = f"ao-bench-out-{os.getpid()}"
    os.environ["AO_TMUX_SOCKET"] = socket
    work = root / "outage-work"
    sh("git", "init", "-q", "-b", "main", str(work))
    sh("git", "commit", "-q", "--allow-empty", "-m", "initial", cwd=work)
    names = ["out-0", "out-1", "out-2"]
    tmux_dirs = {n: Path(tempfile.mkdtemp(prefix=f"ao-{n}-")) for n in names}
    with contextlib.ExitStack() as stack:
        servers = {n: stack.enter_context(sshd(root / f"sshd-{n}", setenv={
            "TMUX_TMPDIR": str(d)})) for n, d in tmux_dirs.items()}
        paths.ensure_dir(paths.home())
        paths.config_file().write_text(json.dumps({"poll_interval": interval, "hosts": {
            n: {**srv.host_config(), "workdir": str(root / f"wd-{n}")}
            for n, srv in servers.items()}, "projects": {"bench": {
                "path": str(work), "agent": {"command": "sleep 600"}, "hosts": names}}}))
        cfg = config.load()
        store = Store()
        for i in range(30):
            n = names[i % 3]
            s = store.create_session("bench", "ben", f"T-{i}", state=State.WORKING)
            store.update_session(s.id, host=n)
            h = cfg.hosts[n]
            conf = hostwork.tmux_conf(h)
            hostwork.write(h, conf, tmux.CONF)
            tmux.new_session(tmux.host_server(h, socket, str(conf)), s.id, Path("/tmp"),
                             "sleep 600", {})
        d = Daemon(cfg, store, tmux.server(socket))
        healthy = [s.id for s in store.sessions("bench") if s.host != names[0]]

        def run_loop() -> tuple[list[float], list[float]]:
            starts, lengths = [], []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                t0 = time.monotonic()
                d.tick()
                lengths.append(time.monotonic() - t0)
                seen = {s.id: s.activity for s in store.sessions("bench")}
                if all(seen[x] != Activity.UNREACHABLE.value for x in healthy):
                    starts.append(t0)
                time.sleep(max(0.0, interval - (time.monotonic() - t0)))
            return starts, lengths

        def ls() -> float:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ao", "session", "ls"], cwd=work,
                           capture_output=True, check=True)
            return time.perf_counter() - t0

        def gap(starts: list[float]) -> float:
            return statistics.mean(b - a for a, b in itertools.pairwise(starts))

        d.tick()  # connections up, as with a daemon running
        calm, calm_len = run_loop()
        calm_ls = statistics.median(ls() for _ in range(3))
        servers[names[0]].freeze()
        try:
            cut, cut_len = run_loop()
            down = hosts.down(names[0]) is not None
            cut_ls = statistics.median(ls() for _ in range(3))
        finally:
            servers[names[0]].freeze(False)
        for dd in tmux_dirs.values():
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True,
                           env={**os.environ, "TMUX_TMPDIR": str(dd)})
        channel.close_all()
    for dd in tmux_dirs.values():
        shutil.rmtree(dd, ignore_errors=True)
    print(f"outage: 30 sessions on 3 SSH hosts, the daemon's loop ({interval:g} s poll) for "
          f"{seconds:g} s each way; one host frozen (recorded down: {down})")
    print(f"  time between ticks that observed the healthy hosts: {gap(calm):.2f} s without "
          f"the fault, {gap(cut):.2f} s during it; ratio {gap(cut) / gap(calm):.2f} "
          f"(target <= 1.5); longest tick {max(calm_len):.2f} s / {max(cut_len):.2f} s")
    print(f"  `ao session ls`: {calm_ls:.2f} s without the fault, {cut_ls:.2f} s during it; "
          f"ratio {cut_ls / calm_ls:.2f} (target <= 1.5)")


def poll(root: Path, args: argparse.Namespace) -> None:
    """`--sessions` sessions spread over three hosts; the daemon's poll asks each host once
    (hostwork.poll: its panes and the new bytes of its sessions' hook files), beside the
    floor of one `ssh host true` per host over the same multiplexed connection."""
    import contextlib

    from tests.sshd import sshd

    from ao import host_config
    from ao.services import hostwork
    from ao.world import channel, hosts, tmux

    socket = f"ao-bench-{os.getpid()}"
    with contextlib.ExitStack() as stack:
        pool = []
        for n in range(3):
            tmux_dir = Path(tempfile.mkdtemp(prefix=f"ao-bp{n}-"))
            server = stack.enter_context(sshd(root / f"sshd-poll-{n}", setenv={
                "TMUX_TMPDIR": str(tmux_dir)}))
            h = host_config.parse({f"bench-{n}": {**server.host_config(),
                                            "workdir": str(root / f"bench-wd-{n}")}})[
                f"bench-{n}"]
            conf = hostwork.tmux_conf(h)
            hostwork.write(h, conf, tmux.CONF)
            srv = tmux.host_server(h, socket, str(conf))
            stack.callback(srv.cmd, "kill-server")
            hooks = root / f"bench-wd-{n}" / "hooks"
            hooks.mkdir(parents=True)
            reads = []
            for i in range(n, args.sessions, 3):
                tmux.new_session(srv, f"b-{i}", Path("/tmp"), "sleep 600", {})
                (hooks / f"b-{i}.tsv").write_text("Stop\t1.0\t{}\n")
                reads.append((f"b-{i}", hostwork.PurePosixPath(str(hooks / f"b-{i}.tsv")), 0))
            pool.append((h, reads))

        def timed(fn: object) -> float:
            samples = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                fn()  # type: ignore[operator]
                samples.append(time.perf_counter() - t0)
            return statistics.median(samples)

        def floor_round() -> None:
            for h, _reads in pool:
                subprocess.run([*hosts.ssh_argv(h), "--", "true"], check=True,
                               capture_output=True)

        def poll_round() -> None:
            for h, reads in pool:
                panes, chunks = hostwork.poll(h, socket, reads)
                assert panes is not None and len(chunks) == len(reads)

        floor = timed(floor_round)
        polled = timed(poll_round)
        channel.close_all()
    print(f"{args.sessions} sessions on 3 SSH hosts: a poll (each host's panes and hook files, "
          f"one round trip a host) {polled * 1000:.1f} ms; floor (`ssh host true` a host) "
          f"{floor * 1000:.1f} ms; ratio {polled / floor:.2f} (target <= 2)")


def spawn(root: Path, tasks: int, rounds: int = 3) -> None:
    """12 tasks on this machine alone, then the same 12 over this machine and two hosts, from
    cold and with the connections up; `rounds` times, the three side by side in each round
    (so a slow moment of this machine weighs on all three), and the medians compared."""
    import contextlib
    import shutil

    from tests.sshd import sshd

    from ao.world import channel, hosts

    work, bare = root / "work", root / "remote.git"
    sh("git", "init", "-q", "--bare", "-b", "main", str(bare))
    sh("git", "init", "-q", "-b", "main", str(work))
    (work / "plans").mkdir()
    plan = {"tasks": {f"T-{i}": {"title": f"task {i}", "body": "```demo\nsleep 0\n```"}
                      for i in range(1, tasks + 1)}}
    (work / "plans" / "p.yaml").write_text(json.dumps(plan))
    sh("git", "add", "-A", cwd=work)
    sh("git", "commit", "-q", "-m", "initial", cwd=work)
    sh("git", "remote", "add", "origin", str(bare), cwd=work)
    sh("git", "push", "-q", "-u", "origin", "main", cwd=work)
    tmux_dirs = {n: Path(tempfile.mkdtemp(prefix=f"ao-{n}-")) for n in ("h1", "h2")}
    labels = ("one machine", "three machines", "three machines, connections up")
    times: dict[str, list[float]] = {label: [] for label in labels}
    busy: dict[str, list[float]] = {label: [] for label in labels}
    with contextlib.ExitStack() as stack:
        servers = {n: stack.enter_context(sshd(root / f"sshd-{n}", setenv={
            "TMUX_TMPDIR": str(d)})) for n, d in tmux_dirs.items()}
        runs = ((labels[0], ["local"], tasks, False),
                (labels[1], ["local", "h1", "h2"], tasks // 3, False),
                (labels[2], ["local", "h1", "h2"], tasks // 3, True))
        k = 0
        for _ in range(rounds):
            for label, pool, per, warm in runs:
                k += 1
                seconds, cpu = _batch(root, k, bare, servers, tasks, pool, per, warm,
                                      tmux_dirs)
                times[label].append(seconds)
                busy[label].append(cpu)
            # the next round starts cold again: no channel, no master connection
            channel.close_all()
            for sock in hosts.control_dir().iterdir():
                subprocess.run(["ssh", "-O", "exit", "-S", str(sock), "x"],
                               capture_output=True)
    for d in tmux_dirs.values():
        shutil.rmtree(d, ignore_errors=True)
    one = statistics.median(times[labels[0]])
    spread = lambda xs: f"{min(xs):.2f}-{max(xs):.2f}"  # noqa: E731
    print(f"batch-spawn {tasks} tasks, median of {rounds} rounds: this machine alone "
          f"{one:.2f}s ({spread(times[labels[0]])})")
    for label, how in ((labels[1], "cold: ssh connects first"),
                       (labels[2], "connections up")):
        mid = statistics.median(times[label])
        ratios = [t / o for t, o in zip(times[label], times[labels[0]], strict=True)]
        print(f"  over this machine and two SSH hosts ({how}) {mid:.2f}s "
              f"({spread(times[label])}); ratio {mid / one:.2f} (target <= 1.2; "
              f"each round's: {', '.join(f'{r:.2f}' for r in ratios)})")
    cores = os.cpu_count() or 1
    print(f"  CPU busy on this machine ({cores} cores, the hosts' work included when they "
          f"share it), medians: alone {statistics.median(busy[labels[0]]):.2f} s, over hosts "
          f"(cold) {statistics.median(busy[labels[1]]):.2f} s, (connections up) "
          f"{statistics.median(busy[labels[2]]):.2f} s")


def _batch(root: Path, k: int, bare: Path, servers: dict[str, Any], tasks: int,
           pool: list[str], per: int, warm: bool, tmux_dirs: dict[str, Path]
           ) -> tuple[float, float]:
    """One `ao batch-spawn` of the plan in its own AO_HOME, clone, tmux socket and host
    workdirs; its seconds and this machine's busy CPU-seconds."""
    home = root / f"ao-{k}"
    home.mkdir()
    clone = root / f"work-{k}"  # each run its own clone: its own worktrees
    sh("git", "clone", "-q", str(bare), str(clone))
    socket = f"ao-bench-sp-{os.getpid()}-{k}"
    host_cfg: dict[str, object] = {"local": {"max_sessions": per}}
    for n, srv in servers.items():
        host_cfg[n] = {**srv.host_config(), "max_sessions": per,
                       "workdir": str(root / f"wd-{n}-{k}")}
    (home / "config.yaml").write_text(json.dumps({"hosts": host_cfg, "projects": {
        "bench": {"path": str(clone), "agent": "demo", "max_concurrent": tasks,
                  "plan": "plans/p.yaml", "hosts": pool}}}))
    env = {**os.environ, "AO_HOME": str(home), "AO_TMUX_SOCKET": socket}
    if warm:  # as with the daemon running: its polls keep each host's connection up
        sh(sys.executable, "-m", "ao", "hosts", cwd=clone, env=env)
    b0 = _busy()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ao", "batch-spawn", "bench",
                           "--plan", str(clone / "plans" / "p.yaml"), "--force"],
                          cwd=clone, env=env, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - t0, _busy() - b0
    spawned = proc.stdout.count(" spawned")
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    for d in tmux_dirs.values():
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True,
                       env={**os.environ, "TMUX_TMPDIR": str(d)})
    if spawned != tasks:
        raise SystemExit(f"{pool}: {spawned}/{tasks} spawned\n{proc.stdout}{proc.stderr}")
    return seconds, cpu


def sh(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)


def _busy() -> float:
    """CPU-seconds this machine's cores spent busy so far (/proc/stat), all processes."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
