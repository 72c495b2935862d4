"""Sessions on SSH hosts, over real OpenSSH (tests/sshd.py): placement over the local machine
and two hosts, a plan run to all-merged with the demo agent, `send`, `logs`, `kill` and
cleanup on a remote session, and a host that goes away and comes back.

Each "host" is its own sshd on 127.0.0.1 with its own workdir and (through sshd's SetEnv) its
own TMUX_TMPDIR, so its tmux server is its own as on a separate machine. The demo agent runs
on the host with this machine's Python, which a same-machine host has.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ao import config, host_config, paths
from ao.loop.daemon import Daemon
from ao.record.state import Activity, State
from ao.record.store import Session, Store
from ao.services import hostwork
from ao.services.fleet import Fleet
from ao.services.observing import LOOK_PATIENCE, POLL_DEADLINE
from ao.world import channel, hosts

from .fleet_helpers import Env
from .helpers import git, retry_until, run_ao
from .sshd import NETNS, SSHD, SshServer, netns_pair, sshd

pytestmark = pytest.mark.skipif(SSHD is None, reason="OpenSSH's sshd is not installed; "
                                "`.ci/run` installs Debian's openssh-server")

TEST_PLAN = {"tasks": {
    key: {"title": f"Task {key}", **({"deps": deps} if deps else {}), "body": "\n".join([
        "```demo", f"write {key.lower()}.txt", f"made by {key}", "EOF",
        f"commit {key}: add {key.lower()}.txt", "push", "```"])}
    for key, deps in (("A-1", []), ("B-1", ["A-1"]), ("C-1", []), ("D-1", []))}}


class Pool:
    def __init__(self, env: Env, servers: dict[str, SshServer], root: Path,
                 tmux_dirs: dict[str, Path]) -> None:
        self.env, self.servers, self.root, self.tmux_dirs = env, servers, root, tmux_dirs

    def hosts_config(self, **limits: int) -> dict[str, object]:
        spec: dict[str, object] = {"local": {"max_sessions": limits.get("local", 1)}}
        for name, srv in self.servers.items():
            spec[name] = {**srv.host_config(), "workdir": str(self.root / name),
                          "max_sessions": limits.get(name, 1)}
        return spec

    def configure(self, project_hosts: list[str], limits: dict[str, int] | None = None,
                  **project: object) -> None:
        f = paths.config_file()
        spec = {"path": str(self.env.repo), "agent": "demo", "plan": "plans/p.yaml",
                "hosts": project_hosts, **project}
        f.write_text(json.dumps({"projects": {"shop": spec},
                                 "hosts": self.hosts_config(**(limits or {})),
                                 "cleanup": {"grace": 0}}))

    def host_tmux(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        """tmux on the host's own server, as the host sees it."""
        return subprocess.run(["tmux", "-L", self.env.socket, *args], capture_output=True,
                              text=True, env={"PATH": "/usr/bin:/bin",
                                              "TMUX_TMPDIR": str(self.tmux_dirs[name])})

    def spawn_on_a(self, agent: str) -> tuple[Fleet, Session]:
        """Task C-1 started with `agent` on host build-a, the project's only host."""
        self.configure(["build-a"], agent={"name": agent})
        fleet = Fleet(config.load(), Store(), self.env.server())
        r = fleet.spawn("shop", "C-1", fleet.plan_for(fleet.cfg.project("shop")))
        assert r.status == "spawned", r.reason
        assert r.session
        s = fleet.store.session(r.session)
        assert s.host == "build-a"
        return fleet, s

    def place(self, name: str, sid: str) -> hostwork.Place:
        return hostwork.place(config.load().hosts[name], "shop", sid)


@pytest.fixture
def pool(env: Env, tmp_path: Path) -> Iterator[Pool]:
    root = tmp_path / "hosts"
    servers: dict[str, SshServer] = {}
    # a unix socket's path is short (about 100 bytes): each host's tmux folder is under /tmp
    tmux_dirs = {name: Path(tempfile.mkdtemp(prefix=f"ao-{name}-")) for name in
                 ("build-a", "build-b")}
    p = Pool(env, servers, root, tmux_dirs)
    stack = []
    try:
        for name, folder in tmux_dirs.items():
            # a login there has its own home (as another machine's would), this PATH (the
            # agent CLIs installed there) and the tests' git identity
            home = root / f"{name}-home"
            home.mkdir(parents=True)
            cm = sshd(tmp_path / f"sshd-{name}", setenv={
                "TMUX_TMPDIR": str(folder), "HOME": str(home), "PATH": os.environ["PATH"],
                "GIT_CONFIG_GLOBAL": os.environ["GIT_CONFIG_GLOBAL"]})
            servers[name] = cm.__enter__()
            stack.append(cm)
        yield p
    finally:
        for name in servers:
            p.host_tmux(name, "kill-server")
        channel.close_all()
        d = hosts.control_dir()
        for sock in d.iterdir():
            subprocess.run(["ssh", "-O", "exit", "-S", str(sock), "x"], capture_output=True,
                           timeout=10)
        if not str(d).startswith(str(paths.home())):
            shutil.rmtree(d, ignore_errors=True)
        for cm in reversed(stack):
            cm.__exit__(None, None, None)
        for folder in tmux_dirs.values():
            shutil.rmtree(folder, ignore_errors=True)


def test_a_plan_spreads_over_this_machine_and_two_hosts_and_merges(pool: Pool) -> None:
    """One session a machine (max_sessions 1 each): three independent tasks start on three
    machines, the fourth waits for its dependency and its machine's room, and all four merge,
    each once; cleanup then leaves nothing on any host."""
    pool.env.plan_file.write_text(json.dumps(TEST_PLAN))
    pool.configure(["local", "build-a", "build-b"], ci={"command": "true"}, auto_merge=True,
                   require_review=False)
    assert run_ao("plan", "run", str(pool.env.plan_file), "-p", "shop").code == 0
    store = Store()
    d = Daemon(config.load(), store, pool.env.server())
    d.tick()
    started = {s.task: s.host for s in store.sessions("shop") if s.state is not State.QUEUED}
    assert sorted(started.values()) == ["build-a", "build-b", "local"], started

    def merged() -> bool:
        d.tick()
        return {s.task for s in store.sessions("shop") if s.merged} == set(TEST_PLAN["tasks"])

    retry_until(merged, timeout=150, interval=0.5, message="the plan merged")
    per_task: dict[str, int] = {}
    for s in store.sessions("shop"):
        if s.merged:
            per_task[s.task] = per_task.get(s.task, 0) + 1
    assert per_task == {"A-1": 1, "B-1": 1, "C-1": 1, "D-1": 1}
    log = git(pool.env.remote, "log", "--format=%s", "main")
    for key in TEST_PLAN["tasks"]:
        assert log.count(f"{key}: add") == 1, log
    # the merged sessions are cleaned on their own machines: no worktree, no tmux session
    retry_until(lambda: (d.tick(), all(s.state is State.CLEANED
                                       for s in store.sessions("shop")))[1],
                timeout=60, interval=0.5, message="all cleaned")
    for s in store.sessions("shop"):
        if s.host != "local":
            assert not Path(str(pool.place(s.host, s.id).worktree)).exists()
            assert pool.host_tmux(s.host, "has-session", "-t", f"={s.id}").returncode != 0
    assert "host.unreachable" not in paths.events_log().read_text()


def test_a_start_handed_to_a_worker_counts_on_its_host_at_once(pool: Pool) -> None:
    """Batch-spawn places every task before the workers start them: the host chosen for a
    start is recorded at once, so the next placement never counts it as this machine's and
    a host's `max_sessions` holds."""
    from ao.services.starting import _Ready

    pool.configure(["build-a", "build-b"], {"build-a": 1, "build-b": 1})
    fleet = Fleet(config.load(), Store(), pool.env.server())
    project = fleet.cfg.project("shop")
    plan = fleet.plan_for(project)
    assert plan is not None
    placed = [fleet._spawn_start(project, plan.tasks[k], plan, force=False, fresh=False)
              for k in ("A-1", "C-1", "D-1")]
    ready = [p for p in placed if isinstance(p, _Ready)]
    assert sorted(r.host for r in ready) == ["build-a", "build-b"]
    assert [fleet.store.session(r.session.id).host for r in ready] == [r.host for r in ready]
    last = placed[-1]
    assert not isinstance(last, _Ready) and last.status == "queued", last
    assert "no host has room" in last.reason


def test_a_batch_with_a_host_down_starts_on_the_others(pool: Pool) -> None:
    """A batch asks its hosts in the background while its first start here goes on: a host
    that does not answer gets none of the batch's tasks (they go to the machines with room,
    or wait in the queue), and is recorded down once."""
    pool.configure(["local", "build-a", "build-b"], {"local": 1, "build-a": 1, "build-b": 1})
    pool.servers["build-b"].stop()
    r = run_ao("batch-spawn", "shop", "A-1", "C-1", "D-1")
    assert r.code in (0, 3), r.out + r.err
    store = Store()
    where = {s.task: (s.host, s.state) for s in store.sessions("shop")}
    assert sorted(h for h, st in where.values() if st is not State.QUEUED) == [
        "build-a", "local"], where
    assert [st for _h, st in where.values()].count(State.QUEUED) == 1, where
    events = [json.loads(line) for line in paths.events_log().read_text().splitlines()]
    down = [e for e in events if e["type"] == "host.unreachable"]
    assert [e["data"]["host"] for e in down] == ["build-b"], down


def test_cleanup_says_why_it_did_not_sweep_a_host_once(pool: Pool) -> None:
    """A host cleanup could not look at is named with the reason, the host named once."""
    pool.configure(["build-a"])
    wd = pool.root / "build-a"
    wd.mkdir(parents=True)
    (wd / ".ao-installation").write_text("another-installation\n")
    r = run_ao("session", "cleanup", "-p", "shop", "--dry-run")
    line = next(x for x in r.out.splitlines() if x.startswith("not swept host"))
    assert line.startswith("not swept host build-a: workdir "), line
    assert "another ao installation's" in line and line.count("host build-a") == 1, line


def test_send_logs_kill_and_cleanup_on_a_remote_session(pool: Pool) -> None:
    pool.configure(["build-a"])
    r = run_ao("spawn", "shop", "C-1")
    assert r.code == 0 and "spawned" in r.out, r.out + r.err
    s = Store().find_session("C-1")
    assert s.host == "build-a"
    place = pool.place("build-a", s.id)
    assert s.worktree == str(place.worktree) and Path(s.worktree).is_dir()
    # listed with its host
    rows = json.loads(run_ao("session", "ls", "--json").out)
    assert [row["host"] for row in rows if row["id"] == s.id] == ["build-a"]
    # its terminal is on the host's tmux server, not on this machine's
    assert pool.host_tmux("build-a", "has-session", "-t", f"={s.id}").returncode == 0
    assert not pool.env.server().has_session(s.id)
    inbox = Path(str(place.session_dir)) / "demo-inbox.jsonl"
    retry_until(lambda: inbox.exists(), timeout=20, message="the first prompt arrived")
    # private on the host whatever the login's umask (sshd's is 022): docs/security.md
    made = [Path(s.worktree), Path(str(place.session_dir)), inbox,
            Path(str(place.session_dir)) / "pane.log"]
    assert {str(f): oct(f.stat().st_mode & 0o077) for f in made if f.exists()} == \
        {str(f): "0o0" for f in made if f.exists()}
    r = run_ao("send", s.id, "hello from far away; with 'quotes'")
    assert r.code == 0 and "delivered" in r.out, r.out + r.err
    texts = [json.loads(line)["text"] for line in inbox.read_text().splitlines()]
    assert texts[-1] == "hello from far away; with 'quotes'"
    r = run_ao("logs", s.id, "-n", "50")
    assert r.code == 0 and "hello from far away" in r.out, r.out + r.err
    # `logs -f` over ssh, stopped by SIGTERM (as a closed terminal or a supervisor would):
    # its ssh client goes with it
    follower = psutil.Popen([sys.executable, "-m", "ao", "logs", s.id, "-f"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    def following() -> list[psutil.Process]:
        found = []
        for c in follower.children(recursive=True):
            try:  # a child can end (or be a zombie) between the listing and the look
                if "tail -c 0 -f" in " ".join(c.cmdline()):
                    found.append(c)
            except psutil.Error:
                continue
        return found

    ssh = retry_until(following, timeout=20, message="the ssh client following the log")
    follower.terminate()
    assert follower.wait(10) == 128 + signal.SIGTERM
    _gone, alive = psutil.wait_procs(ssh, timeout=10)
    assert not alive, alive
    # its connection ending under it (the host's side killed) is said, exit 1, never a
    # silent exit 0; and Ctrl-C is an interruption (130), whichever of ao and ssh sees it
    for stop in ("connection", "ctrl-c"):
        follower = psutil.Popen([sys.executable, "-m", "ao", "logs", s.id, "-f"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ssh = retry_until(following, timeout=20, message="the ssh client following the log")
        if stop == "connection":
            ssh[0].kill()
            _out, err = follower.communicate(timeout=20)
            assert follower.returncode == 1, err
            assert b"the connection to host build-a ended" in err, err
        else:
            ssh[0].send_signal(signal.SIGINT)  # the terminal's Ctrl-C reaching ssh first
            follower.send_signal(signal.SIGINT)
            assert follower.wait(20) == 130
    # work the agent has not committed is never deleted: the kill keeps the worktree
    (Path(s.worktree) / "draft.txt").write_text("not committed")
    r = run_ao("session", "kill", s.id)
    assert r.code == 0, r.out + r.err
    assert pool.host_tmux("build-a", "has-session", "-t", f"={s.id}").returncode != 0
    assert (Path(s.worktree) / "draft.txt").exists()
    # restored in place on its host, in the worktree it kept
    r = run_ao("session", "restore", s.id)
    assert r.code == 0, r.out + r.err
    assert pool.host_tmux("build-a", "has-session", "-t", f"={s.id}").returncode == 0
    assert Store().session(s.id).state is State.WORKING
    retry_until(lambda: not Path(str(place.session_dir / "env.sh")).exists(), timeout=10,
                message="the agent's environment file read and removed")
    assert run_ao("session", "kill", s.id).code == 0
    r = run_ao("session", "cleanup", "-p", "shop")
    assert (Path(s.worktree) / "draft.txt").exists(), r.out
    assert Store().session(s.id).state is State.KILLED
    # --force saves it on the host first, then removes the worktree
    r = run_ao("session", "cleanup", "-p", "shop", "--force")
    assert r.code == 0, r.out + r.err
    assert not Path(s.worktree).exists()
    saved = list((Path(str(place.session_dir)) / "saved").glob("uncommitted-*.patch"))
    assert saved and "draft.txt" in saved[0].read_text()
    assert Store().session(s.id).state is State.CLEANED


def test_a_kill_on_a_host_waits_for_the_agent_and_ends_its_helpers(pool: Pool) -> None:
    """As here: the agent gets its moment to exit after tmux's hangup (an agent writes its
    state on the way out: Claude Code its ~/.claude.json, which would otherwise bring back
    the trust entry the kill just removed), and a helper it left in a process group of its
    own is ended too, not left running on the host."""
    left = pool.root / "left"
    mark = 31000 + os.getpid() % 1000  # this test's helper, told from any other sleep
    pool.configure(["build-a"], agent={"command": (
        f"sh -c 'trap \"sleep 1; touch {left}; exit 0\" HUP; setsid sleep {mark} & "
        "echo ready; while :; do sleep 0.2; done' ao {prompt_file}")})

    def helpers() -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            if (p.info["cmdline"] or [])[-2:] == ["sleep", str(mark)]:
                found.append(p)
        return found

    r = run_ao("spawn", "shop", "C-1")
    assert r.code == 0 and "spawned" in r.out, r.out + r.err
    s = Store().find_session("C-1")
    assert s.host == "build-a"
    retry_until(helpers, timeout=20, message="the agent's helper started")
    r = run_ao("session", "kill", s.id)
    assert r.code == 0, r.out + r.err
    assert left.exists(), "the kill returned before the agent had ended"
    assert not helpers()


def test_cleanup_sweeps_orphans_on_a_host_and_keeps_their_work(pool: Pool) -> None:
    """A tmux session and worktrees on a host that no session owns (left by a crash, or by
    hand) are swept like this machine's: a clean one goes, one holding work is kept, and with
    --force saved on the host first; the live session there is not touched."""
    pool.configure(["build-a"])
    r = run_ao("spawn", "shop", "C-1")
    assert r.code == 0 and "spawned" in r.out, r.out + r.err
    live = Store().find_session("C-1")
    place = pool.place("build-a", live.id)
    wts = Path(str(place.worktree)).parent
    for name in ("sho-98", "sho-97"):
        git(Path(str(place.repo)), "worktree", "add", "-q", "-b", f"junk-{name}",
            str(wts / name), "HEAD")
    (wts / "sho-97" / "notes.txt").write_text("not committed")
    # a stray session started in this installation's workdir there is an orphan; one started
    # elsewhere (another installation's, or a human's) is not ours to end
    assert pool.host_tmux("build-a", "new-session", "-d", "-s", "sho-99", "-c",
                          str(wts.parent.parent), "sleep 600").returncode == 0
    assert pool.host_tmux("build-a", "new-session", "-d", "-s", "theirs-1", "-c", "/tmp",
                          "sleep 600").returncode == 0
    r = run_ao("session", "cleanup", "-p", "shop", "--dry-run")
    assert r.code == 0, r.out + r.err
    assert "would remove orphaned worktree sho-98 on build-a (" in r.out, r.out
    assert "would remove orphaned tmux session sho-99 on build-a (" in r.out, r.out
    assert "kept     orphaned worktree sho-97 on build-a: 1 uncommitted" in r.out, r.out
    assert live.id not in r.out and "theirs-1" not in r.out
    r = run_ao("session", "cleanup", "-p", "shop", "--yes")
    assert r.code == 0, r.out + r.err
    assert not (wts / "sho-98").exists()
    assert pool.host_tmux("build-a", "has-session", "-t", "=sho-99").returncode != 0
    assert pool.host_tmux("build-a", "has-session", "-t", "=theirs-1").returncode == 0
    assert (wts / "sho-97" / "notes.txt").exists()
    assert pool.host_tmux("build-a", "has-session", "-t", f"={live.id}").returncode == 0
    assert Path(str(place.worktree)).is_dir()
    r = run_ao("session", "cleanup", "-p", "shop", "--yes", "--force")
    assert r.code == 0, r.out + r.err
    assert not (wts / "sho-97").exists()
    saved = pool.place("build-a", "sho-97").session_dir / "saved"
    patches = list(Path(str(saved)).glob("*.patch"))
    assert patches and "notes.txt" in patches[0].read_text(), r.out
    assert f"build-a:{saved}" in r.out, r.out


def test_a_host_that_goes_away_leaves_its_sessions_unreachable_then_resumes(
        pool: Pool) -> None:
    pool.configure(["build-a"])
    r = run_ao("spawn", "shop", "C-1")
    assert r.code == 0 and "spawned" in r.out, r.out + r.err
    store = Store()
    s = store.find_session("C-1")
    d = Daemon(config.load(), store, pool.env.server())
    d.tick()
    assert store.session(s.id).activity != Activity.UNREACHABLE.value
    a = pool.servers["build-a"]
    a.stop()
    for sock in hosts.control_dir().iterdir():  # the open connection dies with the host
        subprocess.run(["ssh", "-O", "exit", "-S", str(sock), "x"], capture_output=True,
                       timeout=10)
    d.tick()
    now = store.session(s.id)
    assert now.activity == Activity.UNREACHABLE.value
    assert now.state in (State.WORKING, State.PR_OPEN)  # not failed, not exited, not done
    # what follows a merge goes on past it: its agent's stop there is logged, not raised
    from ao.services.teardown import stop_agent

    stop_agent(d.fleet.server(now), now)
    r = run_ao("send", s.id, "are you there?")
    assert r.code == 3 and "queued" in r.out and "unreachable" in r.out, r.out + r.err
    r = run_ao("logs", s.id)  # the transcript is there, the host is not: said so
    assert r.code == 1 and "host build-a does not answer" in r.err, r.out + r.err
    # a second task finds no host with room: it waits in the queue
    r = run_ao("spawn", "shop", "D-1")
    assert "queued" in r.out and "build-a unreachable" in r.out, r.out + r.err
    d.tick()
    d.tick()
    events = [json.loads(line) for line in paths.events_log().read_text().splitlines()]
    assert [e["type"] for e in events].count("host.unreachable") == 1
    a.start()
    # `ao hosts` finding it back ends its backoff at once, for everything else too
    assert hosts.down("build-a") is not None
    r = run_ao("hosts", "--json")
    assert [row["reachable"] for row in json.loads(r.out) if row["host"] == "build-a"] == [True]
    assert hosts.down("build-a") is None

    def back() -> bool:
        d.tick()
        return store.session(s.id).activity not in (Activity.UNREACHABLE.value,)

    retry_until(back, timeout=60, interval=0.5, message="the host seen again")
    inbox = Path(str(pool.place("build-a", s.id).session_dir)) / "demo-inbox.jsonl"
    retry_until(lambda: (d.tick(), "are you there?" in inbox.read_text())[1], timeout=30,
                interval=0.5, message="the queued message delivered")
    texts = [json.loads(line)["text"] for line in inbox.read_text().splitlines()]
    assert texts.count("are you there?") == 1
    assert '"host.reachable"' in paths.events_log().read_text()
    assert len([x for x in store.sessions("shop") if x.task == "C-1"]) == 1


def test_a_hung_host_shows_unreachable_and_holds_up_no_other(pool: Pool) -> None:
    """A host that hangs (its sshd stopped, its connection open and silent): `ao session ls`
    waits for it no longer than its patience, shows its session `unreachable` and the other
    host's as seen, names the silent host, and leaves recording it down to the daemon."""
    pool.configure(["build-a", "build-b"])
    for task in ("C-1", "D-1"):
        r = run_ao("spawn", "shop", task)
        assert r.code == 0 and "spawned" in r.out, r.out + r.err
    store = Store()
    on = {s.host: s for s in store.sessions("shop")}
    assert set(on) == {"build-a", "build-b"}
    assert run_ao("session", "ls").code == 0  # both answer: channels open to each
    pool.servers["build-a"].freeze()
    try:
        r = run_ao("session", "ls", "--json")
        assert r.code == 0, r.err
        rows = {row["id"]: row for row in json.loads(r.out)}
        assert rows[on["build-a"].id]["activity"] == Activity.UNREACHABLE.value
        assert rows[on["build-b"].id]["activity"] not in (Activity.UNREACHABLE.value,
                                                          Activity.EXITED.value)
        assert "not answering: build-a;" in r.err
        assert hosts.down("build-a") is None and hosts.down("build-b") is None
        # `ao send` queues for the silent host after its short look (it took 18 s)
        t0 = time.monotonic()
        r = run_ao("send", on["build-a"].id, "when you are back")
        # exit 3: queued with no daemon to deliver it (it says so)
        assert r.code == 3 and "queued: host build-a is unreachable" in r.out, r.out + r.err
        assert time.monotonic() - t0 < 4 * LOOK_PATIENCE
        assert [m["status"] for m in store.messages(on["build-a"].id)][-1] == "queued"
    finally:
        pool.servers["build-a"].freeze(False)
    r = run_ao("session", "ls", "--json")
    assert {row["activity"] for row in json.loads(r.out)} & {
        Activity.UNREACHABLE.value, Activity.EXITED.value} == set(), r.out


@pytest.mark.skipif(not NETNS, reason="needs root and iproute2 for network namespaces "
                    "(`.ci/run` runs as root)")
def test_a_host_cut_off_mid_run_loses_nothing_and_doubles_nothing(env: Env,
                                                                   tmp_path: Path) -> None:
    """The host is its own network namespace behind a veth pair; setting the pair down cuts
    it off the way a dead link does (packets vanish, nothing refuses). Its sessions go
    unreachable, the daemon goes on, and when the link is back the plan finishes with every
    task merged once and no task started twice."""
    tmux_dir = Path(tempfile.mkdtemp(prefix="ao-cut-"))
    socks = hosts.control_dir
    (tmp_path / "cut-home").mkdir()
    with netns_pair() as ns, sshd(tmp_path / "sshd-cut", setenv={
            "TMUX_TMPDIR": str(tmux_dir), "HOME": str(tmp_path / "cut-home"),
            "PATH": os.environ["PATH"], "GIT_CONFIG_GLOBAL": os.environ["GIT_CONFIG_GLOBAL"]},
            netns=ns) as srv:
        pool = Pool(env, {"build-c": srv}, tmp_path / "hosts", {"build-c": tmux_dir})
        try:
            env.plan_file.write_text(json.dumps(TEST_PLAN))
            pool.configure(["build-c"], {"build-c": 3}, ci={"command": "true"},
                           auto_merge=True, require_review=False)
            assert run_ao("plan", "run", str(env.plan_file), "-p", "shop").code == 0
            store = Store()
            d = Daemon(config.load(), store, env.server())
            d.tick()
            running = [s for s in store.sessions("shop") if s.state is State.WORKING]
            assert {s.host for s in running} == {"build-c"} and len(running) == 3
            srv.cut()
            took: list[float] = []

            def marked_down() -> bool:
                t0 = time.monotonic()
                d.tick()
                took.append(time.monotonic() - t0)
                return hosts.down("build-c") is not None and all(
                    s.activity == Activity.UNREACHABLE.value for s in store.sessions("shop")
                    if s.state in (State.WORKING, State.PR_OPEN))

            # the poll's question goes unanswered: the host is marked down once its deadline
            # passed, while each tick waits for it a moment at most and goes on (a PR already
            # green merges meanwhile: its work is on the remote)
            retry_until(marked_down, timeout=30, interval=0.2, message="the host marked down")
            assert len(took) >= 2 and max(took) < POLL_DEADLINE, took
            d.tick()  # in its backoff: not asked again, nothing changes
            srv.mend()

            def merged() -> bool:
                d.tick()
                return {s.task for s in store.sessions("shop") if s.merged} == \
                    set(TEST_PLAN["tasks"])

            retry_until(merged, timeout=200, interval=1, message="the plan merged")
            per_task: dict[str, int] = {}
            for s in store.sessions("shop"):
                per_task[s.task] = per_task.get(s.task, 0) + 1
            assert per_task == {"A-1": 1, "B-1": 1, "C-1": 1, "D-1": 1}  # none started twice
            log = git(env.remote, "log", "--format=%s", "main")
            for key in TEST_PLAN["tasks"]:
                assert log.count(f"{key}: add") == 1, log
            text = paths.events_log().read_text()
            assert text.count('"host.unreachable"') == 1 and '"host.reachable"' in text
        finally:
            pool.host_tmux("build-c", "kill-server")
            channel.close_all()
            for sock in socks().iterdir():
                subprocess.run(["ssh", "-O", "exit", "-S", str(sock), "x"],
                               capture_output=True, timeout=10)
            shutil.rmtree(tmux_dir, ignore_errors=True)


@pytest.mark.skipif(shutil.which("claude") is None, reason="the Claude Code CLI is not "
                    "installed; `.ci/run` installs @anthropic-ai/claude-code from npm")
@pytest.mark.timeout(180)
def test_claude_code_on_a_host_answers_its_hooks_there(pool: Pool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Claude Code on a host: its first-run answers and hooks written in the host's
    home and worktree (this machine's untouched), its hooks read back over the connection,
    a message confirmed by its UserPromptSubmit hook there."""
    from ao.services.messaging import Messenger

    from .fake_anthropic import Reply, serve

    key = "sk-ant-test-0123456789abcdefghijklmnop"
    with serve() as fake:
        for k, v in {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": key,
                     "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
                     "DISABLE_AUTOUPDATER": "1"}.items():
            monkeypatch.setenv(k, v)
        fake.script = [Reply(text="Working on it"), Reply(text="Noted.")]
        fleet, s = pool.spawn_on_a("claude-code")
        host_home = pool.root / "build-a-home"
        trusted = json.loads((host_home / ".claude.json").read_text())["projects"]
        assert trusted[s.worktree]["hasTrustDialogAccepted"] is True
        assert not (Path(os.environ["HOME"]) / ".claude.json").exists()
        hooks = json.loads((Path(s.worktree or "") / ".claude" / "settings.local.json")
                           .read_text())["hooks"]
        assert "# ao-hook" in hooks["Stop"][-1]["hooks"][0]["command"]
        # the first prompt was confirmed by the hook that fired on the host
        delivered = [json.loads(line)["data"] for line in
                     (paths.session_dir("shop", s.id) / "events.log").read_text().splitlines()
                     if json.loads(line)["type"] == "message.delivered"]
        assert delivered and delivered[0]["confirmed_by"] == "hook"
        retry_until(lambda: fleet.observe(fleet.store.session(s.id)) is Activity.IDLE,
                    timeout=60, message="idle, by its Stop hook on the host")
        m = Messenger(fleet)
        r2 = m.send(s.id, "a note from far away")
        if r2.status == "queued":  # the agent looked busy: delivered as the daemon would
            retry_until(lambda: (m.deliver_queued(s.id), not m.store.messages(s.id, "queued"))
                        [1], timeout=30, interval=0.5, message="the queued message")
        else:
            assert r2.status == "delivered", r2.detail
        sent = [x for x in fleet.store.messages(s.id) if "far away" in x["body"]]
        assert [x["status"] for x in sent] == ["delivered"]
        retry_until(lambda: any("a note from far away" in t for t in fake.user_texts()),
                    timeout=30, message="the message at the model")
        text = (paths.session_dir("shop", s.id) / "events.log").read_text()
        assert text.count('"event":"UserPromptSubmit"') == 2  # each hook line recorded once
        out = fleet.kill(s.id)
        assert out["worktree"] == "removed", out
        # its trust entry goes with it, on the host
        trusted = json.loads((host_home / ".claude.json").read_text())["projects"]
        assert s.worktree not in trusted


@pytest.mark.parametrize("agent", ["codex", "gemini"])
@pytest.mark.timeout(180)
def test_codex_and_gemini_on_a_host_answer_their_dialogs_there(
        agent: str, pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Codex and Gemini CLI on a host, against the local fake of their model API:
    their first-run answers (codex's trust for the host's clone, gemini's auth choice) are
    written in the host's home, this machine's home is untouched, the first prompt reaches the
    model once, the screen and title are read over the connection, and kill removes the
    worktree there."""
    if shutil.which(agent) is None:
        pytest.skip(f"`{agent}` is not installed; `.ci/run` installs it from npm")
    from .fake_models import serve

    host_home = pool.root / "build-a-home"
    with serve() as fake:
        if agent == "codex":
            # the user's codex settings on the host, with keys of their own that must stay
            (host_home / ".codex").mkdir(parents=True)
            (host_home / ".codex" / "config.toml").write_text(
                'model = "gpt-5"\nmodel_provider = "fake"\n\n[model_providers.fake]\n'
                f'name = "fake"\nbase_url = "{fake.url}/v1"\nenv_key = "OPENAI_API_KEY"\n'
                'wire_api = "responses"\n')
            monkeypatch.delenv("CODEX_HOME", raising=False)
            monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-0123456789")
        else:
            monkeypatch.setenv("GEMINI_API_KEY", "fake-gemini-key")
            monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
        fleet, s = pool.spawn_on_a(agent)
        local_home = Path(os.environ["HOME"])
        if agent == "codex":
            text = (host_home / ".codex" / "config.toml").read_text()
            clone = pool.place("build-a", s.id).repo
            assert f'[projects."{clone}"]\ntrust_level = "trusted"' in text, text
            assert 'model_provider = "fake"' in text
            assert not (local_home / ".codex" / "config.toml").exists()
        else:
            settings = json.loads((host_home / ".gemini" / "settings.json").read_text())
            assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
            assert not (local_home / ".gemini" / "settings.json").exists()

        def first_prompts() -> int:
            return sum("# C-1: " in json.dumps(
                (b.get("input") or b.get("contents") or [])[-1:]) for _p, b in fake.requests)

        retry_until(lambda: first_prompts() >= 1, timeout=60, message="the first prompt")
        retry_until(lambda: fleet.observe(fleet.store.session(s.id)) is Activity.IDLE,
                    timeout=60, message="idle, read from the host's screen")
        assert first_prompts() == 1
        out = fleet.kill(s.id)
        assert out["worktree"] == "removed", out
        assert not Path(str(pool.place("build-a", s.id).worktree)).exists()


def test_the_default_workdir_is_under_the_hosts_home(pool: Pool) -> None:
    """`workdir` left out (`.agent-orchestrator`) or relative is under the login's $HOME
    there, not under the folder a login starts in."""
    h = host_config.parse({"build-a": pool.servers["build-a"].host_config()})["build-a"]
    home = (pool.root / "build-a-home").resolve()
    assert hostwork.workdir(h) == hostwork.PurePosixPath(str(home / ".agent-orchestrator"))


def test_hosts_check_looks_for_the_demo_agents_python(pool: Pool) -> None:
    """The demo agent is ao's own module: `ao hosts check` asks each host for this Python at
    the same path."""
    pool.configure(["build-a"])
    r = run_ao("hosts", "check", "--json")
    checks = {(c["host"], c["check"]): c["ok"] for c in json.loads(r.out)}
    assert checks[("build-a", sys.executable)] is True, checks


def test_a_host_lost_for_good_is_given_up_and_its_task_starts_elsewhere(pool: Pool) -> None:
    """A host gone for good: `ao session kill` failed with "No route to host", --force too,
    and `ao spawn` skipped the task (it "already has a session"). Now the kill names the way
    out, --force records the session killed (its folder there left as it is), and the task
    starts again here from what was pushed."""
    pool.configure(["build-a"])
    r = run_ao("spawn", "shop", "C-1")
    assert r.code == 0 and "spawned" in r.out, r.out + r.err
    s = Store().find_session("C-1")
    retry_until(lambda: "ao/c-1" in git(pool.env.remote, "branch", "--list", "ao/c-1"),
                timeout=30, message="the agent's push")
    pool.servers["build-a"].stop()
    for sock in hosts.control_dir().iterdir():  # the open connection dies with the host
        subprocess.run(["ssh", "-O", "exit", "-S", str(sock), "x"], capture_output=True,
                       timeout=10)
    r = run_ao("session", "kill", s.id)
    assert r.code == 2 and "does not answer" in r.err and "--force" in r.err, r.out + r.err
    assert Store().session(s.id).state in (State.WORKING, State.PR_OPEN)
    r = run_ao("session", "kill", s.id, "--force")
    assert r.code == 0, r.out + r.err
    assert Store().session(s.id).state is State.KILLED
    pool.configure(["local", "build-a"])
    r = run_ao("spawn", "shop", "C-1")
    assert r.code == 0 and "spawned" in r.out, r.out + r.err
    new = Store().sessions("shop", task="C-1")[-1]
    assert new.id != s.id and new.host == "local"
    assert git(Path(new.worktree or ""), "log", "-1", "--format=%s").startswith("C-1")
