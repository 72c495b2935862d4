"""Commands on an SSH host over a shell that stays open (the runner's transport, hosts.py).

`ssh host -- cmd` costs an sshd session per command even over a multiplexed connection: a
fork, the login's PAM and shell start-up, about 0.1 s on an idle machine and several times
that under load, and ao sends many small commands (a start, a screen look, a key). A channel
is one `ssh host` running a small read-eval loop in `sh`; each command is a frame on its
standard input and its answer a frame on its standard output, so a command costs the
command alone.

Frames: ao writes `<script bytes> <input bytes>\\n`, then the script (a shell command line,
what ssh would have run) and the command's standard input; the loop runs the script with
`sh` in the login's environment and home, its output in files, and answers
`<exit status> <stdout bytes> <stderr bytes>\\n` and both. `head -c` reads exact byte counts
(GNU coreutils and busybox read no further than asked, so a frame never eats the next).

Channels are pooled per destination; a thread takes an idle one or opens another, so starts
that run beside each other stay beside each other. A command that outlives its timeout, or
a channel whose ssh ends, is closed and never reused: the next command opens a new one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

# The loop. Each reads a frame whole or ends the channel (a short read, a header that is not
# two numbers, a file it cannot write: the next frame would be read from the middle of this
# one), runs the script in a subshell with the command's stdin, stdout and stderr in files
# of its own (a process the command leaves in the background cannot hold the answer back),
# and answers with the byte counts.
#
# With bash 4.1 or later (`read -N`; most hosts) a command costs the subshell's fork and the
# command's exec: bash reads, counts and prints with builtins, in locale C for its own
# reading only; the login's LC_ALL, or its absence, is put back in the subshell, so commands
# (and agents a tmux server started by one inherits) keep the login's locale. A NUL byte in a
# command's output ends that output there (ao's commands print text; binary travels as
# base64). Without bash, POSIX sh and a few coreutils a command, byte for byte.
_BASH = r"""[ "${BASH_VERSINFO[0]}${BASH_VERSINFO[1]}" -ge 41 ] 2>/dev/null || exec sh -c "$1"
if [ "${LC_ALL+set}" = set ]; then lc=$LC_ALL; lcset=1; else lcset=; fi
LC_ALL=C
d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
k=0
while IFS=' ' read -r n m; do
  case "$n:$m" in *[!0-9:]*|:*|*:) exit 1;; esac
  IFS= read -r -d '' -N "$n" s; [ "${#s}" -eq "$n" ] || exit 1
  # files of their own a command (a writer it left behind keeps its own); swept now and then
  k=$((k + 1)); in="$d/i$k" out="$d/o$k" err="$d/e$k"
  if [ $((k % 64)) -eq 0 ]; then rm -f "$d"/[ioe]* || exit 1; fi
  if [ "$m" -gt 0 ]; then
    head -c "$m" > "$in" && [ "$(wc -c < "$in")" -eq "$m" ] || exit 1
  else : > "$in" || exit 1; fi
  : > "$out" && : > "$err" || exit 1
  ( if [ -n "$lcset" ]; then LC_ALL=$lc; else unset LC_ALL; fi
    eval "$s" ) < "$in" > "$out" 2> "$err"; rc=$?
  o=; e=
  IFS= read -r -d '' o < "$out"; IFS= read -r -d '' e < "$err"
  printf '%s %s %s\n%s%s' "$rc" "${#o}" "${#e}" "$o" "$e"
done
"""
_SH = r"""d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
while IFS=' ' read -r n m; do
  case "$n:$m" in *[!0-9:]*|:*|*:) exit 1;; esac
  rm -f "$d/s" "$d/i" "$d/o" "$d/e"
  head -c "$n" > "$d/s" && head -c "$m" > "$d/i" || exit 1
  [ "$(wc -c < "$d/s")" -eq "$n" ] && [ "$(wc -c < "$d/i")" -eq "$m" ] || exit 1
  : > "$d/o" && : > "$d/e" || exit 1
  sh "$d/s" < "$d/i" > "$d/o" 2> "$d/e"; rc=$?
  no=$(wc -c < "$d/o") && ne=$(wc -c < "$d/e") || exit 1
  printf '%s %s %s\n' "$rc" $no $ne
  head -c $no "$d/o"; head -c $ne "$d/e"
done
"""
# Started by the login's shell, whatever it is (sh, bash, zsh, fish: a plain `exec` of a
# quoted string parses in each), which has read its startup files (a bash started by sshd
# reads ~/.bashrc): the loop inherits what they exported and does not read them again.
_PICK = ('if command -v bash >/dev/null 2>&1; then exec bash --norc --noprofile -c "$0" ao '
         '"$1"; else exec sh -c "$1"; fi')
LOOP = " ".join(["exec", "/bin/sh", "-c", *map(shlex.quote, (_PICK, _BASH, _SH))])
IDLE_KEPT = 6  # idle channels kept per destination; more are closed when handed back


@dataclass(frozen=True)
class Answer:
    returncode: int
    stdout: bytes
    stderr: bytes


class Broken(Exception):
    """The channel ended or did not answer in time: the command may or may not have run."""

    def __init__(self, why: str, timed_out: bool = False, sent: bool = True) -> None:
        super().__init__(why)
        self.timed_out = timed_out
        self.sent = sent  # False: the channel had ended before the command was written


class Channel:
    def __init__(self, ssh: tuple[str, ...]) -> None:
        self.proc = subprocess.Popen(
            [*ssh, "--", LOOP], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.buf = bytearray()  # grown in place: a large answer is not copied per chunk

    def run(self, script: str, input: bytes, timeout: float) -> Answer:
        body = script.encode()
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f"{len(body)} {len(input)}\n".encode() + body + input)
            self.proc.stdin.flush()
        except OSError:
            raise Broken(self._why_ended(), sent=False) from None
        deadline = time.monotonic() + timeout
        head = self._line(deadline).split()
        if len(head) != 3 or not all(x.isdigit() for x in head):
            raise Broken(f"the host's shell answered {b' '.join(head)[:80]!r}")
        rc, n_out, n_err = (int(x) for x in head)
        out = self._exactly(n_out, deadline)
        return Answer(rc, out, self._exactly(n_err, deadline))

    def _fill(self, deadline: float) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise Broken("no answer in time", timed_out=True)
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise Broken(self._why_ended())
        self.buf += chunk

    def _line(self, deadline: float) -> bytes:
        while (end := self.buf.find(b"\n")) < 0:
            self._fill(deadline)
        line = bytes(self.buf[:end])
        del self.buf[:end + 1]
        return line

    def _exactly(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _why_ended(self) -> str:
        """ssh's own last words (`Connection refused`, ...) once it has ended."""
        try:
            self.proc.wait(5)
            err = self.proc.stderr.read().decode("utf-8", "replace") if self.proc.stderr \
                else ""
        except (subprocess.TimeoutExpired, OSError):
            err = ""
        lines = [x for x in err.strip().splitlines() if x]
        return lines[-1] if lines else "the connection ended"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):  # unsent bytes to a channel that ended
                    f.close()


_IDLE: dict[tuple[str, ...], list[Channel]] = {}
_BUSY: dict[tuple[str, ...], int] = {}  # channels running a command now, per destination
_LOCK = threading.Lock()
_RETURNED = threading.Condition(_LOCK)  # a channel went back to the idle ones
# how long a command waits for a busy channel to come back before it opens another: most
# commands answer in milliseconds, and a new channel is a login on the host (its shell's
# start-up files included), tenths of a second of its CPU
REUSE_WAIT = 0.15


def run(ssh: tuple[str, ...], script: str, input: bytes = b"",
        timeout: float = 60) -> Answer:
    """Run the shell command line `script` on the destination of the ssh argv `ssh` (which
    ends with it), `input` on its standard input. Raises Broken when the channel could not
    answer (the connection ended, or `timeout` passed)."""
    ch = _take(ssh)
    try:
        return _run_on(ch, ssh, script, input, timeout)
    finally:
        with _LOCK:
            _BUSY[ssh] -= 1


def _take(ssh: tuple[str, ...]) -> Channel | None:
    """An idle channel to `ssh`, waiting a moment for a busy one to come back; None when
    there is none (a new one is opened). Counted busy from now."""
    with _RETURNED:
        idle = _IDLE.setdefault(ssh, [])
        if not idle and _BUSY.get(ssh, 0):
            _RETURNED.wait_for(lambda: bool(idle), timeout=REUSE_WAIT)
        _BUSY[ssh] = _BUSY.get(ssh, 0) + 1
        return idle.pop() if idle else None


def _run_on(ch: Channel | None, ssh: tuple[str, ...], script: str, input: bytes,
            timeout: float) -> Answer:
    if ch is not None and ch.proc.poll() is not None:
        ch.close()  # its ssh ended while idle: reaped, its pipes closed
        ch = None
    fresh = ch is None
    if ch is None:
        log.debug("opening a channel to %s", ssh[-1])
        ch = Channel(ssh)
    try:
        answer = ch.run(script, input, timeout)
    except Broken as e:
        log.debug("channel to %s ended (%s%s)", ssh[-1], e,
                  "" if e.sent else "; the command never left")
        ch.close()
        if e.sent or fresh:
            raise
        # an idle channel that had ended (the host restarted, the master went away): the
        # command never left, so it goes once more on a new channel
        return _run_on(None, ssh, script, input, timeout)
    except BaseException:
        ch.close()  # mid-frame: its next answer would be this one's rest
        raise
    with _RETURNED:
        idle = _IDLE.setdefault(ssh, [])
        if len(idle) < IDLE_KEPT:
            idle.append(ch)
            _RETURNED.notify()
            return answer
    ch.close()
    return answer


def close_all() -> None:
    """Close every idle channel (tests; ao's own exit closes them with their pipes)."""
    with _LOCK:
        chans = [c for idle in _IDLE.values() for c in idle]
        _IDLE.clear()
    for c in chans:
        c.close()


