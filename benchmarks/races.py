"""Races between actors, with the real Claude Code against a local fake of the Messages API
and a real daemon at a 1 s poll: kills racing the daemon's restore, queued deliveries right
after a submit, a person's drafts; and, with the daemon at its default 30 s poll, the time from
a permission prompt dismissed with Escape (no hook fires) to the held message's delivery.

Counts, each against a target of 0: agents left alive after `ao session kill`; turns
interrupted (Claude Code's "[Request interrupted by user]"), messages glued together or sent
twice; drafts lost. The dismissal time has a target of 1.5 s, against the poll it used to wait.

Needs the `claude` CLI (`.ci/run` installs it); without it, says so and exits 0.
Run: python benchmarks/races.py [--kills 20] [--deliveries 20] [--drafts 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from sandbox import Sandbox, git, sandbox

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fake_anthropic import FakeAnthropic, Reply, serve

KEY = "sk-ant-bench-0123456789abcdefghijklmnop"


def wait(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def screen(sb: Sandbox, sid: str) -> str:
    return subprocess.run(["tmux", "-L", "bench", "capture-pane", "-p", "-t", f"={sid}:"],
                          env=sb.env, capture_output=True, text=True).stdout


def keys(sb: Sandbox, sid: str, *k: str) -> None:
    subprocess.run(["tmux", "-L", "bench", "send-keys", "-t", f"={sid}:", *k], env=sb.env,
                   check=True)


def prepare(sb: Sandbox, fake: FakeAnthropic, tasks: int, poll: float, **agent: str) -> None:
    for k, v in {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": KEY,
                 "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
                 "DISABLE_AUTOUPDATER": "1"}.items():
        sb.env[k] = os.environ[k] = v
    plan = {"tasks": {f"T-{i}": {"title": f"task {i}", "body": "say done"}
                      for i in range(1, tasks + 1)}}
    (sb.work / "plan.yaml").write_text(json.dumps(plan))
    git(sb.work, "add", "-A")
    git(sb.work, "commit", "-q", "-m", "plan")
    sb.config(poll, agent={"name": "claude-code", **agent}, require_review=False)


def spawn(sb: Sandbox, *tasks: str) -> list[str]:
    from ao.record.store import Store

    r = sb.ao("batch-spawn", "bench", *tasks, "--plan", str(sb.work / "plan.yaml"),
              check=False)
    if r.returncode != 0:
        raise SystemExit(f"batch-spawn failed: {r.stdout}{r.stderr}")
    store = Store(sb.root / "ao" / "state.db")
    return [store.sessions("bench", task=t)[-1].id for t in tasks]


def turn_over(sb: Sandbox, fake: FakeAnthropic, sid: str, task: str) -> bool:
    """The task's first prompt reached the model, and the agent is back at its input box."""
    if not any(f"# {task}:" in t for t in fake.user_texts()):
        return False
    sc = screen(sb, sid)
    return "esc to interrupt" not in sc and "❯" in sc


def agents_of(sb: Sandbox, sid: str) -> list[int]:
    """The session's agent processes (its hooks' short runs aside)."""
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            environ = p.environ()
            if environ.get("AO_SESSION") == sid and environ.get("AO_HOME") == \
                    sb.env["AO_HOME"] and " hook " not in " ".join(p.cmdline()) and \
                    p.status() != psutil.STATUS_ZOMBIE:
                found.append(p.pid)
        except psutil.Error:
            continue
    return found


def kills(sb: Sandbox, fake: FakeAnthropic, n: int) -> int:
    """`ao session kill` right after each agent's turn, the daemon polling every second."""
    alive = 0
    for start in range(1, n + 1, 5):
        batch = [f"T-{i}" for i in range(start, min(n, start + 4) + 1)]
        sids = spawn(sb, *batch)
        for sid, task in zip(sids, batch, strict=True):
            wait(lambda sid=sid, task=task: turn_over(sb, fake, sid, task), 90,
                 f"{sid}'s first turn")
        for sid in sids:
            sb.ao("session", "kill", sid)
        time.sleep(3.5)  # three polls of the daemon after the kills
        alive += sum(1 for sid in sids if agents_of(sb, sid))
    return alive


def deliveries(sb: Sandbox, fake: FakeAnthropic, n: int) -> dict[str, int]:
    """A message, then at once another: the second is queued (busy) and delivered by the
    daemon after the turn; neither may interrupt a turn, be glued to the other, or go twice."""
    (sid,) = spawn(sb, "T-99")
    wait(lambda: turn_over(sb, fake, sid, "T-99"), 90, "the first turn")
    for i in range(n):
        sb.ao("send", sid, f"first-{i} please", check=False)
        sb.ao("send", sid, f"queued-{i} please", check=False)
        wait(lambda i=i: any(f"queued-{i}" in t for t in fake.user_texts()), 60,
             f"queued-{i} delivered")
    time.sleep(3)
    texts = fake.user_texts()
    markers = [f"{w}-{i} " for i in range(n) for w in ("first", "queued")]
    return {"interrupted": sum("[Request interrupted by user" in t for t in texts),
            "glued": sum(1 for t in texts if sum(m in t for m in markers) > 1),
            "doubled": sum(1 for m in markers if sum(m in t for t in texts) > 1),
            "lost": sum(1 for m in markers if not any(m in t for t in texts))}


def drafts(sb: Sandbox, fake: FakeAnthropic, n: int) -> int:
    """A person types during a turn; a message is sent meanwhile. After the turn and three
    polls the draft must still be in the box, and the message still held."""
    (sid,) = spawn(sb, "T-98")
    wait(lambda: turn_over(sb, fake, sid, "T-98"), 90, "the first turn")
    lost = 0
    for i in range(n):
        fake.script.append(Reply(text="working on it", delay=3))
        sb.ao("send", sid, f"work-{i}", check=False)
        wait(lambda: "esc to interrupt" in screen(sb, sid), 20, "the turn")
        keys(sb, sid, "-l", f"person draft {i}")
        sb.ao("send", sid, f"held-{i}", check=False)
        wait(lambda i=i: "esc to interrupt" not in screen(sb, sid), 30, "the turn's end")
        time.sleep(3.5)
        if f"person draft {i}" not in screen(sb, sid) or \
                any(f"held-{i}" in t for t in fake.user_texts()):
            lost += 1
        for _ in range(2):  # the person sends their draft; the held message follows
            keys(sb, sid, "Enter")
        wait(lambda i=i: any(f"held-{i}" in t for t in fake.user_texts()), 60,
             f"held-{i} delivered after the draft went")
    return lost


def dismissal(fake: FakeAnthropic) -> float:
    """Seconds from Escape on a permission prompt to the held message's delivery, with the
    daemon at a 30 s poll."""
    from ao.record.store import Store

    with sandbox("ao-bench-dismiss-") as sb:
        prepare(sb, fake, 1, 30, permission_mode="default")
        fake.script[:] = [Reply(text="I will create a file.", tool="Bash",
                                tool_input={"command": "touch x.txt", "description": "x"}),
                          Reply(text="Understood.")]
        with sb.daemon():
            (sid,) = spawn(sb, "T-1")
            wait(lambda: "Do you want to proceed?" in screen(sb, sid), 60, "the prompt")
            time.sleep(3)  # the daemon has seen it
            sb.ao("send", sid, "held while the prompt is up", check=False)
            time.sleep(2)
            keys(sb, sid, "Escape")
            t0 = time.time()
            store = Store(sb.root / "ao" / "state.db")
            wait(lambda: any(m["status"] == "delivered" and m["source"] == "user"
                             for m in store.messages(sid)), 45, "the held message")
            done = [float(m["delivered_at"]) for m in store.messages(sid)
                    if m["source"] == "user"]
            return done[0] - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--deliveries", type=int, default=20)
    ap.add_argument("--drafts", type=int, default=10)
    args = ap.parse_args()
    if shutil.which("claude") is None:
        print("races: skipped, the Claude Code CLI (`claude`) is not installed; `.ci/run` "
              "installs it")
        return
    with serve() as fake:
        fake.default = Reply(text="done", delay=1.0)
        with sandbox("ao-bench-races-") as sb:
            prepare(sb, fake, 100, 1)
            with sb.daemon():
                left = kills(sb, fake, args.kills)
                print(f"kills: {args.kills}, agents left alive: {left} (target 0)")
                went = deliveries(sb, fake, args.deliveries)
                print(f"deliveries right after a submit: {args.deliveries} pairs; " +
                      ", ".join(f"{k} {v}" for k, v in went.items()) + " (target 0 each)")
                lost = drafts(sb, fake, args.drafts)
                print(f"drafts: {args.drafts}, lost or sent over: {lost} (target 0)")
        fake.default = Reply(text="done")
        seconds = dismissal(fake)
        print(f"hook-less dismissal -> held message delivered: {seconds:.2f}s with a 30 s "
              "poll (target <= 1.5s)")
    bad = left + sum(went.values()) + lost
    print(json.dumps({"benchmark": "races", "metric": "bad outcomes (kills, deliveries, "
                      "drafts)", "unit": "count", "value": bad, "target": 0,
                      "dismissal_s": round(seconds, 2), "dismissal_target_s": 1.5,
                      "baseline": 30.0, "ratio": round(seconds / 30.0, 4)}))


if __name__ == "__main__":
    main()
