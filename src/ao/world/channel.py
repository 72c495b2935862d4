"""Commands on an SSH host over a shell that stays open (the runner's transport, hosts.py).

`ssh host -- cmd` costs an sshd session per command even over a multiplexed connection: a
fork, the login's PAM and shell start-up (its ~/.bashrc: a `pyenv`, `nvm` or `conda` init
there costs tenths of a second of the host's CPU each time), and ao sends many small
commands (a start, a screen look, a key). A channel is one `ssh host` running a small loop
in the login's shell; each command is a frame on its standard input and its answer a frame
on its standard output, so a command costs the command alone, and a process logs in once a
host.

Frames: ao writes `<number> <script bytes> <input bytes>\\n`, then the script (a shell
command line, what ssh would have run) and the command's standard input. The loop starts
the command at once in the background, so commands from ao's threads run side by side on
one channel: a start's `git worktree add` holds up no screen look. Each command's output and
errors go to files of its own (a process it leaves in the background cannot hold the answer
back); when it ends, one writer answers `<number> <exit status> <stdout bytes> <stderr
bytes>\\n` and both, a whole frame at a time, in the order commands end. `head -c` reads exact
byte counts (GNU coreutils and busybox read no further than asked, so a frame never eats
the next).

One channel per destination and process. A command that gets no answer in its time is
given up; the channel stays for the others when anything came on it meanwhile or it answers
a frame that does nothing within PROBE_WAIT, and is otherwise taken for gone and closed (the
next command opens another, and learns at once whether the host answers). A channel whose
ssh ends fails the commands it was running; a command that never left (the channel had
ended before it was written) goes once more on a new one.
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

# The loops. Each reads a frame whole or ends the channel (a short read, a header that is
# not three numbers, a file it cannot write: the next frame would be read from the middle
# of this one). A command runs in a background subshell of its own with its stdout and
# stderr in files of its own (a process it leaves in the background cannot hold the answer
# back), its stdin a file when it has input; when it ends, the subshell writes its number
# and status to the writer's FIFO (a line that short is written whole) and the writer
# answers, and removes the command's files 64 commands at a time. The loop alone holds the
# FIFO open for writing (a command opens it a moment, both ways: never waiting on a writer
# that is gone, and nothing it leaves behind holds it): the loop ending, even by SIGKILL,
# ends the writer, and an ordinary end takes it along at once. Either way the channel's
# output closes and ao sees the end.
#
# With bash 4.1 or later (`read -N`; most hosts) a command costs its subshell's fork and
# the command's own fork and exec: bash reads, counts and prints with builtins, in locale C
# for its own reading only; the login's LC_ALL, or its absence, is put back in the
# command's subshell, so commands (and agents a tmux server started by one inherits) keep
# the login's locale; a command's `exit` still answers (the subshell's EXIT trap). A NUL
# byte in a command's output ends that output there (ao's commands print text; binary
# travels as base64). Without bash, POSIX sh and a few coreutils a command, byte for byte.
#
# The parts both loops share: their folder and FIFO, then (after the writer's body) the
# writer in the background, the end that takes it along, and the frame's header
_OPEN_LOOP = r"""d=$(mktemp -d) || exit 1
mkfifo "$d/done" || { rm -rf "$d"; exit 1; }
set --
while IFS=' ' read -r id rc; do
"""
_HEADER = r"""  set -- "$@" "$d/s$id" "$d/i$id" "$d/o$id" "$d/e$id"
  if [ $# -ge 256 ]; then rm -f "$@"; set --; fi
done < "$d/done" &
w=$!
trap 'kill "$w" 2>/dev/null; rm -rf "$d"' EXIT
trap 'exit 1' HUP TERM
exec 3> "$d/done"
while IFS=' ' read -r id n m; do
  case "$id:$n:$m" in *[!0-9:]*|:*|*:|*::*) exit 1;; esac
"""
_BASH = r"""[ "${BASH_VERSINFO[0]}${BASH_VERSINFO[1]}" -ge 41 ] 2>/dev/null || exec sh -c "$1"
if [ "${LC_ALL+set}" = set ]; then lc=$LC_ALL; lcset=1; else lcset=; fi
LC_ALL=C
""" + _OPEN_LOOP + r"""  o=; e=
  IFS= read -r -d '' o < "$d/o$id"; IFS= read -r -d '' e < "$d/e$id"
  printf '%s %s %s %s\n%s%s' "$id" "$rc" "${#o}" "${#e}" "$o" "$e"
""" + _HEADER + r"""  IFS= read -r -d '' -N "$n" s; [ "${#s}" -eq "$n" ] || exit 1
  in=/dev/null out="$d/o$id" err="$d/e$id"
  if [ "$m" -gt 0 ]; then
    in="$d/i$id"
    head -c "$m" > "$in" && [ "$(wc -c < "$in")" -eq "$m" ] || exit 1
  fi
  : > "$out" && : > "$err" || exit 1
  { trap 'echo "$id $?" 1<> "$d/done"' EXIT
    if [ -n "$lcset" ]; then LC_ALL=$lc; else unset LC_ALL; fi
    eval "$s" < "$in" > "$out" 2> "$err"; } > /dev/null 2>&1 3>&- &
done
"""
_SH = _OPEN_LOOP + r"""  no=$(wc -c < "$d/o$id") || no=0; ne=$(wc -c < "$d/e$id") || ne=0
  printf '%s %s %s %s\n' "$id" "$rc" $no $ne
  head -c $no "$d/o$id"; head -c $ne "$d/e$id"
""" + _HEADER + r"""  s="$d/s$id" in="$d/i$id" out="$d/o$id" err="$d/e$id"
  head -c "$n" > "$s" && head -c "$m" > "$in" || exit 1
  [ "$(wc -c < "$s")" -eq "$n" ] && [ "$(wc -c < "$in")" -eq "$m" ] || exit 1
  : > "$out" && : > "$err" || exit 1
  { sh "$s" < "$in" > "$out" 2> "$err"; echo "$id $?" 1<> "$d/done"; } > /dev/null 2>&1 3>&- &
done
"""
# Started by the login's shell, whatever it is (sh, bash, zsh, fish: a plain `exec` of a
# quoted string parses in each), which has read its startup files (a bash started by sshd
# reads ~/.bashrc): the loop inherits what they exported and does not read them again.
# umask 077 first: everything ao makes on a host (workdirs, session folders, pane logs, a
# tmux server and what its panes write) is the user's alone, whatever the login's umask
_PICK = ('umask 077; if command -v bash >/dev/null 2>&1; then exec bash --norc --noprofile -c '
         '"$0" ao "$1"; else exec sh -c "$1"; fi')
LOOP = " ".join(["exec", "/bin/sh", "-c", *map(shlex.quote, (_PICK, _BASH, _SH))])


PROBE_WAIT = 3.0  # how long a silent channel is given to answer a frame that does nothing


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


class _Ended(Exception):
    """The channel's output closed."""


class _Waiting:
    """A command sent and not yet answered."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: Answer | None = None
        self.why = ""


class Channel:
    """One `ssh` running the loop: commands from any thread, each answered by its number (a
    thread of its own reads the answers)."""

    def __init__(self, ssh: tuple[str, ...]) -> None:
        self.proc = subprocess.Popen(
            [*ssh, "--", LOOP], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.dest = ssh[-1]
        assert self.proc.stdin is not None
        self._in = self.proc.stdin.fileno()
        os.set_blocking(self._in, False)  # a frame is written within its command's time
        self._lock = threading.Lock()
        self._sending = threading.Lock()
        self._waiting: dict[int, _Waiting] = {}
        self._numbered = 0
        self.ended: str | None = None  # why, once the channel can answer nothing more
        self.heard = float("-inf")  # when anything last came on it (time.monotonic)
        self._reader = threading.Thread(target=self._read, name="ao-channel", daemon=True)
        self._reader.start()

    def run(self, script: str, input: bytes, timeout: float) -> Answer:
        if "\0" in script:  # the loop reads the script as text; so would exec, which refuses
            raise ValueError("embedded null byte")
        sent_at = time.monotonic()
        answer = self._call(script, input, timeout)
        if answer is not None:
            return answer
        with self._lock:
            silent = self.heard < sent_at
        # nothing at all since it was sent, and no answer to a frame that does nothing: the
        # host (or the link) is gone. A command that is only slow costs nobody the channel
        if silent and not self._answers(min(timeout, PROBE_WAIT)):
            log.debug("channel to %s: nothing heard for %gs; closed", self.dest, timeout)
            self.close(f"nothing heard from the host for {timeout:g}s")
        raise Broken("no answer in time", timed_out=True)

    def _call(self, script: str, input: bytes, timeout: float) -> Answer | None:
        """The command's answer, or None (given up on) when `timeout` passed first."""
        body = script.encode()
        waiting = _Waiting()
        with self._lock:
            if self.ended is not None:
                raise Broken(self.ended, sent=False)
            self._numbered += 1
            n = self._numbered
            self._waiting[n] = waiting
        deadline = time.monotonic() + timeout
        self._send(n, f"{n} {len(body)} {len(input)}\n".encode() + body + input, deadline)
        if waiting.done.wait(max(0.0, deadline - time.monotonic())):
            if waiting.answer is None:
                raise Broken(waiting.why)
            return waiting.answer
        self._forget(n)
        return None

    def _answers(self, wait: float) -> bool:
        """Whether the channel answers, within `wait`, a frame that does nothing."""
        try:
            return self._call(":", b"", wait) is not None
        except Broken:
            return False

    def _send(self, n: int, frame: bytes, deadline: float) -> None:
        """The frame, whole, before `deadline`; a frame cut short ends the channel (the loop
        would read the next one from its middle)."""
        view = memoryview(frame)
        with selectors.DefaultSelector() as sel:
            sel.register(self._in, selectors.EVENT_WRITE)
            if not self._sending.acquire(timeout=max(0.0, deadline - time.monotonic())):
                self._forget(n)
                raise Broken("no answer in time", timed_out=True, sent=False)
            try:
                while view:
                    left = deadline - time.monotonic()
                    if left <= 0 or not sel.select(left):
                        raise Broken("no answer in time", timed_out=True,
                                     sent=len(view) < len(frame))
                    try:
                        view = view[os.write(self._in, view):]
                    except BlockingIOError:
                        continue
                    except OSError:  # the channel's ssh has ended
                        raise Broken(self._why(), sent=len(view) < len(frame)) from None
            except Broken as e:
                self._forget(n)
                if e.sent:
                    self.close("a frame was cut short")
                raise
            finally:
                self._sending.release()

    def _forget(self, n: int) -> None:
        with self._lock:
            self._waiting.pop(n, None)

    def _read(self) -> None:
        """The reader's thread: answers handed to their commands until the channel ends."""
        assert self.proc.stdout is not None
        fd, buf = self.proc.stdout.fileno(), bytearray()
        why = None
        try:
            while True:
                while (end := buf.find(b"\n")) < 0:
                    self._more(fd, buf)
                head = bytes(buf[:end]).split()
                del buf[:end + 1]
                if len(head) != 4 or not all(x.isdigit() for x in head):
                    why = f"the host's shell answered {b' '.join(head)[:80]!r}"
                    break
                n, rc, n_out, n_err = (int(x) for x in head)
                while len(buf) < n_out + n_err:
                    self._more(fd, buf)
                answer = Answer(rc, bytes(buf[:n_out]), bytes(buf[n_out:n_out + n_err]))
                del buf[:n_out + n_err]
                with self._lock:
                    waiting = self._waiting.pop(n, None)
                if waiting is not None:  # else given up on: its time had passed
                    waiting.answer = answer
                    waiting.done.set()
        except _Ended:
            pass
        except OSError as e:  # its pipe closed under it: close() from another thread
            why = why or str(e)
        self._end(why or self._last_words())
        if self.proc.poll() is None:
            self.proc.kill()  # an answer it could not read: nothing later can be trusted

    def _more(self, fd: int, buf: bytearray) -> None:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise _Ended
        self.heard = time.monotonic()  # any byte: a long answer still coming is not silence
        buf += chunk  # grown in place: a large answer is not copied per chunk

    def _end(self, why: str) -> None:
        with self._lock:
            if self.ended is None:
                self.ended = why
            left, self._waiting = list(self._waiting.values()), {}
        for waiting in left:
            waiting.why = self.ended or why
            waiting.done.set()

    def _why(self) -> str:
        """Why the channel ended, as its reader heard it."""
        self._reader.join(5)
        return self.ended or "the connection ended"

    def _last_words(self) -> str:
        """ssh's own last words (`Connection refused`, ...) once it has ended: what it wrote,
        read without waiting for an end another holder of the pipe could hold back."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        err = b""
        if self.proc.stderr is not None:
            with contextlib.suppress(OSError, ValueError):  # nothing more for now, or closed
                fd = self.proc.stderr.fileno()
                os.set_blocking(fd, False)
                while chunk := os.read(fd, 1 << 16):
                    err += chunk
        lines = [x for x in err.decode("utf-8", "replace").strip().splitlines() if x]
        return lines[-1] if lines else "the connection ended"

    def close(self, why: str = "closed") -> None:
        """End the channel: its commands still running fail with `why`."""
        self._end(why)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if threading.current_thread() is not self._reader:
            self._reader.join(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):  # unsent bytes to a channel that ended
                    f.close()


_OPEN: dict[tuple[str, ...], Channel] = {}  # a process's channel to each destination
_LOCK = threading.Lock()


def run(ssh: tuple[str, ...], script: str, input: bytes = b"",
        timeout: float = 60) -> Answer:
    """Run the shell command line `script` on the destination of the ssh argv `ssh` (which
    ends with it), `input` on its standard input. Raises Broken when the channel could not
    answer (the connection ended, or `timeout` passed). A script that `exec`s at its top
    level replaces the subshell that would answer for it (ao's scripts are argv joined, a
    program first; a shell's `exec` goes inside `sh -c`)."""
    ch, fresh = _channel(ssh)
    try:
        return ch.run(script, input, timeout)
    except Broken as e:
        if e.sent or fresh or e.timed_out:
            raise
        # a channel that had ended before the command left (the host restarted, the master
        # went away): it goes once more, on a new channel
        log.debug("channel to %s had ended (%s); the command goes on a new one", ssh[-1], e)
        ch, _ = _channel(ssh)
        return ch.run(script, input, timeout)


def is_open(ssh: tuple[str, ...]) -> bool:
    """Whether a channel to `ssh` is open and logged in (a command on it costs a round
    trip, not a login)."""
    with _LOCK:
        ch = _OPEN.get(ssh)
        return ch is not None and ch.ended is None and ch.proc.poll() is None and \
            ch.heard > float("-inf")


def open_early(ssh: tuple[str, ...]) -> None:
    """The channel to `ssh` begun now, its login under way in the background while the
    caller goes on (its first command then waits for the rest of the login, not all of it)."""
    _channel(ssh)


def _channel(ssh: tuple[str, ...]) -> tuple[Channel, bool]:
    """The open channel to `ssh`, or a new one (True) in place of none or one that ended."""
    with _LOCK:
        ch = _OPEN.get(ssh)
        if ch is not None and ch.ended is None and ch.proc.poll() is None:
            return ch, False
        log.debug("opening a channel to %s", ssh[-1])
        new = _OPEN[ssh] = Channel(ssh)
    if ch is not None:
        ch.close()  # reaped, its pipes closed
    return new, True


def close_all() -> None:
    """Close every channel (tests; ao's own exit closes them with their pipes)."""
    with _LOCK:
        chans = list(_OPEN.values())
        _OPEN.clear()
    for c in chans:
        c.close()
