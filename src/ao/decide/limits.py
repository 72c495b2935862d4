"""Usage limits as the agents print them, and when they reset. Pure: text and a clock in.

Claude Code, on a subscription, ends the turn with a line such as
  "You've hit your session limit · resets 12:50am (America/Los_Angeles)"
  "You've hit your weekly limit · resets Nov 28, 9am (Europe/Berlin)"
  "Claude usage limit reached. Your limit will reset at 9am (America/Chicago)."
and its transcript logs the turn as an ordinary completion, so only the screen tells. Codex
says "You've hit your usage limit. ... try again at 3:05 PM." A reset time without a date is
the next such time after now, in the zone given (else the machine's own).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_LIMIT = re.compile(
    r"(?:hit your (?:[\w-]+ )?(?:usage )?limit|usage limit reached|limit reached)"
    r"[^\n]*?(?:resets?|reset at|try again at)\s+(?:at\s+)?"
    r"(?P<when>[A-Za-z]{3,9}\.? \d{1,2},? )?"
    r"(?P<time>\d{1,2}(?::\d{2})?\s*[ap]\.?m\.?|\d{1,2}:\d{2})"
    r"(?:\s*\((?P<tz>[A-Za-z_]+(?:/[A-Za-z_+-]+)*)\))?", re.I)
_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}
UNKNOWN_RESET = 3600.0  # a limit whose reset cannot be read is looked at again in an hour


def limit_line(screen: str) -> str | None:
    """The limit message on the screen's last lines, if any."""
    for line in reversed(screen.splitlines()[-40:]):
        if re.search(r"hit your (?:[\w-]+ )?(?:usage )?limit|usage limit reached", line, re.I):
            return line.strip()
    return None


def reset_at(line: str, now: datetime) -> float:
    """Epoch seconds when the limit in `line` resets (`now` must be timezone-aware)."""
    m = _LIMIT.search(line)
    if not m:
        return now.timestamp() + UNKNOWN_RESET
    try:
        tz = ZoneInfo(m.group("tz")) if m.group("tz") else now.tzinfo
    except (ZoneInfoNotFoundError, ValueError):
        tz = now.tzinfo
    local = now.astimezone(tz)
    t = m.group("time").lower().replace(".", "").replace(" ", "")
    hour, minute = int(re.match(r"\d+", t).group()), 0  # type: ignore[union-attr]
    if ":" in t:
        minute = int(t.split(":")[1][:2])
    if t.endswith("pm") and hour != 12:
        hour += 12
    if t.endswith("am") and hour == 12:
        hour = 0
    when = local.replace(hour=hour % 24, minute=minute, second=0, microsecond=0)
    if m.group("when"):
        month = _MONTHS.get(m.group("when")[:3].lower())
        day = re.search(r"\d+", m.group("when"))
        if month and day:
            when = when.replace(month=month, day=int(day.group()))
            if when < local - timedelta(days=1):
                when = when.replace(year=when.year + 1)
            return when.timestamp()
    while when <= local:
        when += timedelta(days=1)
    return when.timestamp()
