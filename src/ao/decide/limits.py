"""Usage limits as the agents print them, and when they reset. Pure: text and a clock in.

Claude Code (2.1.329, logged in with a subscription) answers the API's refusal at once with
  "⎿  You've hit your 5-hour limit · resets 10:43pm (UTC)"
  "⎿  You've hit your weekly limit · resets Dec 8, 10pm (Europe/Berlin)"
(and, older, "Claude usage limit reached. Your limit will reset at 9am (America/Chicago)."),
then waits and continues by itself after the reset; its transcript logs nothing of it, so only
the screen tells. Codex (0.169.0) says "■ You've hit your usage limit. Upgrade to Pro (...),
visit ... or try again at 10:54 PM." or "... try again at Dec 9th, 2026 10:54 PM.", wrapped
over two or three lines of the screen. A reset time without a date is the next such time after
now, in the zone given (else the machine's own).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HIT = r"hit your (?:[\w-]+ )?(?:usage )?limit"  # "You've hit your 5-hour limit", names the reset
REACHED = r"usage limit reached"  # Claude Code's own wait under it; older wordings
SAYS_LIMIT = re.compile(f"{HIT}|{REACHED}", re.I)  # a line that says the agent is at its limit
_LIMIT = re.compile(
    rf"(?:{HIT}|{REACHED}|limit reached)"
    r"[^\n]*?(?:resets?|reset at|try again at)\s+(?:at\s+)?"
    r"(?P<when>[A-Za-z]{3,9}\.? \d{1,2}(?:st|nd|rd|th)?,?(?: (?P<year>\d{4}))? )?"
    r"(?P<time>\d{1,2}(?::\d{2})?\s*[ap]\.?m\.?|\d{1,2}:\d{2})"
    r"(?:\s*\((?P<tz>[A-Za-z_]+(?:/[A-Za-z_+-]+)*)\))?", re.I)
_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}
UNKNOWN_RESET = 3600.0  # a limit whose reset cannot be read is looked at again in an hour
LONGEST = 8 * 86400.0  # a weekly limit resets within a week: a later "reset" is not one


def limit_line(screen: str) -> str | None:
    """The limit message on the screen's last lines, if any, with the lines it wrapped onto
    (Codex's runs over two or three, its reset time on the last)."""
    lines = screen.splitlines()[-40:]
    # "You've hit your ... limit" names the reset; Claude Code's "Usage limit reached ·
    # continuing automatically at ..." under it does not: the first kind is read first
    for pattern in (HIT, REACHED):
        for i in range(len(lines) - 1, -1, -1):
            if re.search(pattern, lines[i], re.I):
                message = [lines[i].strip()]
                for more in lines[i + 1:i + 3]:
                    if not more.strip()[:1].isalnum():
                        break  # the next item on the screen, not the message's own line
                    message.append(more.strip())
                return " ".join(message)
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
            if m.group("year"):
                return when.replace(year=int(m.group("year"))).timestamp()
            if when < local - timedelta(days=1):
                when = when.replace(year=when.year + 1)
            return when.timestamp()
    while when <= local:
        when += timedelta(days=1)
    return when.timestamp()


def believable(until: float, now: float, waited_until: float | None) -> bool:
    """A reset read from the screen that is one: within a week (text from outside on the
    screen, "try again at Jan 1st, 2099", parks nothing), and not the line already waited
    out (`waited_until`, passed: a reset without a date, read again after it, is the same
    time tomorrow)."""
    if until - now > LONGEST:
        return False
    return not (waited_until is not None and waited_until <= now and
                abs(until - waited_until - 86400) < 120)
