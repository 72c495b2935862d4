"""Hosts over real OpenSSH (tests/sshd.py): the config, `ao hosts`, `ao hosts check`, and
ao's tmux functions driving a host's own tmux server through one multiplexed connection."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ao import host_config, paths
from ao.errors import BadInput, ExternalError
from ao.services import hostwork
from ao.world import agents, channel, hosts, tmux

from .helpers import retry_until, run_ao
from .sshd import SSHD, SshServer, sshd

needs_sshd = pytest.mark.skipif(SSHD is None, reason="OpenSSH's sshd is not installed; "
                                "`.ci/run` installs Debian's openssh-server")


@pytest.fixture
def server(tmp_path: Path, isolated_home: Path) -> Iterator[SshServer]:
    # the host's login has a home of its own (as another machine's would): nothing a test
    # does there lands in this machine's real home, and each test's host is fresh
    home = tmp_path / "host-home"
    home.mkdir()
    with sshd(tmp_path / "sshd", setenv={"HOME": str(home), "PATH": os.environ["PATH"],
                                         "GIT_CONFIG_GLOBAL": os.environ["GIT_CONFIG_GLOBAL"]}
              ) as s:
        try:
            yield s
        finally:
            # the master connections would linger for ControlPersist: end them, and their
            # folder when it is the short one under /tmp
            import shutil
            import subprocess

            channel.close_all()
            d = hosts.control_dir()
            for sock in d.iterdir():
                subprocess.run(["ssh", "-O", "exit", "-S", str(sock), "x"],
                               capture_output=True, timeout=10)
            if not str(d).startswith(str(paths.home())):
                shutil.rmtree(d, ignore_errors=True)


def write_hosts(spec: dict[str, object]) -> None:
    f = paths.config_file()
    paths.home()
    data = json.loads(f.read_text()) if f.exists() else {}
    data["hosts"] = spec
    f.write_text(json.dumps(data))


def host_of(server: SshServer, name: str = "build-1") -> host_config.Host:
    return host_config.parse({name: server.host_config()})[name]


@pytest.mark.parametrize(("spec", "says"), [
    ({"b": {}}, "needs `ssh: user@host`"),
    ({"b": {"ssh": "-oProxyCommand=x"}}, "is not a user@host"),
    ({"b": {"ssh": "a@b", "port": 70000}}, "port must be"),
    ({"b": {"ssh": "a@b", "max_sessions": "many"}}, "max_sessions must be"),
    ({"b": {"ssh": "a@b", "user": "x"}}, "unknown key `user`"),
    ({"local": {"ssh": "a@b"}}, "`local` is this machine"),
    ({"b c": {"ssh": "a@b"}}, "a host name is"),
])
def test_bad_hosts_are_refused_with_the_way_out(spec: dict[str, object], says: str) -> None:
    with pytest.raises(BadInput, match=says):
        host_config.parse(spec)


def test_bad_hosts_config_is_exit_2(isolated_home: Path) -> None:
    write_hosts({"build-1": {"ssh": "ao@build-1", "port": "ssh"}})
    r = run_ao("hosts")
    assert r.code == 2 and "port must be" in r.err


@needs_sshd
def test_probe_runs_over_one_multiplexed_connection(server: SshServer) -> None:
    h = host_of(server)
    first = hosts.probe(h)
    assert first.reachable, first.error
    assert first.tools["tmux"].startswith("tmux ") and first.tools["git"].startswith("git ")
    assert first.cpus and first.cpus >= 1 and first.mem_available_mb
    sockets = list(hosts.control_dir().iterdir())
    assert len(sockets) == 1  # the master connection, shared by every later command
    logins = server.log.read_text().count("Accepted publickey")
    for _ in range(5):
        assert hosts.probe(h).reachable
    assert server.log.read_text().count("Accepted publickey") == logins  # no new logins


@needs_sshd
def test_an_unreachable_host_says_so(server: SshServer, tmp_path: Path) -> None:
    spec = {**server.host_config(), "port": 1}
    p = hosts.probe(host_config.parse({"gone": spec})["gone"])
    assert not p.reachable and p.error


@needs_sshd
def test_tmux_on_a_host_through_the_runner(server: SshServer) -> None:
    """tmux.py unchanged against the host's own tmux server: a session, a paste that shows,
    a capture, every pane in one list-panes, and a kill that touches no local process."""
    h = host_of(server)
    socket = f"ao-host-test-{os.getpid()}"
    conf = hostwork.tmux_conf(h)
    hostwork.write(h, conf, tmux.CONF)
    srv = tmux.host_server(h, socket, str(conf))
    try:
        workdir = Path(hosts.run(h, ["sh", "-c", "mkdir -p ao-t && cd ao-t && pwd"])
                       .stdout.strip())
        tmux.new_session(srv, "rem-1", workdir, "cat", {"AO_SESSION": "rem-1"})
        assert tmux.has_session(srv, "rem-1")
        # stdin through the connection: a trailing ";" (a tmux separator in an argument)
        # and quotes arrive as they are
        tmux.paste(srv, "rem-1", "hello 'from' ao;\nsecond line;")
        retry_until(lambda: "second line;" in tmux.capture(srv, "rem-1"), timeout=10,
                    message="the paste on the host")
        assert "hello 'from' ao;" in tmux.capture(srv, "rem-1")
        panes = tmux.panes(srv)
        assert "rem-1" in panes and not panes["rem-1"].dead
        # the pane's pid is the host's; a pid here with the same number is never signalled
        assert tmux.kill_session(srv, "rem-1")
        assert not tmux.has_session(srv, "rem-1")
    finally:
        srv.cmd("kill-server")


@needs_sshd
def test_ao_hosts_and_hosts_check(server: SshServer) -> None:
    write_hosts({"build-1": server.host_config(),
                 "gone": {**server.host_config(), "port": 1}})
    r = run_ao("hosts", "--json")
    assert r.code == 0, r.err
    rows = {row["host"]: row for row in json.loads(r.out)}
    assert set(rows) == {"local", "build-1", "gone"}
    assert rows["build-1"]["reachable"] and rows["build-1"]["cpus"]
    assert not rows["gone"]["reachable"] and rows["gone"]["error"]
    r = run_ao("hosts", "check")
    assert r.code == 1  # `gone` fails its ssh check
    assert "build-1" in r.out and "tmux" in r.out and "NO" in r.out
    write_hosts({"build-1": server.host_config()})
    t0 = time.monotonic()
    r = run_ao("hosts", "check", "--json")
    assert r.code == 0, r.out + r.err
    checks = {(c["host"], c["check"]): c["ok"] for c in json.loads(r.out)}
    assert checks[("build-1", "ssh")] and checks[("build-1", "tmux")] and \
        checks[("build-1", "git")]
    assert time.monotonic() - t0 < 60


def test_a_poll_reads_panes_without_a_utf8_locale(isolated_home: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """cron, a service manager or a plain ssh command runs ao with no UTF-8 locale: tmux
    would then write the tab-separated fields of `list-panes -F` joined by "_"."""
    for var in ("LANG", "LC_ALL", "LC_CTYPE"):
        monkeypatch.delenv(var, raising=False)
    socket = f"ao-locale-test-{os.getpid()}"
    srv = tmux.server(socket)
    try:
        tmux.new_session(srv, "loc-1", Path.cwd(), "sleep 30", {})
        panes = tmux.panes(srv)
        assert "loc-1" in panes and panes["loc-1"].pid and not panes["loc-1"].dead
    finally:
        srv.cmd("kill-server")


def test_placement_spreads_over_hosts_with_room() -> None:
    from ao.decide.placement import Room, choose, why_full

    # least full first, this machine first on a tie
    assert choose([Room("local", 1, 2), Room("a", 0, 2), Room("b", 1, 4)]) == "a"
    assert choose([Room("b", 0, 2), Room("local", 0, 2)]) == "local"
    assert choose([Room("local", 3, None), Room("a", 0, 2)]) == "local"  # no limit: empty
    # full, away, or short of memory: no room
    rooms = [Room("local", 2, 2), Room("a", 0, 2, reachable=False),
             Room("b", 0, 2, free_mb=900, floor_mb=2048)]
    assert choose(rooms) is None
    assert why_full(rooms) == ("no host has room: local full (2/2), a unreachable, "
                               "b low on memory (900 MB free, 2048 MB kept free)")
    assert choose([*rooms, Room("c", 1, 2, free_mb=4096, floor_mb=2048)]) == "c"


def test_a_project_naming_an_unknown_host_is_refused(isolated_home: Path, repo: Path) -> None:
    f = paths.config_file()
    paths.home()
    f.write_text(json.dumps({"projects": {"shop": {"path": str(repo), "hosts": ["build-9"]}},
                             "hosts": {"build-1": {"ssh": "ao@build-1"}}}))
    r = run_ao("status")
    assert r.code == 2 and "names 'build-9', which is not under `hosts:`" in r.err, r.err


@needs_sshd
def test_a_spawn_connects_to_its_hosts_first_thing(server: SshServer, repo: Path) -> None:
    """`ao spawn` and `ao batch-spawn` begin their project's hosts' channels before the rest
    of ao is imported (the login runs meanwhile); a host in its backoff, another project's
    host and this machine are left alone, and a wrong name is the command's to say."""
    from ao import config

    paths.ensure_dir(paths.config_file().parent)
    paths.config_file().write_text(json.dumps({
        "projects": {"shop": {"path": str(repo), "hosts": ["local", "b1", "b2"]},
                     "other": {"path": str(repo), "hosts": ["b3"]}},
        "hosts": {n: {**server.host_config(), "workdir": f"wd-{n}"} for n in ("b1", "b2", "b3")}}))
    hosts.mark_down("b2", "test: in its backoff", time.time())
    cfg = config.load()
    hosts.connect_early(cfg, "shop")
    opened = {ssh for ssh in channel._OPEN}
    assert opened == {tuple(hosts.ssh_argv(cfg.hosts["b1"]))}
    assert hosts.run(cfg.hosts["b1"], ["echo", "up"]).stdout == "up\n"  # that channel
    assert set(channel._OPEN) == opened
    r = run_ao("batch-spawn", "no-such-project", "T-1")
    assert r.code == 2 and "no-such-project" in r.err, r.err


@needs_sshd
def test_a_worktree_on_a_host_is_judged_and_saved_by_the_same_rules(server: SshServer,
                                                                    repo: Path) -> None:
    """workspace's checks run through the runner (`workspace.on(host)`) give what they give
    here, case by case, on the very same worktree (the host is this machine)."""
    from ao.services.teardown import Teardown, WorkPlace, _here
    from ao.world import worksafe, workspace

    from .helpers import git

    h = host_of(server)
    (repo / ".gitignore").write_text("*.local\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "ignore")
    git(repo, "push", "-q", "origin", "main")
    wt = repo.parent / "wt"
    git(repo, "worktree", "add", "-q", "-b", "ao/t-1", str(wt))

    def judged() -> tuple[list[str], list[str]]:
        here = worksafe.work_at_risk(wt, "origin", "main", branch="ao/t-1")
        with workspace.on(h):
            there = worksafe.work_at_risk(wt, "origin", "main", branch="ao/t-1")
        return here, there

    assert judged() == ([], [])
    (wt / "secrets.local").write_text("an ignored file that is not disposable")
    (wt / "draft.txt").write_text("not committed")
    here, there = judged()
    assert here == there and len(here) == 2, here
    (wt / "made.txt").write_text("committed, never pushed")
    git(wt, "add", "made.txt")
    git(wt, "commit", "-q", "-m", "unpushed")
    git(wt, "checkout", "-q", "--detach", "main")  # the branch's commit is off HEAD now
    here, there = judged()
    assert here == there and any("not on the remote" in r for r in here), here
    # --force on the host: a patch (the ignored file too) and a bundle of the branch, saved
    # there, and only then the worktree removed
    from ao.config import ProjectConfig
    from ao.record.state import State
    from ao.record.store import Session

    s = Session(id="sho-9", project="shop", task="T-1", title="", state=State.KILLED,
                agent="demo", branch="ao/t-1", worktree=str(wt), created_at=0, updated_at=0,
                activity="exited", activity_at=None, screen_hash=None, screen_changed_at=None,
                hook_activity=None, hook_at=None, pr_number=None, pr_url=None, pr_state=None,
                pr_head_sha=None, pr_checks=None, pr_review=None, pr_mergeable=None,
                pr_seen_at=None, pane_alive=0, exit_status=None, runtime_seen_at=None,
                note=None, host="build-1")
    saved_in = repo.parent / "saved"
    place = WorkPlace(repo, saved_in, "b")
    with workspace.on(h):
        out: Teardown = _here(ProjectConfig(name="shop", path=repo), s, False, agents.get, place)
        assert out.worktree == "kept" and wt.exists()
        out = _here(ProjectConfig(name="shop", path=repo), s, True, agents.get, place)
    assert all(x.startswith(f"b:{saved_in}/") for x in out.saved), out.saved
    assert out.worktree == "removed" and not wt.exists(), out
    patch = next(saved_in.glob("uncommitted-*.patch")).read_text()
    assert "secrets.local" in patch and "draft.txt" in patch
    bundles = list(saved_in.glob("*.bundle"))
    assert bundles and "refs/heads/ao/t-1" in git(repo, "bundle", "list-heads",
                                                  str(bundles[0]))
    assert all(x.startswith("b:") for x in out.saved)


@needs_sshd
def test_commands_on_a_host_share_one_open_shell(server: SshServer) -> None:
    """The runner's channel (channel.py): each command's exit status, output, errors and
    standard input, byte for byte (a frame never eats the next), over one ssh that stays
    open, one login for every thread's commands, run side by side; a command past its time
    is given up without costing the others their channel, and a channel that says nothing
    for a whole timeout is closed and the next command opens another."""
    from concurrent.futures import ThreadPoolExecutor

    h = host_of(server)
    dest = tuple(hosts.ssh_argv(h))
    big = "".join(f"line {i} \u00e9\n" for i in range(40000))  # ~500 KB each way
    r = hosts.run(h, ["sh", "-c", "cat; echo oops >&2; exit 3"], input=big)
    assert (r.returncode, r.stdout, r.stderr) == (3, big, "oops\n")
    r = hosts.run(h, ["printf", "%s", "no newline at the end"])
    assert (r.returncode, r.stdout) == (0, "no newline at the end")
    # bytes, not characters, whatever the text: a UTF-8 script, trailing newlines kept
    r = hosts.run(h, ["sh", "-c", 'printf "%s\\n\\n\\n" "$1"; printf "é\\n\\n" >&2', "ao",
                      "ünïcødé ✓"])
    assert (r.stdout, r.stderr) == ("ünïcødé ✓\n\n\n", "é\n\n")
    ch = channel._OPEN[dest]
    pid = ch.proc.pid
    for i in range(20):
        assert hosts.run(h, ["echo", str(i)]).stdout == f"{i}\n"
    # threads side by side share the one channel, and its commands run side by side:
    # 8 of `sleep 1` take about a second, not eight
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as ex:
        outs = list(ex.map(lambda i: hosts.run(h, ["sh", "-c", f"sleep 1; echo {i}"]).stdout,
                           range(8)))
    assert outs == [f"{i}\n" for i in range(8)] and time.monotonic() - t0 < 4
    with ThreadPoolExecutor(8) as ex:
        outs = list(ex.map(lambda i: hosts.run(h, ["sh", "-c", f"sleep 0.0{i % 3}; echo {i}"])
                           .stdout, range(40)))
    assert outs == [f"{i}\n" for i in range(40)]
    assert channel._OPEN[dest] is ch and ch.proc.pid == pid
    # a slow command given up while others answer: the channel stays theirs
    with ThreadPoolExecutor(2) as ex:
        slow = ex.submit(hosts.run, h, ["sleep", "3"], timeout=1)
        quick = [hosts.run(h, ["sh", "-c", "sleep 0.2; echo q"]).stdout for _ in range(6)]
        with pytest.raises(ExternalError, match=r"did not answer in 1s"):
            slow.result()
    assert quick == ["q\n"] * 6 and channel._OPEN[dest] is ch and ch.proc.poll() is None
    # nor does one past its time with nothing else under way (the channel still answers a
    # frame that does nothing), nor does it fail a longer command beside it
    with ThreadPoolExecutor(2) as ex:
        long = ex.submit(hosts.run, h, ["sh", "-c", "sleep 3; echo long"], timeout=60)
        time.sleep(0.2)
        with pytest.raises(ExternalError, match=r"did not answer in 0\.5s"):
            hosts.run(h, ["sleep", "5"], timeout=0.5)
        assert long.result().stdout == "long\n"
    assert channel._OPEN[dest] is ch and ch.proc.poll() is None
    # a channel that says nothing at all (the host hangs) is gone, not reused
    server.freeze()
    try:
        t0 = time.monotonic()
        with pytest.raises(ExternalError, match=r"did not answer in 1s"):
            hosts.run(h, ["echo", "frozen"], timeout=1)
        assert time.monotonic() - t0 < 1 + channel.PROBE_WAIT + 3
        assert ch.proc.poll() is not None
    finally:
        server.freeze(False)
    assert hosts.run(h, ["echo", "after"]).stdout == "after\n"
    assert channel._OPEN[dest] is not ch
    # a NUL byte cannot be in a command line, here as there
    with pytest.raises(ValueError):
        hosts.run(h, ["echo", "a\0b"])
    # a channel whose ssh ends fails the commands it runs at once, not at their timeout
    ch = channel._OPEN[dest]
    with ThreadPoolExecutor(1) as ex:
        running = ex.submit(hosts.run, h, ["sleep", "30"], timeout=60)
        time.sleep(0.5)
        t0 = time.monotonic()
        ch.proc.kill()
        with pytest.raises(ExternalError):
            running.result()
    assert time.monotonic() - t0 < 5
    # a channel whose ssh ended while idle: the command goes on a new one, once
    assert hosts.run(h, ["true"]).returncode == 0
    ch = channel._OPEN[dest]
    assert ch.ended is None
    ch.proc.kill()
    ch.proc.wait()
    assert hosts.run(h, ["echo", "again"]).stdout == "again\n"


@pytest.mark.parametrize("loop", ["bash", "sh"])
def test_both_channel_loops_answer_byte_for_byte(loop: str) -> None:
    """The bash loop (most hosts) and the POSIX one (hosts without bash) give the same
    answers: exit status, output and errors byte for byte whatever the text, standard input,
    and frame after frame on one channel. Run here without ssh: the loop is the program."""
    script = channel._BASH if loop == "bash" else channel._SH
    ch = channel.Channel((loop, "-c", script, "ao"))
    try:
        cases = [
            ("printf '%s' 'no newline'", b"", (0, b"no newline", b"")),
            ("printf 'a\\n\\n\\n'; printf 'e\\n\\n' >&2; exit 7", b"", (7, b"a\n\n\n", b"e\n\n")),
            ("cat", "ünïcødé ✓\n".encode() * 3000, (0, "ünïcødé ✓\n".encode() * 3000, b"")),
            ("printf '%s' 'é ✓'", b"", (0, "é ✓".encode(), b"")),
            ("x=1; echo $x", b"", (0, b"1\n", b"")),
            ("echo $x", b"", (0, b"\n", b"")),  # nothing of one command stays for the next
            ("head -c 3; echo", b"abcdef", (0, b"abc\n", b"")),
            ("true", b"", (0, b"", b"")),
            ("cat; echo end", b"", (0, b"end\n", b"")),  # no input: an empty stdin
        ]
        for cmd, stdin, want in cases:
            a = ch.run(cmd, stdin, 10)
            assert (a.returncode, a.stdout, a.stderr) == want, cmd
        # commands side by side: 4 of `sleep 1` from 4 threads take about a second
        from concurrent.futures import ThreadPoolExecutor

        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as ex:
            outs = list(ex.map(lambda i: ch.run(f"sleep 1; echo {i}", b"", 10).stdout,
                               range(4)))
        assert outs == [f"{i}\n".encode() for i in range(4)] and time.monotonic() - t0 < 3
        # a command's files are swept as the loop goes: its folder does not grow
        for _ in range(150):
            ch.run("true", b"", 10)
        a = ch.run('ls "$(dirname "$(readlink /proc/self/fd/0)")" | wc -l', b"x", 10)
        assert int(a.stdout) <= 4 * 64 + 8
        # a process left in the background, still writing, holds nothing back and shifts
        # no later answer
        a = ch.run("(sleep 0.3; echo late; echo late >&2) & echo now", b"", 10)
        assert (a.returncode, a.stdout) == (0, b"now\n")
        time.sleep(0.5)
        assert ch.run("echo next", b"", 10).stdout == b"next\n"
        # the loop's own folder gone (a full or cleaned /tmp): the channel ends rather than
        # read the next frame from the middle of this one
        with contextlib.suppress(channel.Broken):  # the sh loop ends at once
            # (its input is a file in that folder; only a folder of mktemp's is removed)
            ch.run('d=$(dirname "$(readlink /proc/self/fd/0)"); '
                   'case $d in "${TMPDIR:-/tmp}"/tmp.*) rm -rf "$d";; *) exit 9;; esac',
                   b"x", 10)
        with pytest.raises(channel.Broken):
            ch.run("echo after", b"x" * 10, 10)
    finally:
        ch.close()
    # a loop ended by a signal (a closed connection's SIGHUP, a SIGTERM) removes its folder
    import psutil

    ch = channel.Channel((loop, "-c", script, "ao"))
    try:
        folder = Path(ch.run('dirname "$(readlink /proc/self/fd/0)"', b"x", 10)
                      .stdout.decode().strip())
        assert folder.is_dir()
        ch.proc.terminate()
        ch.proc.wait(10)
        retry_until(lambda: not folder.exists(), timeout=5, message="the folder removed")
    finally:
        ch.close()
    # a loop killed outright (SIGKILL: no trap runs) leaves no writer of its behind

    ch = channel.Channel((loop, "-c", script, "ao"))
    try:
        assert ch.run("echo up", b"", 10).stdout == b"up\n"
        left = psutil.Process(ch.proc.pid).children(recursive=True)
        assert left  # its writer
    finally:
        ch.close()
    _gone, alive = psutil.wait_procs(left, timeout=5)
    assert not alive, alive


@pytest.mark.parametrize("lc_all", ["C.UTF-8", None])
def test_the_loops_locale_is_its_own(lc_all: str | None) -> None:
    """The bash loop reads frames in locale C; the commands it runs (and a tmux server one
    starts, and its agents) keep the login's LC_ALL, or its absence."""
    env = ("env", f"LC_ALL={lc_all}") if lc_all else ("env", "-u", "LC_ALL")
    ch = channel.Channel((*env, "bash", "-c", channel._BASH, "ao"))
    try:
        a = ch.run('printf "%s|%s" "${LC_ALL-unset}" "$(env | grep -c ^LC_ALL=)"', b"", 10)
        assert a.stdout.decode() == (f"{lc_all}|1" if lc_all else "unset|0")
        # and its own counting stays in bytes whatever the login's locale
        assert ch.run("printf '%s' 'ünï ✓'", b"", 10).stdout == "ünï ✓".encode()
    finally:
        ch.close()


def test_the_loop_starts_from_any_login_shell_and_old_bash_falls_back() -> None:
    """LOOP is one `exec /bin/sh -c ...` with nothing a fish login shell would read
    differently (no double backslash); a bash without `read -N` (before 4.1) hands over to
    the POSIX loop."""
    assert "\\\\" not in channel.LOOP
    assert channel.LOOP.startswith("exec /bin/sh -c ")
    # a "bash" that reports version 3.2 runs the POSIX loop it was given
    old = channel._BASH.replace("${BASH_VERSINFO[0]}${BASH_VERSINFO[1]}", "32", 1)
    assert old != channel._BASH
    ch = channel.Channel(("bash", "-c", old, "ao", channel._SH))
    try:
        assert ch.run("printf 'a\\0b'", b"", 10).stdout == b"a\0b"  # the POSIX loop's bytes
    finally:
        ch.close()


def test_paths_of_this_machine_do_not_travel_to_a_host() -> None:
    """A passed-through variable whose value is a path here (CODEX_HOME on a laptop) is not
    given to an agent on a host; the host's own `env:` may set it there."""
    from ao import environment

    here = {"CODEX_HOME": "/Users/alice/.codex", "OPENAI_API_KEY": "sk-x", "HOME": "/root",
            "OPENAI_BASE_URL": "http://proxy:8080/v1"}
    env = environment.build(here, ("CODEX_HOME", "OPENAI_API_KEY", "OPENAI_BASE_URL"), {},
                            {"CODEX_HOME": "/srv/codex"}, elsewhere=True)
    assert env == {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "http://proxy:8080/v1",
                   "CODEX_HOME": "/srv/codex"}
    local = environment.build(here, ("CODEX_HOME",), {}, {})
    assert local["CODEX_HOME"] == "/Users/alice/.codex"


def test_a_host_going_away_and_back_is_in_the_log(isolated_home: Path) -> None:
    """ao's module loggers write to logs/ao.log (logs/daemon.log for the daemon), beside the
    event log: a host's failure with its backoff, and its return."""
    import logging

    from ao.cli.output import log_to

    log_to("ao.log")
    try:
        hosts.mark_down("build-9", "ssh: connect to host build-9 port 22: No route", time.time())
        hosts.mark_up("build-9")
    finally:
        for h in list(logging.getLogger("ao").handlers):
            if not isinstance(h, logging.NullHandler):
                logging.getLogger("ao").removeHandler(h)
                h.close()
    text = (paths.logs_dir() / "ao.log").read_text()
    assert "WARNING ao.world.hosts: host build-9 did not answer (ssh: connect to host " \
           "build-9 port 22: No route); asked again in 5s" in text, text
    assert "INFO ao.world.hosts: host build-9 answers again" in text


def test_a_batchs_threads_agree_on_the_installation_id(isolated_home: Path) -> None:
    """The first use of an AO_HOME from several threads at once (a batch's starts on two
    hosts each marking its workdir): one id, the one kept, for every thread; and files
    written whole from several threads at once never trip over each other's temporary."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as ex:
        ids = set(ex.map(lambda _: paths.installation_id(), range(32)))
    assert ids == {(paths.home() / "installation-id").read_text().strip()}
    # an empty one (a user's `touch`) is made anew, not taken for an id
    (paths.home() / "installation-id").write_text("")
    made = paths.installation_id()
    assert made and (paths.home() / "installation-id").read_text().strip() == made
    target = paths.home() / "shared.txt"
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: paths.write_atomic(target, f"{i}\n" * 1000), range(64)))
    assert len(set(target.read_text().splitlines())) == 1
    assert not list(paths.home().glob(".*.tmp"))


@needs_sshd
def test_two_installations_never_share_a_hosts_workdir(server: SshServer, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A host's workdir is marked with the installation that first used it; another
    installation (another AO_HOME on the same account) is refused it, with the way out."""
    h = host_config.parse({"b": {**server.host_config(), "workdir": str(tmp_path / "wd")}})["b"]
    first = hostwork.workdir(h)
    monkeypatch.setenv("AO_HOME", str(tmp_path / "another-ao"))
    monkeypatch.setattr(hostwork, "_ABS", {})
    with pytest.raises(ExternalError, match="is another ao installation's") as e:
        hostwork.workdir(h)
    assert "give host b a `workdir:` of this installation's own" in str(e.value)
    h2 = host_config.parse({"b": {**server.host_config(), "workdir": str(tmp_path / "wd2")}})["b"]
    assert hostwork.workdir(h2) != first
    # a workdir cached before the marks (two lines, no id) is asked again and marked then
    marker = Path(str(hostwork.workdir(h2))) / ".ao-installation"
    marker.unlink()
    cache = paths.home() / "hosts" / "b" / "workdir"
    cache.write_text("\n".join(cache.read_text().split("\n")[:2]) + "\n")
    monkeypatch.setattr(hostwork, "_ABS", {})
    assert hostwork.workdir(h2) != first
    assert marker.read_text().strip() == paths.installation_id()


def test_a_slow_hosts_late_answer_goes_to_the_look_that_asked(
        isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host slower than a tick's wait is read at a later tick, from the poll that tick's
    look began: another project's look of the same host never takes (or throws away) that
    answer, and placement's check does not either."""
    from ao import config
    from ao.record.state import Activity, State
    from ao.record.store import Store
    from ao.services import observing
    from ao.services.fleet import Fleet

    (paths.home()).mkdir(parents=True, exist_ok=True)
    paths.config_file().write_text(json.dumps({"hosts": {"slow-1": {
        "ssh": "nobody@127.0.0.1", "workdir": "/tmp/none"}}, "projects": {}}))
    asked: list[str] = []

    def poll(h: object, socket: str, reads: object, timeout: float | None = None
             ) -> tuple[list[str], dict[str, bytes]]:
        asked.append(str(reads))
        time.sleep(1.5)  # slower than a tick's wait
        return [], {}

    monkeypatch.setattr(observing.hostwork, "poll", poll)
    monkeypatch.setattr(observing, "TICK_WAIT", 0.2)
    store = Store()
    a = store.create_session("pa", "paa", "A-1", state=State.WORKING)
    b = store.create_session("pb", "pbb", "B-1", state=State.WORKING)
    for s in (a, b):
        store.update_session(s.id, host="slow-1", activity="idle")
    fleet = Fleet(config.load(), store)
    first_a = fleet.observe_all([store.session(a.id)])
    first_b = fleet.observe_all([store.session(b.id)])
    assert first_a[a.id] is Activity.IDLE and first_b[b.id] is Activity.IDLE  # as last seen
    assert not fleet.reachable("slow-1")  # its polls are still going: nothing placed there
    time.sleep(1.6)
    assert not fleet.slow("slow-1")  # ended with answers: left for the looks that asked
    fleet.observe_all([store.session(a.id)])
    fleet.observe_all([store.session(b.id)])
    assert len(asked) == 2, asked  # each look read its own poll's answer: none asked again
    assert store.session(a.id).activity is Activity.EXITED  # no pane in the answer
    assert store.session(b.id).activity is Activity.EXITED
