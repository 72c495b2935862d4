"""The demo agent: a deterministic scripted coding agent that runs in a terminal like the real
ones. It draws an input line (`demo› `), takes bracketed pastes and typed text as a draft, clears
the draft on Escape, and on Enter does what the message says:

- ```` ```demo ```` blocks are scripts run at once;
- ```` ```demo-on KEYWORD ```` blocks are remembered and run once, when a later message
  contains KEYWORD (how the demo plays "fix the failing test" or "address the review");
- a message with neither is noted in `notes/<task>.md`, committed and pushed.

Script commands, one a line: `write PATH` / `append PATH` (content lines up to `EOF`),
`replace PATH OLD => NEW`, `sh COMMAND`, `commit MESSAGE`, `push`, `rebase`, `sleep SECONDS`,
`ask QUESTION` (a permission prompt: Enter or 1 answers yes, 2 or Escape no), `exit [CODE]`,
`limit MINUTES` (prints a usage-limit message resetting then, as Claude Code does, and ends the
turn: the rest of the script is not run). Escape during `sh` or `sleep` interrupts the turn, as
it does a real agent's; a usage-limit line in a `sh` command's output ends it as `limit` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path

from ao.decide.limits import SAYS_LIMIT

PROMPT = "demo› "
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
_REVIEW_ROUND = re.compile(r"^AO-REVIEW-ROUND (\d+)\s*$", re.M)
_VERDICT_TO = re.compile(r"Write your verdict as JSON to (\S+) \(and nothing")
_REVIEW_BLOCK = re.compile(r"```demo-review[ \t]*\n(.*?)```", re.S)
_BLOCK = re.compile(r"```demo(?:-on[ \t]+(?P<on>[^\n`]+))?[ \t]*\n(?P<body>.*?)```", re.S)


def out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True, timeout=120)


class Agent:
    def __init__(self) -> None:
        self.task = os.environ.get("AO_TASK", "task")
        self.rules_file = Path(os.environ.get("AO_SESSION_DIR", ".")) / "demo-rules.json"
        try:
            self.rules: list[dict[str, str]] = json.loads(self.rules_file.read_text())
        except (OSError, ValueError):
            self.rules = []
        self.default_branch = os.environ.get("AO_DEFAULT_BRANCH", "main")
        self.remote = os.environ.get("AO_REMOTE", "origin")
        self.typed = ""  # keys that came while a step ran: read at the next prompt

    # ---- terminal -------------------------------------------------------------------------

    def read_key(self, timeout: float | None = None) -> str:
        r, _, _ = select.select([sys.stdin], [], [], timeout)
        if not r:
            return ""
        return os.read(sys.stdin.fileno(), 65536).decode("utf-8", "replace")

    def draw(self, draft: str) -> None:
        if "\n" in draft or len(draft) > 60:
            shown = f"[pasted {len(draft)} chars, {draft.count(chr(10)) + 1} lines]"
        else:
            shown = draft
        out(f"\r\x1b[K{PROMPT}{shown}")

    def loop(self) -> None:
        out(f"ao demo agent · task {self.task}\r\n")
        out("\x1b[?2004h")  # ask the terminal for bracketed paste
        draft = ""
        pending = ""
        in_paste = False
        self.draw(draft)
        while True:
            chunk = self.typed or self.read_key()
            self.typed = ""
            if not chunk:
                continue
            pending += chunk
            while pending:
                if in_paste:
                    end = pending.find(PASTE_END)
                    if end < 0:
                        draft += pending.replace("\r", "\n")
                        pending = ""
                        break
                    draft += pending[:end].replace("\r", "\n")
                    pending = pending[end + len(PASTE_END):]
                    in_paste = False
                    continue
                if pending.startswith(PASTE_START):
                    in_paste, pending = True, pending[len(PASTE_START):]
                    continue
                if PASTE_START.startswith(pending):  # a marker split across reads
                    more = self.read_key(0.05)
                    if more:
                        pending += more
                        continue
                draft = self.key(pending[0], draft)
                pending = pending[1:]
            self.draw(draft)

    def key(self, ch: str, draft: str) -> str:
        """One key typed (not pasted) into the draft: the draft after it."""
        if ch in "\x1b\x15":  # Escape clears the input, as real agents do; so does C-u
            return ""
        if ch in "\r\n":
            if draft.strip():
                out("\r\n")
                self.handle(draft)
            return ""
        if ch in "\x7f\x08":
            return draft[:-1]
        return draft + ch if ch >= " " or ch == "\t" else draft

    # ---- work -----------------------------------------------------------------------------

    def handle(self, message: str) -> None:
        # logged before anything shows: a send confirmed by the screen has reached the inbox
        self.log_received(message)
        out(f"● received {len(message)} chars\r\n")
        out("working… (esc to interrupt)\r\n")
        review = _REVIEW_ROUND.search(message)
        if review:  # the reviewer: reads, runs nothing of the task's scripts, answers
            self.review(message, int(review.group(1)))
            out(f"✓ done · {time.strftime('%H:%M:%S')}\r\n")
            return
        scripts = []
        text_only = _BLOCK.sub("", message)
        # rules from earlier messages first: a rule never fires on the message that made it
        for rule in list(self.rules):
            if rule["on"] in text_only:
                scripts.append(rule["script"])
                self.rules.remove(rule)
        for m in _BLOCK.finditer(message):
            if m.group("on"):
                self.rules.append({"on": m.group("on").strip(), "script": m.group("body")})
            else:
                scripts.append(m.group("body"))
        self.save_rules()
        if not scripts:
            scripts.append(self.default_script(message))
        for script in scripts:
            if self.run(script) is STOP:
                break  # interrupted, or at the usage limit: the turn ends here
        out(f"✓ done · {time.strftime('%H:%M:%S')}\r\n")

    def review(self, message: str, round_: int) -> None:
        """A verdict from the task's ```demo-review block: lines `N: approve SUMMARY` or
        `N: request_changes PATH:LINE COMMENT`; round N's line, else the last; approve when
        there is no block."""
        target = _VERDICT_TO.search(message)
        if not target:
            out("  no verdict file named\r\n")
            return
        block = _REVIEW_BLOCK.search(message)
        rules = {}
        for line in (block.group(1) if block else "").splitlines():
            n, _, rest = line.strip().partition(":")
            if n.strip().isdigit():
                rules[int(n)] = rest.strip()
        rule = rules.get(round_) or (rules[max(rules)] if rules else "approve Looks right.")
        verdict, _, rest = rule.partition(" ")
        answer: dict[str, object] = {"verdict": verdict, "summary": rest, "comments": []}
        if verdict == "request_changes":
            where, _, comment = rest.partition(" ")
            path, _, line = where.partition(":")
            answer = {"verdict": verdict, "summary": comment, "comments": [
                {"path": path, "line": int(line) if line.isdigit() else None,
                 "body": comment}]}
        time.sleep(0.5)
        f = Path(target.group(1))
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f.name + ".tmp")
        tmp.write_text(json.dumps(answer), encoding="utf-8")
        tmp.replace(f)  # whole or not at all: ao may read it at any moment
        out(f"  verdict: {verdict} (round {round_})\r\n")

    def log_received(self, message: str) -> None:
        """Every message exactly as it arrived, one JSON line each (what tests compare)."""
        with contextlib.suppress(OSError), (self.rules_file.parent / "demo-inbox.jsonl").open(
                "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"ts": time.time(), "text": message}) + "\n")

    def save_rules(self) -> None:
        with contextlib.suppress(OSError):
            self.rules_file.write_text(json.dumps(self.rules))

    def default_script(self, message: str) -> str:
        first = next((ln.strip().lstrip("#").strip() for ln in message.splitlines()
                      if ln.strip().lstrip("#").strip()), "note")[:72]
        path = f"notes/{self.task.lower()}.md"
        subject = first.removeprefix(f"{self.task}:").strip() or first  # "# X-1: title"
        return f"append {path}\n- {first}\nEOF\ncommit {self.task}: {subject}\npush\n"

    def run(self, script: str) -> object:
        steps = {"write": self._write, "append": self._write, "replace": self._replace,
                 "sh": self._sh, "commit": self._commit, "push": self._push,
                 "rebase": lambda _c, _a, _b: self.rebase(), "sleep": self._sleep,
                 "ask": lambda _c, a, _b: self.ask(a or "Run the command?"),
                 "limit": self._limit, "exit": self._exit}
        for cmd, arg, body, line in _parse_script(script):
            step = steps.get(cmd)
            if step is None:
                out(f"  ? unknown step: {line.strip()[:60]}\r\n")
            elif step(cmd, arg, body) is STOP:
                return STOP
        return None

    def _write(self, cmd: str, arg: str, body: list[str]) -> None:
        path = Path(arg.strip())
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w" if cmd == "write" else "a", encoding="utf-8") as fh:
            fh.write("\n".join(body) + "\n")
        out(f"  {cmd} {path}\r\n")

    def _replace(self, _cmd: str, arg: str, _body: list[str]) -> None:
        path_s, _, rest = arg.partition(" ")
        old, _, new = rest.partition(" => ")
        path = Path(path_s)
        path.write_text(path.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")
        out(f"  edit {path}\r\n")

    def _sh(self, _cmd: str, arg: str, _body: list[str]) -> object:
        """The command run while the keyboard is watched: Escape interrupts it (the turn ends
        as the real agents' do, "Interrupted"); other keys wait for the next prompt. A
        usage-limit line in its output ends the turn with that line shown, as a model call
        refused at the limit does."""
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen(arg, shell=True, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            if self._wait(proc.poll, 300) is STOP:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return STOP
            log.seek(0)
            output = log.read().decode("utf-8", "replace")
        out(f"  $ {arg} -> {proc.returncode}\r\n")
        hit = next((ln for ln in output.splitlines() if SAYS_LIMIT.search(ln)), None)
        if hit:
            out(f"{hit.strip()}\r\n")
            return STOP
        return None

    def _wait(self, done: Callable[[], object], seconds: float) -> object:
        """Until `done()` is not None or the time is up; STOP when Escape came first."""
        deadline = time.monotonic() + seconds
        while done() is None and time.monotonic() < deadline:
            key = self.read_key(0.1)
            if key.startswith("\x1b") and not key.startswith(PASTE_START):
                out("  ⎿  Interrupted · What should the agent do instead?\r\n")
                self.typed += key[1:]
                return STOP
            self.typed += key
        return None

    def _commit(self, _cmd: str, arg: str, _body: list[str]) -> None:
        git("add", "-A")
        r = git("commit", "-q", "-m", arg or f"{self.task}: work")
        out(f"  commit: {arg if r.returncode == 0 else 'nothing to commit'}\r\n")

    def _push(self, _cmd: str, _arg: str, _body: list[str]) -> None:
        r = git("push", "-q", "--force-with-lease", "-u", self.remote, "HEAD")
        out(f"  push: {'ok' if r.returncode == 0 else r.stderr.strip()[-120:]}\r\n")

    def _sleep(self, _cmd: str, arg: str, _body: list[str]) -> object:
        return self._wait(lambda: None, min(float(arg or 1), 30))

    def _limit(self, _cmd: str, arg: str, _body: list[str]) -> object:
        reset = time.gmtime(time.time() + float(arg or 60) * 60)
        hour = reset.tm_hour % 12 or 12
        ampm = "am" if reset.tm_hour < 12 else "pm"
        out(f"You've hit your session limit · resets {hour}:{reset.tm_min:02d}{ampm}"
            " (UTC)\r\n")
        return STOP

    def _exit(self, _cmd: str, arg: str, _body: list[str]) -> None:
        out("bye\r\n")
        raise SystemExit(int(arg or 0))

    def rebase(self) -> None:
        git("fetch", "-q", self.remote, self.default_branch)
        r = git("rebase", f"{self.remote}/{self.default_branch}")
        rounds = 0
        while r.returncode != 0 and rounds < 20:
            rounds += 1
            conflicted = git("diff", "--name-only", "--diff-filter=U").stdout.split()
            if not conflicted:
                git("rebase", "--abort")
                out("  rebase: failed\r\n")
                return
            for name in conflicted:
                p = Path(name)
                p.write_text(union(p.read_text(encoding="utf-8")), encoding="utf-8")
                git("add", name)
            r = subprocess.run(["git", "-c", "core.editor=true", "rebase", "--continue"],
                               capture_output=True, text=True)
        out(f"  rebase: {'ok' if r.returncode == 0 else 'failed'}\r\n")

    def ask(self, question: str) -> None:
        out(f"\r\n{question}\r\nDo you want to proceed?\r\n❯ 1. Yes\r\n  2. No\r\n"
            "Esc to cancel\r\n")
        while True:
            key = self.read_key()
            if PASTE_START in key:
                continue  # a paste during the prompt is dropped, as with the real agents
            if key.startswith(("\r", "\n", "1", "y")):
                out("  answered: yes\r\n")
                return
            if key.startswith(("2", "n", "\x1b")):
                out("  answered: no\r\n")
                return


STOP = object()  # a step after which the turn ends (a usage limit, an interrupt)


def _parse_script(script: str) -> list[tuple[str, str, list[str], str]]:
    """The script's steps: (command, argument, body, line); `write` and `append` take the
    lines up to `EOF` as their body; blank lines and comments are skipped."""
    lines = script.splitlines()
    steps = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        i += 1
        cmd, _, arg = line.strip().partition(" ")
        if not cmd or cmd.startswith("#"):
            continue
        body: list[str] = []
        if cmd in ("write", "append"):
            while i < len(lines) and lines[i].rstrip() != "EOF":
                body.append(lines[i])
                i += 1
            i += 1
        steps.append((cmd, arg, body, line))
    return steps


def union(text: str) -> str:
    """Resolve conflict markers by keeping both sides, ours first."""
    return re.sub(r"<<<<<<< [^\n]*\n(.*?)=======\n(.*?)>>>>>>> [^\n]*\n", r"\1\2", text,
                  flags=re.S)


def main() -> None:
    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd) if os.isatty(fd) else None
    if old is not None:
        tty.setcbreak(fd)
    try:
        Agent().loop()
    except (KeyboardInterrupt, EOFError):
        pass
    finally:
        out("\x1b[?2004l")
        if old is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)


if __name__ == "__main__":
    main()
