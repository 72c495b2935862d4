"""Text from outside (issue bodies, CI logs, review comments, agent transcripts) is untrusted:
before it reaches a terminal, escape sequences and control characters are removed and its length
is capped."""

from __future__ import annotations

import re
from typing import Any, TextIO

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), DCS/SOS/PM/APC (ESC P|X|^|_ ... ST),
# two-character escapes (ESC + one char), and their 8-bit C1 forms
_ESCAPES = re.compile(
    r"""
    (?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]                 # CSI
  | (?:\x1b\]|\x9d)[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)? # OSC (an unterminated one
  | (?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c\n]*(?:\x1b\\|\x9c)?  # ends at the line)
  | \x1b[@-Z\\-_]                                    # other Fe escapes
  | \x1b[!-/]*[0-~]                                  # nF / Fp / Fs escapes (a space after
                                                     # a lone ESC is text: keep what follows)
  | \x1b
    """,
    re.VERBOSE,
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_escapes(text: str) -> str:
    """Remove terminal escape sequences; keep everything else (for reading transcripts)."""
    return _ESCAPES.sub("", text)


def clean(text: str) -> str:
    """Safe to paste into an agent's terminal: no escapes, no control characters but newline
    and tab, line endings normalised."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", strip_escapes(text))


_C1 = re.compile(r"[\x7f-\x9f]")


def json_text(text: str) -> str:
    """JSON as written by `json.dumps(ensure_ascii=False)`, with DEL and the C1 controls
    (U+0080-U+009F, e.g. U+009B, a one-character CSI) escaped as \\uXXXX: JSON escapes only
    C0 itself, and a terminal showing the line would obey them."""
    return _C1.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def values_for_terminal(value: Any) -> Any:
    """`for_terminal` on every string inside lists and dicts (keys too): what the JSON API
    answers is printed by clients, so it carries no escape or control byte either."""
    if isinstance(value, str):
        return for_terminal(value)
    if isinstance(value, dict):
        return {values_for_terminal(k): values_for_terminal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [values_for_terminal(v) for v in value]
    return value


def for_terminal(text: str) -> str:
    """What may reach a person's terminal: no escape sequences (OSC 52 clipboard writes,
    clear-screen, window titles, links), no control characters but newline and tab."""
    return _CONTROLS.sub("", strip_escapes(text.replace("\r\n", "\n")))


class TerminalGate:
    """A text stream that passes everything through `for_terminal`: installed on stdout and
    stderr by the CLI, so no title, key, body, CI log or event field can steer the terminal,
    whichever command prints it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(for_terminal(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def cap(text: str, limit: int, marker: str = "\n[... cut: {n} more characters]") -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + marker.format(n=len(text) - limit)


def transcript(raw: bytes) -> str:
    """A pane log made readable: escapes stripped, carriage-return overdraws collapsed."""
    text = strip_escapes(raw.decode("utf-8", "replace"))
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        # a bare CR returns to column 0: what is visible is the last overdraw
        line = line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r") else line.rstrip("\r")
        lines.append(_CONTROLS.sub("", line))
    return "\n".join(lines)
