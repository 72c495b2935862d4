"""Spawn, kill, restore and observe sessions: each step in order, and a failed spawn undone
whole. Sending messages lives in `messaging.py`."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ao import paths
from ao.decide import plan as planmod
from ao.decide import scheduler, steps
from ao.decide.plan import Plan, Task
from ao.errors import AoError, BadInput, ExternalError, NotFound
from ao.host_config import LOCAL
from ao.record.events import Event, emit
from ao.record.state import RUNNING, State
from ao.record.store import AtCapacity, Session, Store, TaskBusy
from ao.sanitize import clean
from ao.services import interrupts, pushes
from ao.services.ending import Ending
from ao.services.machines import Machines
from ao.services.observing import Observing
from ao.services.starting import Starting, _Launch, _Ready
from ao.world import agent_ready, agents
from ao.world import hosts as hostsmod

if TYPE_CHECKING:  # only tmux.py uses libtmux at runtime
    from libtmux import Server

    from ao.config import Config, ProjectConfig
    from ao.world.agents import Profile


SPAWN_WORKERS = 32  # at most this many starts of a batch under way at once


@dataclass(frozen=True)
class SpawnResult:
    task: str
    status: str  # spawned | queued | skipped | failed
    session: str | None = None
    reason: str = ""


class Fleet(Ending, Starting, Observing, Machines):
    """Spawn (batches, the queue, claims), recover, kill, resume and restore sessions: the
    face of the layers below it (machines, observing, starting)."""

    @classmethod
    @contextmanager
    def own(cls, cfg: Config, store_path: Path, srv: Server | None = None) -> Iterator[Fleet]:
        """A fleet with a store connection of its own, for a worker thread (SQLite's
        connections stay in the thread that made them), closed after."""
        store = Store(store_path)
        try:
            yield cls(cfg, store, srv)
        finally:
            store.close()

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
        """Spawn several tasks. Worktrees and tmux sessions here are made one after another;
        the agents' start-up and first prompts overlap, each on a worker with its own store,
        and so do whole starts on SSH hosts (each host's clone is locked there)."""
        project = self.cfg.project(project_name)
        tasks = [self.task(project, k, plan) for k in keys]  # all keys checked before any work
        pushes.check_remote(project.path, project.remote)  # and the remote agents push to
        if plan is not None:
            order = planmod.priority_order(plan, [t.key for t in tasks if t.key in plan.tasks])
            tasks = [plan.tasks[k] for k in order] + [t for t in tasks if t.key not in order]
        local = threading.local()
        workers: list[Store] = []

        def finish(item: _Launch | _Ready) -> SpawnResult:
            if not hasattr(local, "fleet"):
                local.fleet = Fleet(self.cfg, Store(self.store.path), self.srv)
                workers.append(local.fleet.store)
                # the batch's one fetch of the default branch and one listing of the remote's
                # branches, shared: a start on a host fetches and lists no more than one here
                local.fleet._caching = True
                local.fleet._bases, local.fleet._remote_heads = self._bases, self._remote_heads
            try:
                launch = item if isinstance(item, _Launch) else local.fleet._start(
                    item.session, item.task, item.plan, host=item.host,
                    fresh_branch=item.fresh_branch, fresh=item.fresh)
                local.fleet._finish(launch)
            except hostsmod.Unreachable as e:  # the host went away, not the task
                return SpawnResult(item.task.key, "queued", item.session.id,
                                   f"{e.message}; it waits in the queue")
            except KeyboardInterrupt:  # a Ctrl-C noted, raised at a safe point in this thread
                return SpawnResult(item.task.key, "interrupted", None,
                                   "rolled back: interrupted")
            except AoError as e:
                if interrupts.interrupted():  # a Ctrl-C at the terminal cut a command short
                    return SpawnResult(item.task.key, "interrupted", None,
                                       f"rolled back: interrupted ({e})")
                return SpawnResult(item.task.key, "failed",
                                   None if item.fresh else item.session.id, str(e))
            return SpawnResult(launch.task.key, "spawned", launch.session.id, launch.continued)

        pending: list[SpawnResult | Future[SpawnResult]] = []
        self._caching = True
        self._batch_up = set()
        try:
            if len(tasks) > 1:  # the project's hosts asked at once, not one by one as placed,
                # while the first starts here go on
                self.ask_ahead([n for n in project.hosts if n != LOCAL])
            # a worker a start: a start on a host holds its worker for all of it (round
            # trips, mostly waiting), and a fixed few made the batch's last starts queue
            # Ctrl-C is noted and raised at `_start`'s safe points (interrupts.py), so the start
            # in hand is undone whole wherever the signal lands, and the undo is never cut
            with interrupts.deferred(), ThreadPoolExecutor(
                    max_workers=min(max(len(tasks), 1), SPAWN_WORKERS),
                    thread_name_prefix="ao-spawn") as pool:
                for i, t in enumerate(tasks):
                    if interrupts.interrupted():
                        pending += [SpawnResult(x.key, "interrupted", None,
                                                "not started: interrupted") for x in tasks[i:]]
                        break
                    try:
                        started = self._spawn_start(project, t, plan, force=force,
                                                    fresh=fresh)
                    except KeyboardInterrupt:
                        # the start in hand was rolled back by `_start`; the rest are not
                        # begun; the ones handed to workers finish (or roll back) below
                        pending.append(SpawnResult(t.key, "interrupted", None,
                                                   "rolled back: interrupted"))
                        pending += [SpawnResult(x.key, "interrupted", None,
                                                "not started: interrupted") for x in tasks[i + 1:]]
                        break
                    pending.append(pool.submit(finish, started)
                                   if isinstance(started, _Launch | _Ready) else started)
                results = []
                for item in pending:
                    r = _wait(item)
                    results.append(r)
                    if on_result:
                        on_result(r)
            self._heard_ahead()  # what the hosts answered is recorded, placed on or not
        finally:
            self._ahead = None
            self._caching = False
            self._batch_up = None
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
                     fresh: bool) -> SpawnResult | _Launch | _Ready:
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
                return self._queued(project, task, profile, {"waits_on": waiting},
                                    "waits on " + ", ".join(waiting))
            host, why = self.place(project, profile)
            if host is None:
                return self._queued(project, task, profile, {"reason": "hosts", "why": why}, why)
            try:
                s = self.store.create_session(project.name, project.session_prefix, task.key,
                                              title=task.title, agent=profile.name,
                                              max_running=project.max_concurrent)
            except AtCapacity:
                return self._queued(project, task, profile, {"reason": "max_concurrent"},
                                    f"{project.max_concurrent} sessions running "
                                    "(max_concurrent)")
        except TaskBusy as e:
            return self._start_queued_record(project, task, plan, profile, e, waiting,
                                             force=force, fresh=fresh)
        return self._hand_over(s, task, plan, host, fresh=fresh, new=True)

    def _queued(self, project: ProjectConfig, task: Task, profile: Profile,
                data: dict[str, object], why: str) -> SpawnResult:
        """A queued record for the task, and the event that says why it waits."""
        return SpawnResult(task.key, "queued", self._new_queued(project, task, profile,
                                                                data).id, why)

    def _new_queued(self, project: ProjectConfig, task: Task, profile: Profile,
                    data: dict[str, object]) -> Session:
        """A queued record and its `session.queued` event (TaskBusy if the task has a live
        record already)."""
        s = self.store.create_session(project.name, project.session_prefix, task.key,
                                      title=task.title, agent=profile.name, state=State.QUEUED)
        emit(Event("session.queued", project.name, s.id, task.key, data), self.store)
        return s

    def _start_queued_record(self, project: ProjectConfig, task: Task, plan: Plan | None,
                             profile: Profile, busy: TaskBusy, waiting: list[str], *,
                             force: bool, fresh: bool) -> SpawnResult | _Launch | _Ready:
        """The task has a record already: a queued one (a plan run, or a start a crash
        undid) is started in place; any other is left alone."""
        queued = self.store.session(busy.session_id)
        if queued.state is not State.QUEUED or (waiting and not force):
            return SpawnResult(task.key, "skipped", busy.session_id, busy.message)
        claim = self._claim(project, queued.id, task.key, profile)
        if isinstance(claim, SpawnResult):
            return claim
        return self._hand_over(self.store.session(queued.id), task, plan, claim, fresh=fresh,
                               new=False)

    def _hand_over(self, s: Session, task: Task, plan: Plan | None, host: str, *, fresh: bool,
                   new: bool) -> SpawnResult | _Launch | _Ready:
        """A start on an SSH host goes to a worker (its host recorded now: the next
        placement counts it there); one here is started now."""
        if host != LOCAL:
            return _Ready(self.store.update_session(s.id, host=host), task, plan, fresh, new,
                          host)
        try:
            return self._start(s, task, plan, fresh_branch=fresh, fresh=new, host=host)
        except AoError as e:
            if interrupts.interrupted():  # a Ctrl-C at the terminal cut a command short too
                raise KeyboardInterrupt from e
            return SpawnResult(task.key, "failed", None if new else s.id, str(e))

    def queue(self, project: ProjectConfig, task: Task, plan: Plan | None) -> Session | None:
        """A queued record for the task, unless it has a live one already."""
        self._remember(project, task, plan)
        try:
            return self._new_queued(project, task, agents.get(task.agent or project.agent), {})
        except TaskBusy:
            return None

    def start_queued(self, sid: str, plan: Plan | None = None,
                     agent: str | None = None, beyond_max: bool = False) -> SpawnResult:
        """Start a queued session in place (the daemon does this when its deps are done);
        `agent` overrides the task's agent (the fallback while the usual one is limited);
        `beyond_max`: past max_concurrent (the fix of a red main, which the others wait for)."""
        s = self.store.session(sid)
        project = self.cfg.project(s.project)
        task = self.task(project, s.task, plan)
        if agent:
            task = replace(task, agent=agent)
        claim = self._claim(project, sid, task.key, agents.get(task.agent or project.agent),
                            beyond_max)
        if isinstance(claim, SpawnResult):
            return claim
        try:
            self.launch(self.store.session(sid), task, plan, fresh_branch=False, fresh=False,
                        host=claim)
        except hostsmod.Unreachable as e:  # back in the queue (starting._rollback)
            return SpawnResult(task.key, "queued", sid, e.message)
        except AoError as e:
            return SpawnResult(task.key, "failed", sid, str(e))
        return SpawnResult(task.key, "spawned", sid)

    def _claim(self, project: ProjectConfig, sid: str, key: str,
               profile: Profile, beyond_max: bool = False) -> SpawnResult | str:
        """Take a queued record for this process to start, and the host it goes to; why
        not, if it cannot."""
        running = self.store.sessions(project.name, states=set(RUNNING))
        if not beyond_max and len(running) >= project.max_concurrent:
            return SpawnResult(key, "queued", sid, "max_concurrent reached")
        host, why = self.place(project, profile)
        if host is None:
            return SpawnResult(key, "queued", sid, why)
        if not self.store.claim_queued(sid):
            return SpawnResult(key, "skipped", sid, "another process is starting it")
        return host

    def launch(self, s: Session, task: Task, plan: Plan | None, *, fresh_branch: bool,
               fresh: bool, host: str = LOCAL) -> None:
        """Make the worktree, start the agent, deliver the first prompt; on any failure undo
        every step taken, in reverse, and leave no trace but a `spawn.failed` event."""
        self._finish(self._start(s, task, plan, fresh_branch=fresh_branch, fresh=fresh,
                                 host=host))

    def _finish(self, launch: _Launch) -> None:
        """Wait for the agent to be ready and deliver the first prompt (safe in a thread with
        its own Fleet)."""
        s, ctx, profile = launch.session, launch.ctx, launch.profile
        try:
            if profile.pastes_prompt(ctx):
                agent_ready.await_ready(self.server(s), s.id, profile, ctx)
                from ao.services.messaging import Messenger

                m = Messenger(self)
                current = self.store.session(s.id)
                result = m.deliver(current, m.prepare(current, launch.prompt), "prompt")
                if result.status != "delivered":
                    raise ExternalError(f"the first prompt was not delivered: {result.detail}",
                                        f"see {paths.display(ctx.session_dir / 'pane.log')}")
            else:
                agent_ready.await_alive(self.server(s), s.id)
            emit(Event("session.spawned", s.project, s.id, launch.task.key,
                       {"agent": profile.name, "branch": launch.branch}), self.store)
        except BaseException as e:
            self._rollback(launch, e)
            raise


def _wait(item: SpawnResult | Future[SpawnResult]) -> SpawnResult:
    """A start's result; a Ctrl-C while waiting does not abandon a start a worker is making
    (it finishes or rolls itself back, and is reported)."""
    while isinstance(item, Future):
        try:
            return item.result()
        except KeyboardInterrupt:
            continue
    return item


