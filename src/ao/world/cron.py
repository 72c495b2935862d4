"""The nightly cleanup in the user's crontab: one marked line, never duplicated, every other
line kept. Where there is no `crontab`, the equivalent systemd timer is printed instead."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys

from ao import paths
from ao.errors import BadInput, ExternalError

MARK = "# ao-nightly-cleanup"


def _at(at: str) -> tuple[int, int]:
    m = re.match(r"^([01]?\d|2[0-3]):([0-5]\d)$", at)
    if not m:
        raise BadInput(f"--at {at!r} is not a time of day", "write HH:MM, e.g. 03:00")
    return int(m.group(1)), int(m.group(2))


def command() -> str:
    log = paths.logs_dir() / "cleanup.log"
    return (f"AO_HOME={shlex.quote(str(paths.ao_home()))} {shlex.quote(sys.executable)} -m ao "
            f"session cleanup --all --yes >> {shlex.quote(str(log))} 2>&1")


def line(at: str) -> str:
    hour, minute = _at(at)
    return f"{minute} {hour} * * * {command()} {MARK}"


def available() -> bool:
    return shutil.which("crontab") is not None


def read() -> list[str]:
    proc = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    if proc.returncode != 0:
        if "no crontab" in proc.stderr.lower():
            return []
        raise ExternalError(f"crontab -l failed: {proc.stderr.strip()[-200:]}",
                            "check that cron is installed")
    return proc.stdout.splitlines()


def write(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n" if lines else ""
    proc = subprocess.run(["crontab", "-"], input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ExternalError(f"crontab - failed: {proc.stderr.strip()[-200:]}", "")


def install(at: str) -> str:
    new = line(at)
    lines = [x for x in read() if MARK not in x]
    write([*lines, new])
    return new


def remove() -> bool:
    lines = read()
    kept = [x for x in lines if MARK not in x]
    if kept == lines:
        return False
    write(kept)
    return True


def show() -> str | None:
    return next((x for x in read() if MARK in x), None)


def systemd_units(at: str) -> str:
    hour, minute = _at(at)
    return f"""# ~/.config/systemd/user/ao-cleanup.service
[Unit]
Description=ao nightly cleanup

[Service]
Type=oneshot
ExecStart=/bin/sh -c {shlex.quote(command())}

# ~/.config/systemd/user/ao-cleanup.timer
[Unit]
Description=ao nightly cleanup at {hour:02d}:{minute:02d}

[Timer]
OnCalendar=*-*-* {hour:02d}:{minute:02d}:00
Persistent=true

[Install]
WantedBy=timers.target

# then: systemctl --user daemon-reload && systemctl --user enable --now ao-cleanup.timer
"""
