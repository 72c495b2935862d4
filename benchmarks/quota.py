"""A usage limit the whole fleet respects: six demo agents work against a local fake model API
(each turn a request every few seconds, as an agent's model calls come), a real daemon at a
2 s poll. The API's quota runs out for the account about 20 s before a minute's turn, and it
answers every request with the limit message, its reset at that minute, until then. The first
agent to hit the wall shows Claude Code's limit line; ao parks the other five.

Measured:
- requests that ran into the wall after ao saw the first limit (target 0: parked agents make
  none), and tokens served to any session while the limit held (target 0);
- seconds from the reset to every session working again, its first request served (target
  <= one poll, 2 s).

Run: python benchmarks/quota.py [--sessions 6]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sandbox import Sandbox, git, sandbox

POLL = 2.0
TOKENS = 1200  # served per request

WORK = r'''
import json, random, sys, time, urllib.request, urllib.error
url, sid, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
random.seed(sid)
end = time.time() + seconds
while time.time() < end:
    req = urllib.request.Request(url, data=json.dumps({"session": sid}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=10).read()
    except urllib.error.HTTPError as e:
        if e.code == 429:
            print(json.loads(e.read())["message"])
            sys.exit(0)
    time.sleep(random.uniform(4, 8))
'''


class Quota:
    """The account's quota: open, then spent from `limit_at` until `reset_at`."""

    def __init__(self) -> None:
        self.limit_at = float("inf")
        self.reset_at = 0.0
        self.log: list[tuple[float, str, int]] = []  # (time, session, tokens or -1: refused)
        self.lock = threading.Lock()

    def answer(self, sid: str) -> tuple[int, dict[str, object]]:
        now = time.time()
        with self.lock:
            if self.limit_at <= now < self.reset_at:
                self.log.append((now, sid, -1))
                r = time.gmtime(self.reset_at)
                hour = r.tm_hour % 12 or 12
                ampm = "am" if r.tm_hour < 12 else "pm"
                return 429, {"message": f"You've hit your session limit · resets "
                                        f"{hour}:{r.tm_min:02d}{ampm} (UTC)"}
            self.log.append((now, sid, TOKENS))
            return 200, {"usage": {"output_tokens": TOKENS}}


def serve(quota: Quota) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            code, answer = quota.answer(str(body["session"]))
            data = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/v1/work"


def demo(script: str) -> str:
    return f"```demo\n{script}\n```"


def events(sb: Sandbox, kind: str) -> list[dict[str, object]]:
    log = sb.root / "ao" / "logs" / "events.log"
    if not log.exists():
        return []
    return [e for e in map(json.loads, log.read_text().splitlines()) if e["type"] == kind]


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def run(sb: Sandbox, n: int) -> dict[str, float]:
    quota = Quota()
    httpd, url = serve(quota)
    work = sb.root / "work.py"
    work.write_text(WORK)
    py = sys.executable
    tasks = {f"Q-{i}": {"title": f"task {i}", "body": demo(
        f"sh {py} {work} {url} Q-{i} 150") + "\n```demo-on continue\n" +
        f"sh {py} {work} {url} Q-{i} 8\n```"} for i in range(1, n + 1)}
    (sb.work / "plan.yaml").write_text(json.dumps({"tasks": tasks}))
    git(sb.work, "add", "-A")
    git(sb.work, "commit", "-q", "-m", "plan")
    sb.config(POLL, agent="demo", max_concurrent=n, require_review=False)
    with sb.daemon():
        r = sb.ao("plan", "run", str(sb.work / "plan.yaml"), "-p", "bench", check=False)
        if r.returncode != 0:
            raise SystemExit(f"plan run failed: {r.stdout}{r.stderr}")
        wait(lambda: len({s for _, s, k in quota.log if k > 0}) == n, 90,
             "every agent working")
        # the quota runs out ~20 s before a minute's turn: the limit line's reset is that minute
        while int(time.time()) % 60 != 40:
            time.sleep(0.05)
        with quota.lock:
            quota.limit_at = time.time()
            quota.reset_at = (int(quota.limit_at) // 60 + 1) * 60.0
        wait(lambda: events(sb, "agent.limit_parked") or len(events(sb, "attention.limited"))
             >= n, 40, "ao to see the limit")
        seen = min(_epoch(str(e["ts"])) for e in events(sb, "agent.limit_parked") +
                   events(sb, "attention.limited"))

        def all_back() -> bool:
            back = {s for t, s, k in quota.log if k > 0 and t >= quota.reset_at}
            return len(back) == n
        wait(all_back, (quota.reset_at - time.time()) + 30, "every agent working again")
    httpd.shutdown()
    walled = sum(1 for t, _, k in quota.log if k < 0 and t > seen)
    served_limited = sum(k for t, _, k in quota.log
                         if k > 0 and quota.limit_at <= t < quota.reset_at)
    firsts = {}
    for t, s, k in quota.log:
        if k > 0 and t >= quota.reset_at and s not in firsts:
            firsts[s] = t
    parked = len(events(sb, "session.parked"))
    return {"walled": walled, "served": served_limited, "parked": parked,
            "seen_after": seen - quota.limit_at,
            "back": max(firsts.values()) - quota.reset_at,
            "hit": sum(1 for t, _, k in quota.log if k < 0 and t <= seen)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=6)
    n = ap.parse_args().sessions
    with sandbox("ao-quota-") as sb:
        m = run(sb, n)
    print(f"{n} sessions; the first limit seen {m['seen_after']:.1f} s after the quota ran "
          f"out ({m['hit']:.0f} request(s) refused before that); {m['parked']:.0f} parked")
    print(f"requests into the wall after ao saw the limit: {m['walled']:.0f} (target 0); "
          f"tokens served while limited: {m['served']:.0f} (target 0)")
    print(f"reset to every session working again: {m['back']:.2f} s "
          f"(target <= one poll, {POLL:.0f} s)")


if __name__ == "__main__":
    main()
