"""The live event stream: time from an event being recorded to it arriving on an open SSE
connection to the daemon's `/api/events`, beside the time for `ao events -f` to print it,
measured in the same run on the same events; and the daemon's memory with the web server on
(5 SSE clients open) against the same daemon without it.

Run: python benchmarks/web.py [--events 200]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from sandbox import Sandbox, sandbox

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon(sb: Sandbox, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ao", "daemon", "run", *args], env=sb.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop(p: subprocess.Popen[bytes]) -> None:
    os.killpg(p.pid, signal.SIGTERM)
    p.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200)
    args = ap.parse_args()
    from ao.record import events
    from ao.record.events import Event
    from ao.record.store import Store

    with sandbox("ao-bench-web-") as sb:
        sb.config(30)
        store = Store(sb.root / "ao" / "state.db")
        plain = daemon(sb)
        time.sleep(3)
        rss_plain = rss_kb(plain.pid)
        stop(plain)
        port = free_port()
        served = daemon(sb, "--port", str(port))
        time.sleep(3)
        token = (sb.root / "ao" / "web.token").read_text().strip()  # every request needs it
        sent: dict[str, float] = {}
        sse: dict[str, float] = {}
        cli: dict[str, float] = {}

        def read_sse() -> None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/events?type=bench."
                                        f"&token={token}",
                                        timeout=120) as r:
                for raw in r:
                    line = raw.decode()
                    if line.startswith("data: "):
                        sse[json.loads(line[6:])["data"]["n"]] = time.time()
                        if len(sse) >= args.events:
                            return

        readers = [threading.Thread(target=read_sse, daemon=True)]
        for _ in range(4):  # four more clients, to weigh on memory
            readers.append(threading.Thread(target=lambda: urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/events?token={token}", timeout=120).read(1),
                daemon=True))
        for t in readers:
            t.start()
        follower = subprocess.Popen([sys.executable, "-m", "ao", "events", "-f", "-t",
                                     "bench", "--json"], env=sb.env,
                                    stdout=subprocess.PIPE, text=True)

        def read_cli() -> None:
            assert follower.stdout is not None
            for line in follower.stdout:
                try:
                    cli[json.loads(line)["data"]["n"]] = time.time()
                except (ValueError, KeyError):
                    continue
                if len(cli) >= args.events:
                    return

        tc = threading.Thread(target=read_cli, daemon=True)
        tc.start()
        time.sleep(2)
        for i in range(args.events):
            key = f"e{i}"
            sent[key] = time.time()
            events.emit(Event("bench.tick", data={"n": key}), store)
            time.sleep(0.01)
        deadline = time.time() + 30
        while time.time() < deadline and (len(sse) < args.events or len(cli) < args.events):
            time.sleep(0.05)
        rss_web = rss_kb(served.pid)
        follower.kill()
        stop(served)
    lat_sse = sorted(sse[k] - sent[k] for k in sent if k in sse)
    lat_cli = sorted(cli[k] - sent[k] for k in sent if k in cli)
    if not lat_sse or not lat_cli:
        raise SystemExit(f"events lost: sse {len(lat_sse)}, cli {len(lat_cli)}")
    med_sse, med_cli = statistics.median(lat_sse), statistics.median(lat_cli)
    p99 = lat_sse[int(len(lat_sse) * 0.99) - 1]
    print(f"{'':<34}{'median':>9}{'p99':>9}")
    print(f"{'SSE /api/events':<34}{med_sse * 1000:>7.0f}ms{p99 * 1000:>7.0f}ms")
    print(f"{'ao events -f':<34}{med_cli * 1000:>7.0f}ms"
          f"{lat_cli[int(len(lat_cli) * 0.99) - 1] * 1000:>7.0f}ms")
    print(f"received: SSE {len(lat_sse)}/{args.events}, ao events -f "
          f"{len(lat_cli)}/{args.events}")
    print(f"daemon memory: {rss_web / 1024:.0f} MB with the web server and 5 SSE clients, "
          f"{rss_plain / 1024:.0f} MB without ({rss_web / rss_plain:.2f}x; target <= 1.5x)")
    print(json.dumps({"benchmark": "web", "metric": "event recorded -> arrived on SSE",
                      "unit": "s", "value": round(med_sse, 4), "baseline": round(med_cli, 4),
                      "ratio": round(med_sse / med_cli, 3), "target": 1.0,
                      "target_on": "ratio", "p99": round(p99, 4),
                      "memory_ratio": round(rss_web / rss_plain, 3)}))


if __name__ == "__main__":
    main()
