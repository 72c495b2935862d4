"""Telling people: desktop notifications, a Slack-compatible webhook, a command, and user event
hooks (executables named after an event, in the repo's `hooks/` or `AO_HOME/hooks/`, that get
the event as JSON on stdin). A failing notifier or hook is recorded and never stops the daemon.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from ao import environment, paths
from ao.record.events import Event, emit

if TYPE_CHECKING:
    from ao.config import Config
    from ao.record.store import Store

HOOK_TIMEOUT = 30.0
HOOK_EVENTS = ("ci-failed", "escalated", "merged", "wave-started", "all-complete",
               "post-create", "merge-ready", "needs-input")


def desktop_here() -> bool:
    """Whether a desktop notification can be shown from here: `notify-send`, and a graphical
    session (an X or Wayland display, or a session bus) to show it on."""
    return shutil.which("notify-send") is not None and any(
        os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"))


def reaches(cfg: Config) -> list[str]:
    """The channels a notification goes out on, as configured here: none means an
    escalation at night reaches no one (`ao start` says so)."""
    n = cfg.notify
    return [name for name, on in (("desktop", n.desktop and desktop_here()),
                                  ("webhook", bool(n.webhook)), ("command", bool(n.command)))
            if on]


class Notifier:
    def __init__(self, cfg: Config, store: Store | None = None) -> None:
        self.cfg = cfg
        self.store = store

    def notify(self, event: Event, title: str, text: str) -> None:
        """Tell a human: every configured channel, then the event's hooks."""
        n = self.cfg.notify
        if n.desktop and desktop_here():
            self._run(["notify-send", "--app-name=ao", title, text], event, "desktop")
        if n.webhook:
            self._webhook(n.webhook, f"*{title}*\n{text}", event)
        if n.command:
            self._run(["sh", "-c", n.command], event, "command",
                      stdin=json.dumps({"title": title, "text": text, "event": _plain(event)}))
        self.hooks(event)

    def hooks(self, event: Event) -> list[str]:
        """Run the event's hooks; returns why each failing one failed (also recorded)."""
        name = event.type.replace(".", "-")
        failures = []
        for d in self._hook_dirs(event.project):
            hook = d / name
            if hook.is_file() and os.access(hook, os.X_OK):
                why = self._run([str(hook)], event, f"hook {paths.display(hook)}",
                                stdin=json.dumps(_plain(event)),
                                env=self._env(event.project))
                if why:
                    failures.append(why)
        return failures

    def _hook_dirs(self, project: str | None) -> list[Path]:
        dirs = [paths.ao_home() / "hooks"]
        if project and project in self.cfg.projects:
            dirs.insert(0, self.cfg.projects[project].path / "hooks")
        return dirs

    def _env(self, project: str | None) -> dict[str, str]:
        """Least privilege: BASE_ENV, the desktop's variables, the project's `env:`."""
        p = self.cfg.projects.get(project or "")
        return environment.for_command(p.env if p is not None else ())

    def _run(self, argv: list[str], event: Event, what: str, stdin: str = "",
             env: dict[str, str] | None = None) -> str | None:
        """Run a notifier or hook; None on success, else why it failed (recorded as an event)."""
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                                  timeout=HOOK_TIMEOUT,
                                  env=env if env is not None else self._env(event.project))
        except (OSError, subprocess.TimeoutExpired) as e:
            return self._failed(event, what, type(e).__name__)
        if proc.returncode != 0:
            return self._failed(event, what, f"exit {proc.returncode}: "
                                f"{(proc.stderr or proc.stdout).strip()[-200:]}")
        return None

    def _webhook(self, url: str, text: str, event: Event) -> None:
        body = json.dumps({"text": text}).encode()
        req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()
        except OSError as e:
            self._failed(event, "webhook", type(e).__name__)

    def _failed(self, event: Event, what: str, why: str) -> str:
        emit(Event("notify.failed", event.project, event.session, event.task,
                   {"notifier": what, "why": why, "for": event.type}), self.store)
        return why


def _plain(event: Event) -> dict[str, object]:
    return json.loads(event.to_json())  # type: ignore[no-any-return]
