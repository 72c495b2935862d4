"""Kill, escalate, resume and restore sessions, and recover after a crash (docs/sessions.md)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from typing import TYPE_CHECKING

from ao import paths
from ao.decide import compose
from ao.errors import AoError, BadInput
from ao.host_config import LOCAL
from ao.record.events import Event, emit
from ao.record.state import KILLED_BY_HAND, LIVE, State
from ao.services import hostwork, message_text
from ao.services.teardown import teardown
from ao.world import agents, remotes, tmux, workspace
from ao.world import hosts as hostsmod

if TYPE_CHECKING:  # the layer below, for the types of the methods it lends
    from ao.config import ProjectConfig
    from ao.record.store import Session
    from ao.services.starting import Starting as _Below
    from ao.world.agents import LaunchContext, Profile
else:  # at run time the layers meet in Fleet (fleet.py), not in a chain
    from ao.services.machines import Machines as _Below


if TYPE_CHECKING:
    from ao.services.notify import Notifier


log = logging.getLogger(__name__)


class Ending(_Below):
    """Ending a session by hand, handing an escalated one back, or restoring a killed one in
    place; and escalating to a human, once per trouble. The fourth layer of `Fleet`."""

    def kill(self, sid: str, force: bool = False) -> dict[str, object]:
        # the session's lock first, before the agent is touched: the daemon, woken by the
        # agent's exit hook in the middle of the kill, must not restore it (it waits a tick,
        # then finds the session killed)
        with paths.locked(paths.session_lock(self.store.session(sid).id)):
            return self._kill(sid, force)

    def _kill(self, sid: str, force: bool) -> dict[str, object]:
        s = self.store.session(sid)
        if s.state not in LIVE and s.state is not State.KILLED:
            raise BadInput(f"{sid} is {s.state}, not running", "see `ao session ls --all`")
        project = self.cfg.project(s.project)
        intent = paths.kill_intent(s.id)  # durable before the agent is touched
        intent.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        intent.write_text(json.dumps({"force": force, "pid": os.getpid()}))
        try:
            # killed, not cleaned: `ao session restore` can bring it back from its branch
            outcome = teardown(self.server(s), self.store, project, s, end=State.KILLED,
                               profiles=agents.get, force=force, clean=False,
                               note=KILLED_BY_HAND).as_dict()
        except Exception:
            intent.unlink(missing_ok=True)  # refused, and said so: not a kill to finish later
            raise
        for m in self.store.messages(sid, "queued"):  # a restore starts afresh
            self.store.set_message(m["id"], "failed", "the session was killed")
            emit(Event("message.failed", s.project, sid, s.task,
                       {"id": m["id"], "why": "the session was killed"}), self.store)
        emit(Event("session.killed", s.project, sid, s.task, outcome), self.store)
        intent.unlink(missing_ok=True)
        return outcome

    def finish_kill_held(self, sid: str) -> bool:
        """A kill that was cut short (its intent left, its process gone), finished by a caller
        that holds the session's lock: the agent is stopped again if it was brought back,
        and the session recorded killed. False when no kill was cut short."""
        intent = paths.kill_intent(sid)
        try:
            force = bool(json.loads(intent.read_text()).get("force"))
        except FileNotFoundError:
            return False
        except (ValueError, AttributeError):
            force = False  # cut short while it was being written
        if self.store.session(sid).state in LIVE:
            self._kill(sid, force)
        intent.unlink(missing_ok=True)
        return True

    def escalate(self, s: Session, fingerprint: str, reason: str,
                 notifier: Notifier | None = None) -> bool:
        """Stop automatic handling and ask a human, once per fingerprint: the session goes to
        needs_human, an `escalated` event is recorded and the notifiers are told. False if
        this trouble was escalated before."""
        if not self.store.record_attempt(s.id, "escalate", fingerprint):
            return False
        if s.state is not State.NEEDS_HUMAN:
            self.store.set_state(s.id, State.NEEDS_HUMAN, note=reason)
        event = emit(Event("escalated", s.project, s.id, s.task, {"reason": reason}),
                     self.store)
        if notifier is None:
            from ao.services.notify import Notifier

            notifier = Notifier(self.cfg, self.store)
        notifier.notify(event, f"{s.id} {s.task} needs a human", reason)
        return True

    def resume(self, sid: str, reason: str, by: str = "human") -> Session:
        """Hand an escalated session back to automatic handling (a human says so, or the
        daemon sees that what caused the escalation is gone). Each hand-back grants a fresh
        budget of fix rounds, and the same trouble can escalate again."""
        s = self.store.session(sid)
        if s.state is not State.NEEDS_HUMAN:
            raise BadInput(f"{sid} is {s.state}, not waiting for a human",
                           "only an escalated (needs_human) session can be resumed")
        n = len(self.store.attempts(sid, "resume")) + 1
        back = State.PR_OPEN if s.pr_number and s.pr_state == "open" else State.WORKING
        self.store.record_attempt(sid, "resume", f"resume:{n}", {"by": by, "reason": reason})
        s = self.store.set_state(sid, back, note=None)
        emit(Event("session.resumed", s.project, sid, s.task, {"by": by, "reason": reason,
                                                              "state": back.value}), self.store)
        return s

    def restore(self, sid: str) -> Session:
        """Start a killed or exited session's agent again (its lock held, as a kill's)."""
        with paths.locked(paths.session_lock(self.store.session(sid).id)):
            return self._restore(sid)

    def restore_held(self, sid: str) -> Session:
        """`restore`, by a caller that holds the session's lock already (the daemon)."""
        return self._restore(sid)

    def _restore(self, sid: str) -> Session:
        s = self.store.session(sid)
        # a person brings it back: an earlier kill's marker, left by a fault after the kill
        # was recorded, must not end it again
        paths.kill_intent(s.id).unlink(missing_ok=True)
        if s.state not in (State.KILLED, State.WORKING, State.PR_OPEN, State.NEEDS_HUMAN):
            raise BadInput(f"{sid} is {s.state}; only a killed or running session can be "
                           "restored", "see `ao session ls --all`")
        srv = self.server(s)
        p = tmux.pane(srv, sid)
        if p is not None and not p.dead:
            raise BadInput(f"{sid} is already running", f"attach with `ao session attach {sid}`")
        project = self.cfg.project(s.project)
        recorded = self._recorded_launch(project.name, sid)
        profile = agents.get(s.agent or project.agent)
        ctx = self._context(project, s, profile, recorded)
        env: dict[str, str] | None = self.agent_env(
            profile, ctx, recorded.get("env") if recorded else None, s.host)
        self._worktree_again(project, s, profile, replace(ctx, agent_env=env))
        command = profile.resume_command(ctx)
        if s.host != LOCAL:
            command = self._host_launch(s, ctx, command, env or {})
            env = None
        if p is not None:
            tmux.respawn(srv, sid, ctx.worktree, command, env)
        else:
            tmux.new_session(srv, sid, ctx.worktree, command, env,
                             log=ctx.session_dir / "pane.log")
        if s.state is State.KILLED:
            self.store.set_state(sid, State.WORKING)
        self._tell_restarted(s)
        emit(Event("session.restored", s.project, sid, s.task, {"command": command}),
             self.store)
        return self.store.session(sid)

    def _tell_restarted(self, s: Session) -> None:
        """A restarted agent is told to go on with its task, the task itself included (an
        agent that resumes its conversation waits for input, one that cannot has lost it):
        restored agents sat idle with nothing said. Delivered once it is ready, as any
        message."""
        if any(m["source"] == "prompt" for m in self.store.messages(s.id, "queued")):
            return  # its first prompt has not gone yet: that tells it the task
        prompt_file = paths.session_dir(s.project, s.id) / "prompt.md"
        task = prompt_file.read_text(encoding="utf-8") if prompt_file.exists() else ""
        body = compose.restarted(s.branch or workspace.branch_name(s.task), task)
        try:
            body = message_text.prepare(self, s, body)
        except AoError as e:  # a host's file not written: the message goes inline, cut
            log.warning("%s: the restart message's file: %s", s.id, e)
            body = body[:4000]
        self.store.queue_message(s.id, body, "restore")

    def _worktree_again(self, project: ProjectConfig, s: Session, profile: Profile,
                        ctx: LaunchContext) -> None:
        """The session's worktree made again from its branch if it is gone (here, or on its
        host), with the agent's first-run answers and hooks again."""
        branch = s.branch or workspace.branch_name(s.task)
        if s.host != LOCAL:
            h = self.host(s.host)
            url = workspace.remote_url(project.path, project.remote) or ""
            how = hostwork.make_worktree(h, hostwork.place(h, project.name, s.id), url,
                                         project.remote, project.default_branch, branch,
                                         "reuse", profile.excludes)
            if how != "exists":
                profile.prepare(replace(ctx, machine=hostwork.HostMachine(h)))
            return
        if ctx.worktree.exists():
            return
        if not (workspace.local_branch_exists(project.path, branch)
                or remotes.remote_branch_exists(project.path, project.remote, branch)):
            raise BadInput(f"{s.id}'s worktree and branch {branch} are gone",
                           f"start over with `ao spawn {s.project} {s.task}`")
        with workspace.locked(project.path):
            base = remotes.fresh_base(project.path, project.remote, project.default_branch)
            workspace.add_worktree(project.path, ctx.worktree, branch, base, reuse=True)
        profile.prepare(ctx)  # with the agent's own environment, as at its spawn

    def recover(self) -> list[tuple[str, str]]:
        """After a crash: undo starts that were cut short (back to the queue, or failed if
        they somehow hold work), and give a first prompt that was never sent to its agent.
        A start whose process is alive (a `batch-spawn` running now) is left to it."""
        done: list[tuple[str, str]] = []
        for s in self.store.sessions(states=set(LIVE)):
            if paths.kill_intent(s.id).exists():
                with paths.try_locked(paths.session_lock(s.id)) as free:
                    if free and self.finish_kill_held(s.id):  # else: a kill runs now
                        done.append((s.id, "its kill, cut short, was finished"))
        for s in self.store.sessions(states={State.SPAWNING}):
            project = self.cfg.projects.get(s.project)
            if project is None or started_elsewhere(s):
                continue
            outcome = self._undo_start(project, s)
            if outcome:
                done.append((s.id, outcome))
        for s in self.store.sessions(states={State.WORKING}):
            if started_elsewhere(s):
                continue  # its start is still being finished by a live process
            project = self.cfg.projects.get(s.project)
            if project is None or not self.reachable(s.host):
                continue  # a host away: its sessions are recovered when it answers
            outcome = self._first_prompt(project, s)
            if outcome:
                done.append((s.id, outcome))
        for sid, what in done:
            emit(Event("session.recovered", data={"session": sid, "outcome": what}),
                 self.store)
        return done

    def _undo_start(self, project: ProjectConfig, s: Session) -> str | None:
        """A start cut short: undone and queued again, or failed when its worktree holds
        work; None while its host is away (undone when it answers again)."""
        if s.branch is None:  # cut short before the record named it
            s = replace(s, branch=workspace.branch_name(s.task))
        try:
            out = teardown(self.server(s), self.store, project, s, end=None,
                           profiles=agents.get, clean=False)
        except hostsmod.Unreachable:
            return None
        if out.worktree == "kept":
            self.store.set_state(s.id, State.FAILED, note="start interrupted; kept: " +
                                 "; ".join(out.why))
            return "failed"
        self.store.update_session(s.id, worktree=None, branch=None)
        self.store.set_state(s.id, State.QUEUED)
        return "requeued"

    def _first_prompt(self, project: ProjectConfig, s: Session) -> str | None:
        """A running session whose first prompt never reached its agent: queued again when
        it was never sent, escalated when every try failed."""
        prompts_ = [m for m in self.store.messages(s.id) if m["source"] == "prompt"]
        prompt_file = paths.session_dir(s.project, s.id) / "prompt.md"
        profile = agents.get(s.agent or "command")
        # an agent whose command carried the prompt (`{prompt_file}`) never gets it pasted
        pasted = profile.pastes_prompt(self._context(
            project, s, profile, self._recorded_launch(s.project, s.id)))
        if pasted and not prompts_ and prompt_file.exists():
            body = message_text.prepare(self, s, prompt_file.read_text(encoding="utf-8"))
            self.store.queue_message(s.id, body, "prompt")
            return "prompt queued"
        if prompts_ and all(m["status"] == "failed" for m in prompts_):
            reason = ("the first prompt was not delivered; check whether the agent has "
                      f"it, then `ao send {s.id}` it or `ao session resume {s.id}`")
            self.escalate(s, "escalate:delivery:prompt", reason)
            return "escalated"
        return None


def started_elsewhere(s: Session) -> bool:
    """The session's start belongs to another process that is still alive."""
    return bool(s.owner_pid) and s.owner_pid != os.getpid() and \
        paths.pid_alive(s.owner_pid or 0)
