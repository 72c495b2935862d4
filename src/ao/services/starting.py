"""Starting a session: each step in order, and a failed start undone whole. The third layer
of `Fleet` (fleet.py claims and queues; this makes one start happen)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ao import environment, paths
from ao.decide import prompts
from ao.errors import AoError, BadInput, ExternalError
from ao.host_config import LOCAL, Host
from ao.record.events import Event, emit
from ao.record.state import LIVE, State
from ao.services import hostwork, interrupts, post_create, pushes
from ao.world import agents, remotes, tmux, worksafe, workspace
from ao.world import hosts as hostsmod
from ao.world.agents import LaunchContext, Profile

if TYPE_CHECKING:  # the layer below, for the types of the methods it lends
    from ao.config import Config, ProjectConfig
    from ao.decide.plan import Plan, Task
    from ao.record.store import Session, Store
    from ao.services.observing import Observing as _Below
else:  # at run time the layers meet in Fleet (fleet.py), not in a chain
    from ao.services.machines import Machines as _Below


if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    from libtmux import Server




log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Ready:
    """A session claimed for a start on an SSH host: made on a worker, beside the others."""

    session: Session
    task: Task
    plan: Plan | None
    fresh_branch: bool
    fresh: bool
    host: str


@dataclass
class _Launch:
    """A spawn in progress: what it made so far, to undo on failure."""

    session: Session
    task: Task
    project: ProjectConfig
    profile: Profile
    ctx: LaunchContext
    branch: str
    fresh: bool
    prompt: str = ""
    continued: str = ""  # what happened to a branch an earlier session left
    undo: list[Callable[[], object]] = field(default_factory=list)


class Starting(_Below):
    """One start, step by step: the worktree (here or on a host), the agent's environment and
    prompt, its tmux session, and the undo of every step taken when one fails."""

    def __init__(self, cfg: Config, store: Store, srv: Server | None = None) -> None:
        super().__init__(cfg, store, srv)
        # per-batch caches: one fetch and one remote listing per repository per batch
        self._bases: dict[str, str] = {}
        self._remote_heads: dict[str, set[str]] = {}
        self._caching = False

    def _context(self, project: ProjectConfig, s: Session, profile: Profile,
                 recorded: dict[str, Any] | None = None) -> LaunchContext:
        """How the agent is launched: from the config, or (`recorded`, for a restore) from
        what the session was started with."""
        if s.host == LOCAL:
            sdir = paths.session_dir(project.name, s.id)
            wt = paths.worktree_path(project.name, s.id)
        else:  # the paths on the host (hostwork.py)
            where = hostwork.place(self.host(s.host), project.name, s.id)
            sdir, wt = Path(str(where.session_dir)), Path(str(where.worktree))
        r = recorded or {}
        return LaunchContext(
            session_id=s.id, project=project.name, task=s.task,
            worktree=wt, prompt_file=sdir / "prompt.md",
            session_dir=sdir, default_branch=project.default_branch, remote=project.remote,
            sandboxed=r.get("sandboxed", project.sandboxed),
            permission_mode=r.get("permission_mode", project.agent.permission_mode),
            command_template=r.get("command_template", project.agent.command),
            ready_pattern=r.get("ready_pattern", project.agent.ready),
        )

    def _configured_env(self, project: ProjectConfig) -> dict[str, str]:
        return dict((*project.env, *project.agent.env))

    def agent_env(self, profile: Profile, ctx: LaunchContext,
                  configured: dict[str, str] | None = None,
                  host: str = LOCAL) -> dict[str, str]:
        """The agent's whole environment (environment.py): least privilege, and current. On
        an SSH host the host's login gives the base (HOME, PATH), and the host's `env`."""
        project = self.cfg.project(ctx.project)
        configured = self._configured_env(project) if configured is None else configured
        if host != LOCAL:
            configured = {**configured, **dict(self.host(host).env)}
        identity = workspace.git_identity(project.path) if host == LOCAL else {}
        return environment.build(os.environ, (*profile.passthrough, *environment.GIT_IDENTITY),
                                 {**identity, **profile.env(ctx),
                                  "AO_HOME": str(paths.ao_home())},
                                 configured, elsewhere=host != LOCAL)

    def _record_launch(self, project: ProjectConfig, profile: Profile,
                       ctx: LaunchContext) -> None:
        """What the session was started with, so a restore relaunches the same agent the
        same way even after the config changed."""
        paths.write_atomic(paths.session_dir(project.name, ctx.session_id) / "launch.json",
                           json.dumps({
            "agent": profile.name, "command_template": ctx.command_template,
            "permission_mode": ctx.permission_mode, "sandboxed": ctx.sandboxed,
            "ready_pattern": ctx.ready_pattern, "env": self._configured_env(project)}))

    def _recorded_launch(self, project: str, sid: str) -> dict[str, Any] | None:
        try:
            data = json.loads((paths.session_dir(project, sid) / "launch.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _start(self, s: Session, task: Task, plan: Plan | None, *, fresh_branch: bool,
               fresh: bool, host: str = LOCAL) -> _Launch:
        """Everything up to a running agent: checks, worktree, post_create, tmux.

        The task's branch is the task's, not the session's: a branch left by an earlier
        session is continued when it holds commits (said in `session.started`), and with
        `fresh_branch` moved to the attic first so the new session starts from the default
        branch. On an SSH host the worktree is made in the host's clone (hostwork.py)."""
        project = self.cfg.project(s.project)
        profile = agents.get(task.agent or project.agent)
        if host != s.host:
            s = self.store.update_session(s.id, host=host)
        branch = workspace.branch_name(task.key)
        launch = _Launch(s, task, project, profile, self._context(project, replace(
            s, host=LOCAL), profile), branch, fresh)
        try:
            ctx = launch.ctx = self._context(project, s, profile)
            command = profile.command(ctx)  # may refuse (e.g. root without a sandbox)
            if host == LOCAL:
                tmux.require_tmux()
                if not profile.installed():
                    raise ExternalError(f"agent {profile.name}: `{profile.binary}` is not "
                                        "installed", "install it, or choose another agent "
                                        "(`ao agents`)")
            interrupts.check()  # a Ctrl-C is raised at these safe points, never mid-step
            exists = self._branch_start(launch, fresh_branch)
            interrupts.check()
            if host == LOCAL:
                self._local_worktree(launch, exists)
            else:
                self._host_worktree(launch, self.host(host), fresh_branch)
            interrupts.check()
            self.store.update_session(s.id, branch=branch, worktree=str(ctx.worktree),
                                      agent=profile.name)
            self._post_create_hooks(project, s, task, ctx)
            interrupts.check()
            ctx = launch.ctx = replace(ctx, agent_env=self.agent_env(profile, ctx, host=host),
                                       machine=None if host == LOCAL else
                                       hostwork.HostMachine(self.host(host)))
            profile.prepare(ctx)
            launch.prompt = prompts.first_prompt(project, task, plan, branch)
            local_prompt = paths.session_dir(project.name, s.id) / "prompt.md"
            prompts.write(local_prompt, launch.prompt)  # recovery reads it here
            self._record_launch(project, profile, ctx)
            srv = self.server(s)
            env: dict[str, str] | None = ctx.agent_env
            if host != LOCAL:
                command = self._host_launch(s, ctx, command, ctx.agent_env or {},
                                            local_prompt.read_text(encoding="utf-8"))
                env = None
            interrupts.check()
            # the undo is in place first: a tmux client cut short (a Ctrl-C reaches it too) may
            # have made the session; one tmux refused (a name taken) is not this start's
            launch.undo.append(lambda: tmux.kill_session(srv, s.id))
            try:
                tmux.new_session(srv, s.id, ctx.worktree, command, env,
                                 log=ctx.session_dir / "pane.log")
            except AoError:
                launch.undo.pop()
                raise
            interrupts.check()
            self.store.set_state(s.id, State.WORKING)
            emit(Event("session.started", project.name, s.id, task.key,
                       {"agent": profile.name, "branch": branch, "command": command,
                        "branch_note": launch.continued, "host": host}), self.store)
        except BaseException as e:
            self._rollback(launch, e)
            raise
        return launch

    def _branch_start(self, launch: _Launch, fresh_branch: bool) -> bool:
        """Whether the task's branch exists (here or on the remote) and is to be continued;
        with `fresh_branch` an existing one goes to the attic first."""
        project, branch = launch.project, launch.branch
        exists = workspace.local_branch_exists(project.path, branch) or \
            self._remote_has(project, branch)
        with workspace.locked(project.path):
            if exists and fresh_branch:
                earlier = self._earlier_worktree(launch)
                if earlier is not None:  # its uncommitted work saved, then the folder goes
                    old_sid, old_wt = earlier
                    worksafe.save_work(old_wt, paths.session_dir(project.name, old_sid) /
                                       "saved", project.remote, project.default_branch,
                                       (*worksafe.DISPOSABLE, *project.disposable), branch)
                    workspace.remove_worktree(project.path, old_wt)
                    self.store.update_session(old_sid, worktree=None)
                launch.continued = "moved to " + remotes.archive_branch(
                    project.path, project.remote, branch)
                return False
            if exists:
                base = self._base(project)
                if not workspace.local_branch_exists(project.path, branch):
                    remotes.fetch_branch(project.path, project.remote, branch)
                ahead = workspace.commits_ahead(project.path, project.remote, branch, base)
                launch.continued = f"continues {branch} ({ahead} commit(s) ahead of " \
                    f"{project.default_branch}); --fresh starts over"
        return exists

    def _local_worktree(self, launch: _Launch, exists: bool) -> None:
        project, branch, ctx, profile = launch.project, launch.branch, launch.ctx, \
            launch.profile
        with workspace.locked(project.path):
            base = self._base(project)
            had_branch = workspace.local_branch_exists(project.path, branch)
            workspace.require_free(ctx.worktree)
            earlier = self._earlier_worktree(launch) if exists else None
            if earlier is not None:
                # the task's branch sits in the worktree an earlier session of the task left
                # (a kill keeps one with unpushed or uncommitted work): this session takes
                # that worktree over, commits and uncommitted changes alike; undone by moving
                # it back
                old_sid, old_wt = earlier
                workspace.git(project.path, "worktree", "move", str(old_wt), str(ctx.worktree))
                launch.undo.append(lambda: self.store.update_session(
                    old_sid, worktree=str(old_wt)))
                launch.undo.append(lambda: workspace.git(project.path, "worktree", "move",
                                                         str(ctx.worktree), str(old_wt)))
                self.store.update_session(old_sid, worktree=None)
                launch.continued += f"; took over {old_sid}'s worktree"
            else:
                # the undo is in place before `git worktree add` runs: a start cut short inside
                # it (Ctrl-C) leaves a half-made worktree, and that is this start's to remove.
                # Undo runs in reverse: the worktree goes first, then the branch it checked out
                if not had_branch:
                    launch.undo.append(lambda: workspace.delete_branch(project.path, branch))
                launch.undo.append(lambda: workspace.remove_worktree(project.path, ctx.worktree))
                workspace.add_worktree(project.path, ctx.worktree, branch, base, reuse=exists)
        for rel in project.symlinks:
            workspace.link_into(project.path, ctx.worktree, rel)
        for cmd in project.post_create:
            interrupts.check()
            post_create.run(cmd, ctx.worktree, environment.for_command(project.env))
        # nothing ao writes into a worktree shows in its `git status`
        for pattern in (".ao/", *profile.excludes):
            workspace.exclude(project.path, pattern)
        if profile.uses_hooks:
            workspace.exclude(project.path, ".claude/settings.local.json")

    def _earlier_worktree(self, launch: _Launch) -> tuple[str, Path] | None:
        """The ao worktree of an ended session of the same task that has the task's branch
        checked out (its id and folder), if there is one: a respawn continues there."""
        at = workspace.checked_out_at(launch.project.path, launch.branch)
        if at is None or at == launch.ctx.worktree or \
                at.parent != paths.worktrees_dir(launch.project.name) or \
                workspace.half_made(launch.project.path, at):
            return None
        try:
            old = self.store.session(at.name)
        except AoError:
            return None
        if old.task != launch.task.key or old.state in LIVE or old.id == launch.session.id:
            return None
        return old.id, at

    def _host_launch(self, s: Session, ctx: LaunchContext, command: str, env: dict[str, str],
                     prompt: str | None = None) -> str:
        """On the host in one round trip: the prompt and the agent's environment as private
        files, and any tmux session left by a start the host cut short ended; the command
        that reads the environment from its file."""
        h = self.host(s.host)
        sdir = PurePosixPath(ctx.session_dir)
        files = {sdir / "env.sh": hostwork.env_file(env)}
        if prompt is not None:
            files[PurePosixPath(ctx.prompt_file)] = prompt
        hostwork.stage(h, files, ["tmux", f"-L{self.cfg.tmux_socket}", "kill-session", "-t",
                                  f"={s.id}"] if prompt is not None else None)
        return hostwork.sourcing(sdir / "env.sh", command)

    def _host_worktree(self, launch: _Launch, h: Host, fresh_branch: bool) -> None:
        """The worktree in the host's clone of the project's remote (symlinks point into
        this machine's clone, so they are not made there)."""
        project, branch, s = launch.project, launch.branch, launch.session
        url = workspace.remote_url(project.path, project.remote)
        if not url:
            raise BadInput(f"project {project.name} has no remote `{project.remote}`, so a "
                           f"host cannot clone it", "add the remote, or run it on `local`")
        where = hostwork.place(h, project.name, s.id)
        excludes = (*launch.profile.excludes, *((".claude/settings.local.json",)
                                                if launch.profile.uses_hooks else ()))
        how = hostwork.make_worktree(
            h, where, url, project.remote, project.default_branch, branch,
            "fresh" if fresh_branch else "new", excludes,
            base=workspace.git(project.path, "rev-parse", self._base(project)).stdout.strip(),
            on_remote=None if fresh_branch else self._remote_has(project, branch))
        self.host_up(h)
        if how != "exists":  # the session's folder there is this start's (never another's)
            launch.undo.append(lambda: hostwork.remove_dir(h, where.session_dir))

        def undo() -> None:  # a worktree just made holds nothing of anyone's yet
            with workspace.on(h):
                workspace.remove_worktree(Path(str(where.repo)), Path(str(where.worktree)))
                if how == "new":
                    workspace.delete_branch(Path(str(where.repo)), branch)

        if how != "exists":  # a worktree kept from before holds work: never undone
            launch.undo.append(undo)
        for cmd in project.post_create:
            hostwork.run_in(h, where.worktree, cmd)

    def _post_create_hooks(self, project: ProjectConfig, s: Session, task: Task,
                           ctx: LaunchContext) -> None:
        """User hooks named `post-create` (repo's hooks/ or AO_HOME/hooks/): a failing one
        fails the spawn, like a failing post_create command."""
        from ao.services.notify import Notifier

        event = emit(Event("post-create", project.name, s.id, task.key,
                           {"worktree": str(ctx.worktree), "branch": workspace.branch_name(
                               task.key)}), self.store)
        failures = Notifier(self.cfg, self.store).hooks(event)
        if failures:
            raise ExternalError(f"post-create hook failed: {failures[0]}", "fix the hook")

    def _rollback(self, launch: _Launch, error: BaseException) -> None:
        s = launch.session
        undo_errors = []
        for step in reversed(launch.undo):
            try:
                step()
            except Exception as undo_error:  # undo goes on; the original error is raised
                log.exception("undoing a step of %s's start failed", s.id)
                undo_errors.append(str(undo_error))
        # ao's own errors say what went wrong; anything else is a bug: its traceback, for us
        log.warning("start of %s (%s) undone: %s", s.id, launch.task.key, error,
                    exc_info=not isinstance(error, AoError | KeyboardInterrupt))
        emit(Event("spawn.failed", s.project, None, launch.task.key,
                   {"session": s.id, "error": str(error), "undo_errors": undo_errors}),
             self.store)
        if isinstance(error, hostsmod.Unreachable) and s.host != LOCAL:
            self.host_down(self.host(s.host), str(error), time.time())
        if launch.fresh and not isinstance(error, hostsmod.Unreachable):
            self.store.delete_session(s.id)
            shutil.rmtree(paths.session_dir(s.project, s.id), ignore_errors=True)
        elif isinstance(error, hostsmod.Unreachable):
            # the host went away, not the task: it waits in the queue for a host with room
            self.store.update_session(s.id, note=f"start on {s.host} cut short: {error}",
                                      worktree=None, branch=None, host=LOCAL)
            self.store.set_state(s.id, State.QUEUED)
        elif isinstance(error, KeyboardInterrupt) or interrupts.interrupted():
            # a person's Ctrl-C, not the task's fault: it stays in the queue as it was
            self.store.update_session(s.id, note="start interrupted (Ctrl-C)", worktree=None,
                                      branch=None, host=LOCAL)
            self.store.set_state(s.id, State.QUEUED)
        else:
            self.store.update_session(s.id, note=f"spawn failed: {error}")
            self.store.set_state(s.id, State.FAILED)

    def _base(self, project: ProjectConfig) -> str:
        """The freshly fetched default branch: fetched once per batch, not once per task."""
        key = str(project.path)
        if key not in self._bases or not self._caching:
            pushes.check_remote(project.path, project.remote)
            self._bases[key] = remotes.fresh_base(project.path, project.remote,
                                                    project.default_branch)
        return self._bases[key]

    def _remote_has(self, project: ProjectConfig, branch: str) -> bool:
        key = str(project.path)
        if key not in self._remote_heads or not self._caching:
            self._remote_heads[key] = remotes.remote_heads(project.path, project.remote,
                                                             "ao/")
        return branch in self._remote_heads[key]
