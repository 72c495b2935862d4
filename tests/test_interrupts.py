"""Ctrl-C in `ao batch-spawn`, wherever it lands: a real SIGINT to a real `ao` process, sent
at moments picked by what the run has made so far (a worktree folder, a post_create running,
a tmux session), to the process alone (`kill -INT`) or to its process group (a terminal's
Ctrl-C, which reaches git and tmux too). Each time: exit 130, the summary, and nothing
half-made. `python tests/sigint_sweep.py` runs the same check at many time offsets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ao import paths
from ao.record.state import State
from ao.record.store import Store
from ao.world import tmux

from .fleet_helpers import Env
from .helpers import git

pytestmark = pytest.mark.timeout(180)

# A-1, C-1 and D-1 start; B-1 waits on A-1 but --force starts it too
POST_CREATE = "touch .pc-started && sleep 0.4"


def debris(env: Env) -> list[str]:
    """What a start left half-made: a worktree, a registered worktree, a branch, a tmux
    session or a record that no live session owns, or a live session missing a part."""
    store = Store()
    problems = [f"{s.id} left {s.state}" for s in store.sessions("shop", states={State.SPAWNING})]
    alive = {s.id: s for s in store.sessions("shop") if s.state is not State.CLEANED
             and s.state is not State.QUEUED and s.state is not State.FAILED}
    wts = paths.ao_home() / "worktrees" / "shop"
    made = {p.name for p in wts.iterdir()} if wts.exists() else set()
    problems += [f"worktree folder {n} without a live session" for n in made - set(alive)]
    listed = git(env.repo, "worktree", "list", "--porcelain").splitlines()
    registered = {Path(ln.removeprefix("worktree ")).name for ln in listed
                  if ln.startswith("worktree ") and str(wts) in ln}
    problems += [f"registered worktree {n} without a live session"
                 for n in registered - set(alive)]
    branches = {b.strip(" *+") for b in git(env.repo, "branch", "--list", "ao/*").splitlines()}
    owned = {f"ao/{s.task.lower()}" for s in alive.values()}
    problems += [f"branch {b} without a live session" for b in branches - owned]
    live_tmux = set(tmux.sessions(env.server()))
    problems += [f"tmux session {n} without a live session" for n in live_tmux - set(alive)]
    for sid, s in alive.items():
        if sid not in live_tmux:
            problems.append(f"{sid} ({s.state}) has no tmux session")
        if not (wts / sid).is_dir():
            problems.append(f"{sid} ({s.state}) has no worktree")
    return problems


def interrupt_batch(env: Env, when: Callable[[], bool], delay: float,
                    group: bool) -> tuple[int, str, str]:
    """`ao batch-spawn` of the plan, SIGINT `delay` seconds after `when()` first holds."""
    proc = subprocess.Popen([sys.executable, "-m", "ao", "batch-spawn", "shop", "--plan",
                             str(env.plan_file), "--force"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not when() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    if proc.poll() is None:
        if group:  # a terminal's Ctrl-C: the whole foreground group, git and tmux included
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _worktree(n: int) -> Callable[[], bool]:
    return lambda: (paths.ao_home() / "worktrees" / "shop" / f"sho-{n}").exists()


def _post_create(n: int) -> Callable[[], bool]:
    return lambda: (paths.ao_home() / "worktrees" / "shop" / f"sho-{n}" / ".pc-started").exists()


def _tmux(env: Env, n: int) -> Callable[[], bool]:
    return lambda: f"sho-{n}" in tmux.sessions(env.server())


def heavy(env: Env, files: int = 1500) -> None:
    """A default branch whose checkout takes a while (1,500 files, one blob: about a second
    here): `git worktree add` is still running when the signal comes. Python used to kill it
    mid-way, and its `git reset --hard` child wrote files on after the rollback had removed
    the folder. Made with fast-import and pushed to the remote (ao starts from there)."""
    blob = "blob\nmark :1\ndata 3\nab\n"
    tree = "".join(f"M 100644 :1 bulk/{i // 1000}/f{i}.txt\n" for i in range(files))
    head = git(env.repo, "rev-parse", "main")
    stream = (f"{blob}commit refs/heads/bulk\ncommitter t <t@t> 0 +0000\ndata 4\nbulk\n"
              f"from {head}\n{tree}\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=env.repo, input=stream, text=True,
                   check=True)
    git(env.repo, "push", "-q", "origin", "bulk:main")
    git(env.repo, "branch", "-q", "-D", "bulk")


# what to wait for, then how long, and whether the checkout is slow
MOMENTS: dict[str, tuple[Callable[[Env], Callable[[], bool]], float, bool]] = {
    "in-git-worktree-add": (lambda e: _worktree(2), 0.0, True),
    "post-create-running": (lambda e: _post_create(2), 0.05, False),
    "tmux-session-appears": (lambda e: _tmux(e, 2), 0.0, False),
    "handed-to-worker": (lambda e: _tmux(e, 1), 0.15, False),
}
CASES = [("in-git-worktree-add", False), ("in-git-worktree-add", True),
         ("post-create-running", True), ("tmux-session-appears", False),
         ("tmux-session-appears", True), ("handed-to-worker", False)]


@pytest.mark.parametrize(("moment", "group"), CASES,
                         ids=[f"{m}-{'terminal' if g else 'kill'}" for m, g in CASES])
def test_ctrl_c_anywhere_in_batch_spawn_leaves_nothing_half_made(env: Env, moment: str,
                                                                  group: bool) -> None:
    """`group`: a terminal's Ctrl-C (the whole process group); else `kill -INT` to ao."""
    trigger, delay, slow = MOMENTS[moment]
    if slow:
        heavy(env)
    env.write_config(post_create=[POST_CREATE])
    code, out, err = interrupt_batch(env, trigger(env), delay, group)
    if code == 0:  # the run ended before the moment came: nothing was tested
        pytest.fail(f"the batch finished before {moment}: {out} {err}")
    assert code == 130, (out, err)
    assert "interrupted" in err and "spawned" in err, err  # the summary line
    assert "Traceback" not in err, err
    assert debris(env) == [], (moment, out, err)
    # what was rolled back or never begun can be started again by the same command
    again = subprocess.run([sys.executable, "-m", "ao", "batch-spawn", "shop", "--plan",
                            str(env.plan_file), "--force"], capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert debris(env) == [], again.stdout
    live = [s for s in Store().sessions("shop") if s.state is State.WORKING]
    assert sorted(s.task for s in live) == ["A-1", "B-1", "C-1", "D-1"], \
        json.dumps([(s.id, s.task, str(s.state)) for s in Store().sessions("shop")])


# time offsets from the start of `ao batch-spawn` (python tests/sigint_sweep.py sets many)
OFFSETS = [float(x) for x in os.environ.get("AO_SIGINT_OFFSETS", "0.7,1.2,1.7").split(",")]


@pytest.mark.parametrize("group", [False, True], ids=["kill", "terminal"])
@pytest.mark.parametrize("offset", OFFSETS)
def test_ctrl_c_at_a_time_offset_leaves_nothing_half_made(env: Env, offset: float,
                                                          group: bool) -> None:
    """The same check at plain time offsets, wherever they fall."""
    heavy(env, files=300)
    env.write_config(post_create=[POST_CREATE])
    code, out, err = interrupt_batch(env, lambda: True, offset, group)
    # 0: the offset fell after the end; -SIGINT: before Python took its handler (nothing begun)
    assert code in (0, 130, -signal.SIGINT), (out, err)
    assert "Traceback" not in err, err
    assert debris(env) == [], (offset, out, err)



def test_a_batch_killed_outright_is_finished_by_the_next_run(env: Env) -> None:
    """SIGKILL (no Ctrl-C handling at all) after the first agent started: the next
    `ao batch-spawn` undoes what was cut short, gives the started agent its first prompt
    (it sat idle, reported `skipped`), and starts the rest."""
    env.write_config(post_create=[POST_CREATE])
    proc = subprocess.Popen([sys.executable, "-m", "ao", "batch-spawn", "shop", "--plan",
                             str(env.plan_file), "--force"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not _tmux(env, 1)() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    again = subprocess.run([sys.executable, "-m", "ao", "batch-spawn", "shop", "--plan",
                            str(env.plan_file), "--force"], capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert debris(env) == [], again.stdout
    live = sorted(s.task for s in Store().sessions("shop") if s.state is State.WORKING)
    assert live == ["A-1", "B-1", "C-1", "D-1"], again.stdout + again.stderr
    first = Store().sessions("shop", task="A-1")[-1].id
    assert env.inbox(first), again.stderr  # its first prompt reached the agent
