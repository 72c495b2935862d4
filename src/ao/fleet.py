"""Spawn, kill, restore and observe sessions: each step in order, and a failed spawn undone
whole. Sending messages lives in `messaging.py`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from . import (
    activity,
    agent_hooks,
    agents,
    environment,
    hostwork,
    limits,
    paths,
    placement,
    prompts,
    scheduler,
    steps,
    tmux,
    workspace,
)
from . import hosts as hostsmod
from . import plan as planmod
from .agents import LaunchContext, Profile
from .agents.base import HOOK_FILE
from .config import Config, ProjectConfig
from .errors import AoError, BadInput, ExternalError, NotFound
from .events import Event, emit
from .hosts import LOCAL, Host
from .plan import Plan, Task
from .sanitize import clean
from .state import KILLED_BY_HAND, LIVE, RUNNING, Activity, State
from .store import AtCapacity, Session, Store, TaskBusy
from .teardown import teardown

if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    from libtmux import Server

    from .notify import Notifier


@dataclass(frozen=True)
class SpawnResult:
    task: str
    status: str  # spawned | queued | skipped | failed
    session: str | None = None
    reason: str = ""


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


class Fleet:
    def __init__(self, cfg: Config, store: Store, srv: Server | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.srv = srv or tmux.server(cfg.tmux_socket)
        self._servers: dict[str, Server] = {}  # SSH hosts' tmux servers, made on first use
        # per-batch caches: one fetch and one remote listing per repository per batch
        self._bases: dict[str, str] = {}
        self._remote_heads: dict[str, set[str]] = {}
        self._caching = False
        # per session: (pane output time, capture time, screen hash, what the screen shows)
        self._screens: dict[str, tuple[int, float, str, Activity | None, float | None,
                                       bool]] = {}

    # ---- hosts -----------------------------------------------------------------------------

    def host(self, name: str) -> Host:
        h = self.cfg.hosts.get(name)
        if h is None:
            raise ExternalError(f"host {name} is no longer under `hosts:` in the config",
                                "add it back to reach its sessions")
        return h

    def server(self, s: Session | str) -> Server:
        """The tmux server the session's agent runs on (here, or its host's)."""
        return self.host_server(s.host if isinstance(s, Session) else self.store.session(s).host)

    def host_server(self, name: str) -> Server:
        if name == LOCAL:
            return self.srv
        if name not in self._servers:
            h = self.host(name)
            self._servers[name] = hostsmod.tmux_server(
                h, self.cfg.tmux_socket, str(hostwork.workdir(h) / "tmux.conf"))
        return self._servers[name]

    def place(self, project: ProjectConfig, profile: Profile) -> tuple[str | None, str]:
        """The host a new session of the project goes to (placement.py), or None and why
        not. A host in its unreachable backoff has no room; one with a memory floor is asked
        for its free memory."""
        here = self.host(LOCAL)
        if project.hosts == (LOCAL,) and here.max_sessions is None and here.min_free_mb is None:
            return LOCAL, ""  # what ao always did: the project's max_concurrent alone
        now = time.time()
        running: dict[str, int] = {}
        for x in self.store.sessions(states=set(RUNNING)):
            running[x.host] = running.get(x.host, 0) + 1
        rooms = []
        for name in project.hosts:
            h = self.host(name)
            if not h.local and not profile.on_hosts:
                continue
            reachable, free = h.local or hostsmod.due(name, now), None
            if reachable and h.min_free_mb is not None:
                pr = hostsmod.probe(h)  # this machine's too: the same one round trip
                reachable, free = pr.reachable, pr.mem_available_mb
                if not pr.reachable:
                    self._host_down(h, pr.error, now)
            rooms.append(placement.Room(name, running.get(name, 0), h.max_sessions,
                                        reachable, free, h.min_free_mb))
        if not rooms:
            return None, f"agent {profile.name} runs on this machine only, and the project " \
                "does not list `local` under its hosts"
        choice = placement.choose(rooms)
        return choice, "" if choice else placement.why_full(rooms)

    def reachable(self, name: str) -> bool:
        """Whether the machine answers now (this one always does); a host in its backoff is
        not asked."""
        if name == LOCAL:
            return True
        now = time.time()
        if name not in self.cfg.hosts or not hostsmod.due(name, now):
            return False
        try:
            hostsmod.run(self.host(name), ["true"], timeout=hostsmod.CONNECT_TIMEOUT + 5,
                         silence_is_down=True)
        except hostsmod.Unreachable as e:
            self._host_down(self.host(name), e.message, now)
            return False
        self._host_up(self.host(name))
        return True

    def _host_down(self, h: Host, error: str, now: float) -> None:
        if hostsmod.mark_down(h.name, error, now):
            from .notify import Notifier

            event = emit(Event("host.unreachable", data={"host": h.name, "error": error}),
                         self.store)
            Notifier(self.cfg, self.store).notify(
                event, f"host {h.name} is unreachable",
                f"{error}; its sessions wait, and nothing new is placed there")
        self._servers.pop(h.name, None)

    def _host_up(self, h: Host) -> None:
        was = hostsmod.mark_up(h.name)
        if was is not None:
            emit(Event("host.reachable", data={"host": h.name,
                                               "down_for": round(time.time() - was["since"])}),
                 self.store)

    # ---- tasks ----------------------------------------------------------------------------

    def plan_for(self, project: ProjectConfig, plan_file: Path | None = None) -> Plan | None:
        f = plan_file or (project.path / project.plan if project.plan else None)
        return planmod.load_valid(f) if f is not None else None

    def task(self, project: ProjectConfig, key: str, plan: Plan | None) -> Task:
        key = planmod.normalize_key(key)
        if not planmod.is_safe_key(key):
            raise BadInput(f"task key {key!r} is not safe as a branch or folder name",
                           "use letters, digits, '.', '_' and '-'")
        if plan is not None and key in plan.tasks:
            return plan.tasks[key]
        row = self.store.task(project.name, key)
        if row is not None:
            return Task(key=key, title=row["title"], body=row["body"],
                        deps=tuple(json.loads(row["deps"])), estimate=row["estimate"],
                        steps=self.store.task_steps(project.name, key))
        known = ", ".join(list(plan.tasks)[:10]) if plan else "no plan loaded"
        raise NotFound(f"no task {key} in project {project.name}; tasks: {known}",
                       "pass --plan FILE, or set `plan` in the project's config")

    def one_off(self, project_name: str, prompt: str, title: str | None,
                key: str | None = None) -> str:
        """Record a task that no plan has (`ao spawn P --prompt ...`); returns its key."""
        project = self.cfg.project(project_name)
        if not prompt.strip():
            raise BadInput("the prompt is empty", "say what the agent should do")
        if key is None:
            taken = {r.upper() for r in self.store.task_keys(project.name)}
            n = 1
            while f"TASK-{n}" in taken:
                n += 1
            key = f"TASK-{n}"
        key = planmod.normalize_key(key)
        if not planmod.is_safe_key(key):
            raise BadInput(f"task key {key!r} is not safe as a branch or folder name",
                           "use letters, digits, '.', '_' and '-'")
        first = clean(prompt).strip().splitlines()[0][:60]
        self.store.ensure_project(project.name, str(project.path), project.repo)
        self.store.put_task(project.name, key, clean(title or first), body=clean(prompt),
                            deps=())
        return key

    def pending_deps(self, project: str, task: Task) -> list[str]:
        """Dependencies not yet done (scheduler.done_tasks: merged, or issue closed)."""
        done = scheduler.done_tasks(scheduler.by_task(self.store.sessions(project)),
                                    self.store.closed_tasks(project))
        return [d for d in task.deps if d not in done]

    def _remember(self, project: ProjectConfig, task: Task, plan: Plan | None) -> None:
        self.store.ensure_project(project.name, str(project.path), project.repo)
        task_steps = plan.steps(task.key) if plan is not None and task.key in plan.tasks \
            else task.steps or steps.DEFAULT
        # a task's steps are recorded once here; after that the daemon keeps them those of
        # the newest plan holding the task (an older plan queued later must not undo that)
        extra = {} if self.store.has_task_steps(project.name, task.key) else \
            {"steps": json.dumps(steps.raw(task_steps))}
        self.store.put_task(project.name, task.key, task.title, body=task.body, deps=task.deps,
                            estimate=task.estimate,
                            plan=str(plan.source) if plan and plan.source else None, **extra)

    # ---- spawning -------------------------------------------------------------------------

    def batch_spawn(self, project_name: str, keys: list[str], plan: Plan | None = None, *,
                    force: bool = False, fresh: bool = False,
                    on_result: Callable[[SpawnResult], None] | None = None) -> list[SpawnResult]:
        """Spawn several tasks. Worktrees and tmux sessions are made one after another; the
        agents' start-up and first prompts overlap, each on a worker with its own store."""
        project = self.cfg.project(project_name)
        tasks = [self.task(project, k, plan) for k in keys]  # all keys checked before any work
        if plan is not None:
            order = planmod.priority_order(plan, [t.key for t in tasks if t.key in plan.tasks])
            tasks = [plan.tasks[k] for k in order] + [t for t in tasks if t.key not in order]
        local = threading.local()
        workers: list[Store] = []

        def finish(launch: _Launch) -> SpawnResult:
            if not hasattr(local, "fleet"):
                local.fleet = Fleet(self.cfg, Store(self.store.path), self.srv)
                workers.append(local.fleet.store)
            try:
                local.fleet._finish(launch)
            except AoError as e:
                return SpawnResult(launch.task.key, "failed", None, str(e))
            return SpawnResult(launch.task.key, "spawned", launch.session.id, launch.continued)

        pending: list[SpawnResult | Future[SpawnResult]] = []
        self._caching = True
        try:
            with ThreadPoolExecutor(max_workers=8, thread_name_prefix="ao-spawn") as pool:
                for i, t in enumerate(tasks):
                    try:
                        started = self._spawn_start(project, t, plan, force=force,
                                                    fresh=fresh)
                    except KeyboardInterrupt:
                        # Ctrl-C: the start in hand was rolled back by `_start`; the rest are
                        # not begun; the ones handed to workers finish (or roll back) below
                        pending.append(SpawnResult(t.key, "interrupted", None,
                                                   "rolled back: interrupted"))
                        pending += [SpawnResult(x.key, "interrupted", None,
                                                "not started: interrupted") for x in tasks[i + 1:]]
                        break
                    pending.append(pool.submit(finish, started)
                                   if isinstance(started, _Launch) else started)
                results = []
                for item in pending:
                    r = _wait(item)
                    results.append(r)
                    if on_result:
                        on_result(r)
        finally:
            self._caching = False
            self._bases.clear()
            self._remote_heads.clear()
            for st in workers:
                st.close()
        return results

    def spawn(self, project_name: str, key: str, plan: Plan | None = None, *,
              force: bool = False, fresh: bool = False) -> SpawnResult:
        return self.batch_spawn(project_name, [key], plan, force=force,
                                fresh=fresh)[0]

    def _spawn_start(self, project: ProjectConfig, task: Task, plan: Plan | None, *, force: bool,
                     fresh: bool) -> SpawnResult | _Launch:
        """Queue, skip, or start the task; a started one still needs `_finish`."""
        self._remember(project, task, plan)
        merged = [s for s in self.store.sessions(project.name, task=task.key) if s.merged]
        if merged and not force:
            return SpawnResult(task.key, "skipped", merged[-1].id,
                               f"already merged by {merged[-1].id}; --force starts it again")
        waiting = [] if force else self.pending_deps(project.name, task)
        profile = agents.get(task.agent or project.agent)
        try:
            if waiting:
                s = self.store.create_session(project.name, project.session_prefix, task.key,
                                              title=task.title, agent=profile.name,
                                              state=State.QUEUED)
                emit(Event("session.queued", project.name, s.id, task.key,
                           {"waits_on": waiting}), self.store)
                return SpawnResult(task.key, "queued", s.id, "waits on " + ", ".join(waiting))
            host, why = self.place(project, profile)
            if host is None:
                s = self.store.create_session(project.name, project.session_prefix, task.key,
                                              title=task.title, agent=profile.name,
                                              state=State.QUEUED)
                emit(Event("session.queued", project.name, s.id, task.key,
                           {"reason": "hosts", "why": why}), self.store)
                return SpawnResult(task.key, "queued", s.id, why)
            try:
                s = self.store.create_session(project.name, project.session_prefix, task.key,
                                              title=task.title, agent=profile.name,
                                              max_running=project.max_concurrent)
            except AtCapacity:
                s = self.store.create_session(project.name, project.session_prefix, task.key,
                                              title=task.title, agent=profile.name,
                                              state=State.QUEUED)
                emit(Event("session.queued", project.name, s.id, task.key,
                           {"reason": "max_concurrent"}), self.store)
                return SpawnResult(task.key, "queued", s.id,
                                   f"{project.max_concurrent} sessions running (max_concurrent)")
        except TaskBusy as e:
            queued = self.store.session(e.session_id)
            if queued.state is not State.QUEUED or (waiting and not force):
                return SpawnResult(task.key, "skipped", e.session_id, e.message)
            # a queued record (a plan run, or a start a crash undid) is started in place
            claim = self._claim(project, queued.id, task.key, profile)
            if isinstance(claim, SpawnResult):
                return claim
            s = self.store.session(queued.id)
            try:
                return self._start(s, task, plan, fresh_branch=fresh, fresh=False, host=claim)
            except AoError as err:
                return SpawnResult(task.key, "failed", s.id, str(err))
        try:
            return self._start(s, task, plan, fresh_branch=fresh, fresh=True, host=host)
        except AoError as e:
            return SpawnResult(task.key, "failed", None, str(e))

    def queue(self, project: ProjectConfig, task: Task, plan: Plan | None) -> Session | None:
        """A queued record for the task, unless it has a live one already."""
        self._remember(project, task, plan)
        profile = agents.get(task.agent or project.agent)
        try:
            s = self.store.create_session(project.name, project.session_prefix, task.key,
                                          title=task.title, agent=profile.name,
                                          state=State.QUEUED)
        except TaskBusy:
            return None
        emit(Event("session.queued", project.name, s.id, task.key, {}), self.store)
        return s

    def recover(self) -> list[tuple[str, str]]:
        """After a crash: undo starts that were cut short (back to the queue, or failed if
        they somehow hold work), and give a first prompt that was never sent to its agent.
        A start whose process is alive (a `batch-spawn` running now) is left to it."""
        done: list[tuple[str, str]] = []
        for s in self.store.sessions(states={State.SPAWNING}):
            project = self.cfg.projects.get(s.project)
            if project is None or started_elsewhere(s):
                continue
            if s.branch is None:  # cut short before the record named it
                s = replace(s, branch=workspace.branch_name(s.task))
            try:
                out = teardown(self.server(s), self.store, project, s, end=None, clean=False)
            except hostsmod.Unreachable:
                continue  # its host is away: undone when it answers again
            if out.worktree == "kept":
                self.store.set_state(s.id, State.FAILED, note="start interrupted; kept: " +
                                     "; ".join(out.why))
                done.append((s.id, "failed"))
                continue
            self.store.update_session(s.id, worktree=None, branch=None)
            self.store.set_state(s.id, State.QUEUED)
            done.append((s.id, "requeued"))
        for s in self.store.sessions(states={State.WORKING}):
            if started_elsewhere(s):
                continue  # its start is still being finished by a live process
            project = self.cfg.projects.get(s.project)
            if project is None or not self.reachable(s.host):
                continue  # a host away: its sessions are recovered when it answers
            prompts_ = [m for m in self.store.messages(s.id) if m["source"] == "prompt"]
            prompt_file = paths.session_dir(s.project, s.id) / "prompt.md"
            profile = agents.get(s.agent or "command")
            # an agent whose command carried the prompt (`{prompt_file}`) never gets it pasted
            pasted = profile.pastes_prompt(self._context(
                project, s, profile, self._recorded_launch(s.project, s.id)))
            if pasted and not prompts_ and prompt_file.exists():
                from .messaging import Messenger

                body = Messenger(self).prepare(s, prompt_file.read_text(encoding="utf-8"))
                self.store.queue_message(s.id, body, "prompt")
                done.append((s.id, "prompt queued"))
            elif prompts_ and all(m["status"] == "failed" for m in prompts_):
                reason = ("the first prompt was not delivered; check whether the agent has "
                          f"it, then `ao send {s.id}` it or `ao session resume {s.id}`")
                self.escalate(s, "escalate:delivery:prompt", reason)
                done.append((s.id, "escalated"))
        for sid, what in done:
            emit(Event("session.recovered", data={"session": sid, "outcome": what}),
                 self.store)
        return done

    def start_queued(self, sid: str, plan: Plan | None = None,
                     agent: str | None = None) -> SpawnResult:
        """Start a queued session in place (the daemon does this when its deps are done);
        `agent` overrides the task's agent (the fallback while the usual one is limited)."""
        s = self.store.session(sid)
        project = self.cfg.project(s.project)
        task = self.task(project, s.task, plan)
        if agent:
            task = replace(task, agent=agent)
        claim = self._claim(project, sid, task.key, agents.get(task.agent or project.agent))
        if isinstance(claim, SpawnResult):
            return claim
        try:
            self.launch(self.store.session(sid), task, plan, fresh_branch=False, fresh=False,
                        host=claim)
        except AoError as e:
            return SpawnResult(task.key, "failed", sid, str(e))
        return SpawnResult(task.key, "spawned", sid)

    def _claim(self, project: ProjectConfig, sid: str, key: str,
               profile: Profile) -> SpawnResult | str:
        """Take a queued record for this process to start, and the host it goes to; why
        not, if it cannot."""
        running = self.store.sessions(project.name, states=set(RUNNING))
        if len(running) >= project.max_concurrent:
            return SpawnResult(key, "queued", sid, "max_concurrent reached")
        host, why = self.place(project, profile)
        if host is None:
            return SpawnResult(key, "queued", sid, why)
        if not self.store.claim_queued(sid):
            return SpawnResult(key, "skipped", sid, "another process is starting it")
        return host

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
        return environment.build(os.environ, profile.passthrough,
                                 {**profile.env(ctx), "AO_HOME": str(paths.ao_home())},
                                 configured, environment.BASE_ENV if host == LOCAL else ())

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

    def launch(self, s: Session, task: Task, plan: Plan | None, *, fresh_branch: bool,
               fresh: bool, host: str = LOCAL) -> None:
        """Make the worktree, start the agent, deliver the first prompt; on any failure undo
        every step taken, in reverse, and leave no trace but a `spawn.failed` event."""
        self._finish(self._start(s, task, plan, fresh_branch=fresh_branch, fresh=fresh,
                                 host=host))

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
            exists = self._branch_start(launch, fresh_branch)
            if host == LOCAL:
                self._local_worktree(launch, exists)
            else:
                self._host_worktree(launch, self.host(host), fresh_branch)
            self.store.update_session(s.id, branch=branch, worktree=str(ctx.worktree),
                                      agent=profile.name)
            self._post_create_hooks(project, s, task, ctx)
            ctx = launch.ctx = replace(ctx, agent_env=self.agent_env(profile, ctx, host=host))
            profile.prepare(ctx)
            launch.prompt = prompts.first_prompt(project, task, plan, branch)
            local_prompt = paths.session_dir(project.name, s.id) / "prompt.md"
            prompts.write(local_prompt, launch.prompt)  # recovery reads it here
            if host != LOCAL:
                hostwork.write(self.host(host), PurePosixPath(ctx.prompt_file),
                               local_prompt.read_text(encoding="utf-8"))
            self._record_launch(project, profile, ctx)
            srv = self.server(s)
            env: dict[str, str] | None = ctx.agent_env
            if host != LOCAL:
                tmux.kill_session(srv, s.id)  # one left by a start the host cut short
                command = hostwork.env_command(self.host(host), PurePosixPath(ctx.session_dir),
                                               command, ctx.agent_env or {})
                env = None
            tmux.new_session(srv, s.id, ctx.worktree, command, env)
            launch.undo.append(lambda: tmux.kill_session(srv, s.id))
            tmux.pipe_to(srv, s.id, ctx.session_dir / "pane.log")
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
                launch.continued = "moved to " + workspace.archive_branch(
                    project.path, project.remote, branch)
                return False
            if exists:
                base = self._base(project)
                if not workspace.local_branch_exists(project.path, branch):
                    workspace.fetch_branch(project.path, project.remote, branch)
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
            workspace.add_worktree(project.path, ctx.worktree, branch, base, reuse=exists)
        # undo runs in reverse: the worktree goes first, then the branch it had checked out
        if not had_branch:
            launch.undo.append(lambda: workspace.delete_branch(project.path, branch))
        launch.undo.append(lambda: workspace.remove_worktree(project.path, ctx.worktree))
        for rel in project.symlinks:
            workspace.link_into(project.path, ctx.worktree, rel)
        for cmd in project.post_create:
            _run_post_create(cmd, ctx.worktree)
        # nothing ao writes into a worktree shows in its `git status`
        for pattern in (".ao/", *profile.excludes):
            workspace.exclude(project.path, pattern)
        if profile.uses_hooks:
            workspace.exclude(project.path, ".claude/settings.local.json")

    def _host_worktree(self, launch: _Launch, h: Host, fresh_branch: bool) -> None:
        """The worktree in the host's clone of the project's remote (symlinks point into
        this machine's clone, so they are not made there)."""
        project, branch, s = launch.project, launch.branch, launch.session
        url = workspace.remote_url(project.path, project.remote)
        if not url:
            raise BadInput(f"project {project.name} has no remote `{project.remote}`, so a "
                           f"host cannot clone it", "add the remote, or run it on `local`")
        where = hostwork.place(h, project.name, s.id)
        launch.undo.append(lambda: hostwork.remove_dir(h, where.session_dir))
        how = hostwork.make_worktree(h, where, url, project.remote, project.default_branch,
                                     branch, "fresh" if fresh_branch else "new",
                                     launch.profile.excludes)
        self._host_up(h)

        def undo() -> None:  # a worktree just made holds nothing of anyone's yet
            with workspace.on(h):
                workspace.remove_worktree(Path(str(where.repo)), Path(str(where.worktree)))
                if how == "new":
                    workspace.delete_branch(Path(str(where.repo)), branch)

        if how != "exists":  # a worktree kept from before holds work: never undone
            launch.undo.append(undo)
        for cmd in project.post_create:
            hostwork.run_in(h, where.worktree, cmd)
        hostsmod.install_tmux_conf(h, str(hostwork.workdir(h) / "tmux.conf"))

    def _post_create_hooks(self, project: ProjectConfig, s: Session, task: Task,
                           ctx: LaunchContext) -> None:
        """User hooks named `post-create` (repo's hooks/ or AO_HOME/hooks/): a failing one
        fails the spawn, like a failing post_create command."""
        from .notify import Notifier

        event = emit(Event("post-create", project.name, s.id, task.key,
                           {"worktree": str(ctx.worktree), "branch": workspace.branch_name(
                               task.key)}), self.store)
        failures = Notifier(self.cfg, self.store).hooks(event)
        if failures:
            raise ExternalError(f"post-create hook failed: {failures[0]}", "fix the hook")

    def _finish(self, launch: _Launch) -> None:
        """Wait for the agent to be ready and deliver the first prompt (safe in a thread with
        its own Fleet)."""
        s, ctx, profile = launch.session, launch.ctx, launch.profile
        try:
            if profile.pastes_prompt(ctx):
                self._await_ready(self.store.session(s.id), profile, ctx)
                from .messaging import Messenger

                m = Messenger(self)
                current = self.store.session(s.id)
                result = m.deliver(current, m.prepare(current, launch.prompt), "prompt")
                if result.status != "delivered":
                    raise ExternalError(f"the first prompt was not delivered: {result.detail}",
                                        f"see {paths.display(ctx.session_dir / 'pane.log')}")
            else:
                self._await_alive(self.store.session(s.id), profile)
            emit(Event("session.spawned", s.project, s.id, launch.task.key,
                       {"agent": profile.name, "branch": launch.branch}), self.store)
        except BaseException as e:
            self._rollback(launch, e)
            raise

    def _rollback(self, launch: _Launch, error: BaseException) -> None:
        s = launch.session
        undo_errors = []
        for step in reversed(launch.undo):
            try:
                step()
            except Exception as undo_error:  # undo goes on; the original error is raised
                undo_errors.append(str(undo_error))
        emit(Event("spawn.failed", s.project, None, launch.task.key,
                   {"session": s.id, "error": str(error), "undo_errors": undo_errors}),
             self.store)
        if isinstance(error, hostsmod.Unreachable) and s.host != LOCAL:
            self._host_down(self.host(s.host), str(error), time.time())
        if launch.fresh:
            self.store.delete_session(s.id)
            shutil.rmtree(paths.session_dir(s.project, s.id), ignore_errors=True)
        elif isinstance(error, hostsmod.Unreachable):
            # the host went away, not the task: it waits in the queue for a host with room
            self.store.update_session(s.id, note=f"start on {s.host} cut short: {error}",
                                      worktree=None, branch=None, host=LOCAL)
            self.store.set_state(s.id, State.QUEUED)
        else:
            self.store.update_session(s.id, note=f"spawn failed: {error}")
            self.store.set_state(s.id, State.FAILED)

    def _base(self, project: ProjectConfig) -> str:
        """The freshly fetched default branch: fetched once per batch, not once per task."""
        key = str(project.path)
        if key not in self._bases or not self._caching:
            self._bases[key] = workspace.fresh_base(project.path, project.remote,
                                                    project.default_branch)
        return self._bases[key]

    def _remote_has(self, project: ProjectConfig, branch: str) -> bool:
        key = str(project.path)
        if key not in self._remote_heads or not self._caching:
            self._remote_heads[key] = workspace.remote_heads(project.path, project.remote,
                                                             "ao/")
        return branch in self._remote_heads[key]

    def _await_ready(self, s: Session, profile: Profile, ctx: LaunchContext) -> None:
        srv, sid = self.server(s), s.id
        if ctx.ready_pattern:
            pattern = re.compile(ctx.ready_pattern, re.M)
            screen = tmux.wait_screen(srv, sid, lambda sc: bool(pattern.search(sc)),
                                      profile.ready_timeout)
        elif profile.ready_when_alive_after:
            # a plain command may draw nothing until it gets input: alive after a settle time
            # is ready (one that dies at once is caught below)
            tmux.wait_screen(srv, sid, lambda _s: False, profile.ready_when_alive_after)
            p = tmux.pane(srv, sid)
            screen = tmux.capture(srv, sid) if p is not None and not p.dead else None
        else:
            screen = tmux.wait_screen(srv, sid, profile.is_ready, profile.ready_timeout)
        if screen is None:
            p = tmux.pane(srv, sid)
            last = tmux.capture(srv, sid).strip().splitlines()[-3:]
            if p is None or p.dead:
                raise ExternalError(
                    f"agent {profile.name} exited (status {p.exit_status if p else '?'}) before "
                    f"it was ready: {' | '.join(last) or 'no output'}",
                    "check the agent's command and that it runs in this worktree")
            raise ExternalError(f"agent {profile.name} was not ready after "
                                f"{profile.ready_timeout:g}s: {' | '.join(last)}",
                                "a first-run dialog may be waiting; attach to see it")

    def _await_alive(self, s: Session, profile: Profile) -> None:
        srv, sid = self.server(s), s.id
        # a command that cannot start (not found, bad flags) dies within moments
        tmux.wait_screen(srv, sid, lambda _s: False, 0.5)
        p = tmux.pane(srv, sid)
        if p is None or (p.dead and p.exit_status not in (0, None)):
            last = tmux.capture(srv, sid).strip().splitlines()[-3:]
            raise ExternalError(f"agent command exited at once (status "
                                f"{p.exit_status if p else '?'}): {' | '.join(last)}",
                                "check the command template in the project's config")

    # ---- observing ------------------------------------------------------------------------

    def observe(self, s: Session) -> Activity:
        """Look at one session's pane and record what it shows (hooks first, then screen)."""
        return self.observe_all([s])[s.id]

    def observe_all(self, sessions: list[Session],
                    now: float | None = None) -> dict[str, Activity]:
        """Observe many sessions for the price of one: one `list-panes -a` for liveness and
        last output, a `capture-pane` only for a pane whose output moved since this process
        last looked, and one transaction for the rows whose observations changed. That is
        per machine: one `list-panes` per host with sessions, over its open connection. A host
        that does not answer leaves its sessions `unreachable` (not exited: nothing is known
        of them) and is asked again after its backoff."""
        now = time.time() if now is None else now
        states: dict[str, tmux.PaneState] = {}
        down: set[str] = set()
        fresh: dict[str, Session] = {}
        for name in sorted({s.host for s in sessions}):
            here = [s for s in sessions if s.host == name]
            try:
                if name != LOCAL and not hostsmod.due(name, now):
                    raise hostsmod.Unreachable(f"host {name} is in its retry backoff", "")
                states.update(self._poll_machine(name, here, fresh))
            except hostsmod.Unreachable as e:
                down.add(name)
                if name != LOCAL and hostsmod.due(name, now):
                    self._host_down(self.host(name), e.message, now)
        changes: dict[str, dict[str, object]] = {}
        out: dict[str, Activity] = {}
        for s in (fresh.get(x.id, x) for x in sessions):
            p = states.get(s.id)
            if s.host in down:
                new: dict[str, object] = {"activity": Activity.UNREACHABLE.value}
                out[s.id] = Activity.UNREACHABLE
            elif p is None or p.dead:
                new = {"activity": Activity.EXITED.value, "pane_alive": 0,
                       "exit_status": p.exit_status if p else None}
                out[s.id] = Activity.EXITED
            else:
                profile = agents.get(s.agent or "command")
                digest, seen, until, settled = self._screen(s, p, profile)
                seen = profile.title_activity(p.title) or seen
                changed_at = s.screen_changed_at if digest == s.screen_hash and \
                    s.screen_changed_at else now
                hook = Activity(s.hook_activity) if s.hook_activity else None
                out[s.id] = activity.infer(seen, hook, s.hook_at, profile.uses_hooks,
                                           changed_at, now, settled)
                new = {"activity": out[s.id].value, "screen_hash": digest,
                       "screen_changed_at": changed_at, "pane_alive": 1, "exit_status": None}
                if until is not None and until > now:
                    # the usage limit outranks everything: the agent can do nothing till then
                    out[s.id] = Activity.LIMITED
                    new.update(activity=Activity.LIMITED.value, limited_until=until)
            diff = {k: v for k, v in new.items() if getattr(s, k) != v}
            if diff:
                changes[s.id] = {**diff, "activity_at": now, "runtime_seen_at": now}
        self.store.update_many(changes)
        return out

    def _poll_machine(self, name: str, sessions: list[Session],
                      fresh: dict[str, Session]) -> dict[str, tmux.PaneState]:
        """One machine's panes, and the new lines of its sessions' hook files: here, a
        `list-panes` and file reads; on a host, both in one round trip (hostwork.poll)."""
        hooked = [s for s in sessions if agents.get(s.agent or "command").uses_hooks]
        if name == LOCAL:
            for s in hooked:
                fresh[s.id] = agent_hooks.ingest_local(self.store, s)
            return tmux.panes(self.srv)
        h = self.host(name)
        reads = [(s.id, hostwork.place(h, s.project, s.id).session_dir / HOOK_FILE,
                  s.hooks_read) for s in hooked]
        lines, chunks = hostwork.poll(h, self.cfg.tmux_socket, reads)
        self._host_up(h)
        for s in hooked:
            if s.id in chunks:
                fresh[s.id] = agent_hooks.ingest(self.store, s, chunks[s.id], s.hooks_read)
        return tmux.parse_panes(lines) if lines is not None else {}

    def read_hooks(self, s: Session) -> Session:
        """The session's new hook lines recorded now (`ao send` waits on them)."""
        s = self.store.session(s.id)
        if s.host == LOCAL:
            return agent_hooks.ingest_local(self.store, s)
        h = self.host(s.host)
        path = hostwork.place(h, s.project, s.id).session_dir / HOOK_FILE
        return agent_hooks.ingest(self.store, s, hostwork.read_from(h, path, s.hooks_read),
                                  s.hooks_read)

    def hook_seen(self, s: Session, event: str, after_id: int) -> bool:
        """The agent's hook reported `event` after the event id `after_id`."""
        self.read_hooks(s)
        return self.store.hook_seen(s.id, event, after_id)

    def _screen(self, s: Session, p: tmux.PaneState, profile: Profile
                ) -> tuple[str, Activity | None, float | None, bool]:
        """The screen's hash, what the profile reads on it and when a usage limit shown on
        it resets; captured again only when the pane printed something since the last
        capture (tmux keeps output times in seconds, so output in the second of the capture
        counts as new)."""
        cached = self._screens.get(s.id)
        if cached is not None and cached[0] == p.activity and p.activity < cached[1] - 1:
            return cached[2], cached[3], cached[4], cached[5]
        taken = time.time()
        screen = tmux.capture(self.server(s), s.id)
        seen = profile.activity(screen)
        line = limits.limit_line("\n".join(screen.splitlines()[-40:])) \
            if profile.shows_limits else None
        until = limits.reset_at(line, datetime.now().astimezone()) if line else None
        digest = tmux.screen_hash(screen)
        settled = profile.settled(screen)
        self._screens[s.id] = (p.activity, taken, digest, seen, until, settled)
        return digest, seen, until, settled

    # ---- ending and restoring -------------------------------------------------------------

    def kill(self, sid: str, force: bool = False) -> dict[str, object]:
        s = self.store.session(sid)
        if s.state not in LIVE and s.state is not State.KILLED:
            raise BadInput(f"{sid} is {s.state}, not running", "see `ao session ls --all`")
        project = self.cfg.project(s.project)
        # killed, not cleaned: `ao session restore` can bring it back from its branch
        outcome = teardown(self.server(s), self.store, project, s, end=State.KILLED, force=force,
                           clean=False, note=KILLED_BY_HAND).as_dict()
        for m in self.store.messages(sid, "queued"):  # a restore starts afresh
            self.store.set_message(m["id"], "failed", "the session was killed")
        emit(Event("session.killed", s.project, sid, s.task, outcome), self.store)
        return outcome

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
            from .notify import Notifier

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
        s = self.store.session(sid)
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
        branch = s.branch or workspace.branch_name(s.task)
        if s.host != LOCAL:  # the worktree on the host, made again from the branch if gone
            url = workspace.remote_url(project.path, project.remote) or ""
            hostwork.make_worktree(self.host(s.host), hostwork.place(
                self.host(s.host), project.name, sid), url, project.remote,
                project.default_branch, branch, "reuse", profile.excludes)
        elif not ctx.worktree.exists():
            if not (workspace.local_branch_exists(project.path, branch)
                    or workspace.remote_branch_exists(project.path, project.remote, branch)):
                raise BadInput(f"{sid}'s worktree and branch {branch} are gone",
                               f"start over with `ao spawn {s.project} {s.task}`")
            with workspace.locked(project.path):
                base = workspace.fresh_base(project.path, project.remote, project.default_branch)
                workspace.add_worktree(project.path, ctx.worktree, branch, base, reuse=True)
            profile.prepare(ctx)
        command = profile.resume_command(ctx)
        if s.host != LOCAL:
            hostsmod.install_tmux_conf(self.host(s.host), str(
                hostwork.workdir(self.host(s.host)) / "tmux.conf"))
            command = hostwork.env_command(self.host(s.host), PurePosixPath(ctx.session_dir),
                                           command, env or {})
            env = None
        if p is not None:
            tmux.respawn(srv, sid, ctx.worktree, command, env)
        else:
            tmux.new_session(srv, sid, ctx.worktree, command, env)
            tmux.pipe_to(srv, sid, ctx.session_dir / "pane.log")
        if s.state is State.KILLED:
            self.store.set_state(sid, State.WORKING)
        emit(Event("session.restored", s.project, sid, s.task, {"command": command}),
             self.store)
        return self.store.session(sid)


def started_elsewhere(s: Session) -> bool:
    """The session's start belongs to another process that is still alive."""
    return bool(s.owner_pid) and s.owner_pid != os.getpid() and \
        paths.pid_alive(s.owner_pid or 0)


def _wait(item: SpawnResult | Future[SpawnResult]) -> SpawnResult:
    """A start's result; a Ctrl-C while waiting does not abandon a start a worker is making
    (it finishes or rolls itself back, and is reported)."""
    while isinstance(item, Future):
        try:
            return item.result()
        except KeyboardInterrupt:
            continue
    return item


def _run_post_create(cmd: str, cwd: Path) -> None:
    try:
        proc = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True,
                              timeout=600)
    except subprocess.TimeoutExpired:
        raise ExternalError(f"post_create `{cmd}` timed out after 600s",
                            "fix the command") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        raise ExternalError(f"post_create `{cmd}` failed (exit {proc.returncode}): {tail[0]}",
                            "fix the command in the project's config")

