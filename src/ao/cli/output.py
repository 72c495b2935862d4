"""Printing helpers shared by the CLI modules: tables, JSON, and stderr diagnostics."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from logging.handlers import RotatingFileHandler
from typing import Any

from ao.sanitize import for_terminal, json_text


def emit_json(value: Any) -> None:
    sys.stdout.write(json_text(json.dumps(value, indent=2, default=str, ensure_ascii=False))
                     + "\n")


def note(message: str) -> None:
    """A diagnostic: goes to stderr so stdout stays parseable."""
    sys.stderr.write(message + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    # cells are cleaned before they are measured: an escape cut in half by a column width
    # could otherwise swallow the rest of the line
    cells = [[("" if c is None else for_terminal(str(c)).replace("\n", " ")) for c in r]
             for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    widths = _fit(widths, [len(h) for h in headers])
    cells = [[c if len(c) <= w else c[:max(w - 1, 0)] + "…" for c, w in zip(r, widths,
                                                                          strict=True)]
             for r in cells]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _fit(widths: list[int], floors: list[int]) -> list[int]:
    """Column widths that fit the terminal (COLUMNS, else the terminal's own width; no limit
    when the output is not a terminal): the widest column gives way first, down to its
    header's width or 8, whichever is more; `--json` is the way to every byte."""
    cols = shutil.get_terminal_size((10**6, 24)).columns
    out = list(widths)
    mins = [max(f, 8) for f in floors]
    while sum(out) + 2 * (len(out) - 1) > cols:
        i = max(range(len(out)), key=lambda k: out[k] - mins[k])
        if out[i] <= mins[i]:
            break  # nothing left to give: the line wraps
        excess = sum(out) + 2 * (len(out) - 1) - cols
        out[i] = max(mins[i], out[i] - excess)
    return out


def days(value: float) -> str:
    return f"{value:g}d"


def log_to(name: str) -> None:
    """ao's module loggers (INFO and up, tracebacks included) to `logs/<name>`, rotated; in
    place of a file set before in this process. Nothing is made until a line is written (a
    command that logs nothing touches no folder). The event log stays the user-facing record."""
    import logging

    from ao import paths

    root = logging.getLogger("ao")
    for h in [h for h in root.handlers if isinstance(h, _LogFile)]:
        root.removeHandler(h)
        h.close()
    handler = _LogFile(paths.ao_home() / "logs" / name, maxBytes=5_000_000, backupCount=3,
                       encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


class _LogFile(RotatingFileHandler):
    """A rotated log file whose folder is made (private, as all of AO_HOME) with its first
    line."""

    def _open(self) -> Any:
        from ao import paths

        paths.logs_dir()
        return super()._open()
