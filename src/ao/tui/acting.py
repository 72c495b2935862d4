"""What the board's keys do to a session: attach, send, kill, restore, merge, approve its gate,
pause its project; each asking first where it cannot be undone, each carried out off the UI
thread on a store connection of its own, its outcome a notification (never a traceback)."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING, Literal

from textual import work

from ao.errors import AoError, BadInput
from ao.services.fleet import Fleet
from ao.services.messaging import Messenger
from ao.tui.screens import ConfirmScreen, DiffScreen, SendScreen
from ao.world import tmux

if TYPE_CHECKING:
    from textual.app import App

    from ao.config import Config
    from ao.record.store import Session, Store

    _Base = App[None]
else:
    _Base = object


class Acting(_Base):
    cfg: Config
    store: Store
    fleet: Fleet | None
    project: str | None

    def selected(self) -> Session | None:
        raise NotImplementedError  # the board's own

    def render_lanes(self) -> None:
        raise NotImplementedError  # the board's own

    def say(self, text: str, severity: Literal["information", "warning", "error"] =
            "information") -> None:
        """A notification whose text is text: a check name or a forge's message can hold
        `[...]`, which Textual's markup would read (and fail on)."""
        self.notify(text, severity=severity, markup=False)

    def _need(self) -> Session | None:
        s = self.selected()
        if s is None:
            self.say("select a session first", severity="warning")
        return s

    def action_attach(self) -> None:
        s = self._need()
        if s is not None and self.is_web:  # a browser has no terminal to hand over: it
            # ended the whole board with a traceback ("Session ended")
            self.say(f"attach from a terminal: `ao session attach {s.id}` (or `s` sends "
                        "it a message from here)", severity="warning")
            return
        if s is None or self.fleet is None:
            return
        if not tmux.has_session(self.fleet.server(s), s.id):
            self.say(f"{s.id} has no running terminal", severity="warning")
            return
        argv = tmux.attach_argv(self.cfg.tmux_socket, s.id, self.fleet.server(s))
        with self.suspend():
            subprocess.run(argv, env={k: v for k, v in os.environ.items()
                                      if k not in ("TMUX", "TMUX_PANE")})

    def action_send(self) -> None:
        s = self._need()
        if s is None:
            return

        def sent(text: str | None) -> None:
            if text:
                self.deliver(s.id, text)

        self.push_screen(SendScreen(s.id), sent)

    def action_changes(self) -> None:
        """What the selected session's agent changed, in a screen of its own (read off the
        UI thread: a big diff, or a remote host's, takes a moment)."""
        s = self._need()
        if s is not None:
            self.read_changes(s)

    @work(thread=True, exclusive=True, group="diff")
    def read_changes(self, s: Session) -> None:
        from ao.services import changes

        try:
            text = changes.of_session(self.cfg, s).text()
        except AoError as e:
            self.call_from_thread(self.say, str(e), severity="warning")
            return
        self.call_from_thread(self.push_screen, DiffScreen(s.id, text))

    @work(thread=True, exclusive=True, group="send")
    def deliver(self, sid: str, text: str) -> None:
        if self.fleet is None:
            return
        with Fleet.own(self.cfg, self.store.path, self.fleet.srv) as fleet:
            r = Messenger(fleet).send(sid, text)
        severity = "information" if r.status == "delivered" else \
            "warning" if r.status == "queued" else "error"
        self.call_from_thread(self.say, f"{sid}: {r.status} {r.detail}".strip(),
                              severity=severity)

    def action_kill(self) -> None:
        s = self._need()
        if s is None or self.fleet is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.act("kill", s.id)

        self.push_screen(ConfirmScreen(f"Kill {s.id} ({s.task})? Unpushed work is kept."),
                         confirmed)

    def action_restore(self) -> None:
        s = self._need()
        if s is not None and self.fleet is not None:
            self.act("restore", s.id)

    def action_merge(self) -> None:
        s = self._need()
        if s is None:
            return
        if not s.pr_gate_ok:
            # what the merge gate said when the daemon last looked; merge_now asks it again
            self.say(f"{s.id} cannot merge: {s.pr_gate or 'no pull request seen yet'}",
                        severity="warning")
            return
        if self.fleet is not None:
            self.act("merge", s.id)

    def action_approve(self) -> None:
        """A task's approval gate passed for its PR's head as the board shows it (the gate
        zone had no key for it: `ao approve` only)."""
        s = self._need()
        if s is None or self.fleet is None:
            return
        if s.step != "approve":
            self.say(f"{s.id} is not waiting at an approval gate", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.act("approve", s.id)

        self.push_screen(ConfirmScreen(f"Approve PR #{s.pr_number} of {s.id} ({s.task}) at "
                                       f"{(s.pr_head_sha or '')[:10]} for merge?"), confirmed)

    @work(thread=True, group="act")
    def act(self, what: str, sid: str) -> None:
        """Kill, restore or merge off the UI thread, on a store connection of its own."""
        assert self.fleet is not None
        with Fleet.own(self.cfg, self.store.path, self.fleet.srv) as fleet:
            self._act(fleet, what, sid)

    def _act(self, fleet: Fleet, what: str, sid: str) -> None:
        try:
            if what == "kill":
                note = f"{sid} killed; worktree {fleet.kill(sid)['worktree']}"
            elif what == "restore":
                fleet.restore(sid)
                note = f"{sid} restored"
            elif what == "approve":
                import getpass

                from ao.services.step_results import approve_gate
                from ao.world import forge as forgemod

                s = fleet.store.session(sid)
                pr = forgemod.for_project(self.cfg.project(s.project), fleet.store).find_pr(
                    s.branch or "") if s.branch else None
                if pr is None:
                    raise BadInput(f"{sid} has no pull request yet", "nothing to approve")
                note = approve_gate(fleet, s, pr, getpass.getuser())
            else:
                from ao.services.merging import merge_now
                from ao.world import forge as forgemod

                s = fleet.store.session(sid)
                # the same gate as `ao pr merge` and the daemon, on the PR as it is now
                number, sha = merge_now(self.cfg, fleet.store, fleet.server(s), s,
                                        forgemod.for_project(self.cfg.project(s.project),
                                                             fleet.store))
                note = f"{sid}: PR #{number} " + ("merged" if sha else "in the merge queue")
            self.call_from_thread(self.say, note)
        except AoError as e:
            self.call_from_thread(self.say, str(e), severity="error")

    def action_pause(self) -> None:
        s = self.selected()
        project = self.project or (s.project if s else None)
        if project is None:
            self.say("no project to pause", severity="warning")
            return
        if project not in self.cfg.projects:  # it said "paused" and paused nothing
            self.say(f"{project} is not a configured project: nothing to pause",
                     severity="warning")
            return
        paused = not self.store.paused(project)
        p = self.cfg.projects[project]
        self.store.ensure_project(p.name, str(p.path), p.repo)
        self.store.set_paused(project, paused)
        self.say(f"{project} {'paused' if paused else 'resumed'}")
        self.render_lanes()  # the lasting sign of it
