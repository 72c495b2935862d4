"""Cleanup with real git, tmux and a bare remote: every removal criterion, work never lost,
dry-run changes nothing, orphans found; the crontab round trip on a fake `crontab`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ao import paths
from ao.record.state import State
from ao.world import tmux

from .fleet_helpers import Env
from .helpers import git, retry_until, run_ao
from .test_sessions import spawned, worktrees


def ended(env: Env, sid: str) -> None:
    """Wait for the demo agent's first push, so the branch holds nothing unpushed."""
    fleet = env.fleet()
    retry_until(lambda: "push: ok" in tmux.capture(fleet.srv, sid), timeout=20,
                message="the push")


def cleanup(*args: str) -> dict[str, object]:
    r = run_ao("session", "cleanup", *args, "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)  # type: ignore[no-any-return]


def test_each_criterion_and_dry_run(env: Env) -> None:
    a, c, d = spawned(env, "A-1"), spawned(env, "C-1"), spawned(env, "D-1")
    for sid in (a, c, d):
        ended(env, sid)
    store = env.fleet().store
    store.set_state(a, State.PR_OPEN)
    store.set_state(a, State.MERGED)  # A-1 merged
    store.update_session(c, pr_state="closed")  # C-1's PR closed
    tmux.kill_session(env.server(), d)  # D-1's agent died, and no daemon recorded it: the
    # cleanup looks for itself (the nightly cron with no daemon ended nothing)
    before = sorted(worktrees(env.repo))
    dry = cleanup("-p", "shop", "--dry-run")
    assert sorted((i["name"], i["why"]) for i in dry["items"]) == [  # type: ignore[union-attr]
        (a, "its PR merged"), (c, "its PR was closed"),
        (d, "its agent died and stayed dead")]
    assert dry["freed_bytes"] > 0  # type: ignore[operator]
    assert sorted(worktrees(env.repo)) == before  # dry run: nothing changed
    assert {s.state for s in store.sessions("shop")} != {State.CLEANED}
    # a worktree already gone is not counted as removed
    gone = Path(store.session(c).worktree or "")
    git(env.repo, "worktree", "remove", "--force", str(gone))
    out = run_ao("session", "cleanup", "-p", "shop", "--yes")
    assert out.code == 0 and "ended 3 session(s), removed 2 worktree(s)" in out.out, out.out
    assert len(worktrees(env.repo)) == 1
    assert {s.state for s in store.sessions("shop")} == {State.CLEANED}
    assert tmux.sessions(env.server()) == []
    assert not (paths.worktrees_dir("shop") / a).exists()


def test_unsaved_work_is_kept_or_saved_with_force(env: Env) -> None:
    sid = spawned(env, "A-1")
    ended(env, sid)
    store = env.fleet().store
    wt = Path(store.session(sid).worktree or "")
    (wt / "draft.txt").write_text("not committed\n")
    git(wt, "commit", "-q", "--allow-empty", "-m", "not pushed")
    store.update_session(sid, pr_state="closed")
    out = cleanup("-p", "shop", "--yes")
    kept = out["items"][0]  # type: ignore[index]
    assert kept["kept"] == ["1 uncommitted or untracked file(s)",
                            "1 commit(s) not on the remote"]
    assert wt.exists() and (wt / "draft.txt").exists()
    assert store.session(sid).state is not State.CLEANED
    # a dry run with --force says what the real one will do: save, then remove
    r = run_ao("session", "cleanup", "-p", "shop", "--dry-run", "--force")
    assert r.code == 0, r.err
    assert f"would remove session {sid} (its PR was closed), its work saved first: 1 " \
        "uncommitted" in r.out, r.out
    assert "would end 1 session(s), would remove 1 worktree(s)" in r.out and "kept 0" in r.out
    assert wt.exists() and (wt / "draft.txt").exists()
    r = run_ao("session", "cleanup", "-p", "shop", "--yes", "--force")
    assert r.code == 0 and "saved" in r.out, r.out
    assert not wt.exists()
    saved = sorted((paths.session_dir("shop", sid) / "saved").iterdir())
    assert {f.suffix for f in saved} == {".patch", ".bundle"}
    assert "not committed" in next(f for f in saved if f.suffix == ".patch").read_text()


def test_orphans_are_found(env: Env) -> None:
    orphan = paths.worktrees_dir("shop") / "sho-77"
    orphan.mkdir(parents=True)
    (orphan / "junk.bin").write_bytes(b"x" * 4096)
    srv = env.server()
    tmux.new_session(srv, "stray", env.repo, "sleep 600")
    out = cleanup("--all", "--yes")
    kinds = {(i["kind"], i["name"]) for i in out["items"]}  # type: ignore[union-attr]
    assert ("orphan-worktree", "sho-77") in kinds and ("orphan-tmux", "stray") in kinds
    # a folder without a usable .git cannot be checked for work: it stays, and says why
    assert orphan.exists() and not tmux.has_session(srv, "stray")
    item = next(i for i in out["items"] if i["name"] == "sho-77")  # type: ignore[union-attr]
    assert "no usable .git" in " ".join(item["kept"])
    # nothing there could be saved, so --force keeps it too, and a dry run says so
    r = run_ao("session", "cleanup", "--all", "--dry-run", "--force")
    assert "kept     orphaned worktree sho-77: no usable .git" in r.out, r.out
    (orphan / "junk.bin").unlink()
    cleanup("--all", "--yes")
    assert not orphan.exists()


def test_older_than_and_bad_input(env: Env) -> None:
    sid = spawned(env, "A-1")
    ended(env, sid)
    env.fleet().store.update_session(sid, pr_state="closed")
    out = cleanup("-p", "shop", "--older-than", "7d", "--dry-run")
    assert out["items"] == []
    r = run_ao("session", "cleanup")
    assert r.code == 2 and "-p PROJECT or --all" in r.err
    r = run_ao("session", "cleanup", "-p", "shop")  # not a tty, no --yes
    assert r.code == 2 and "--yes" in r.err


@pytest.fixture
def fake_crontab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    store = tmp_path / "crontab.txt"
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "crontab").write_text(
        "#!/bin/sh\n"
        f'F="{store}"\n'
        'if [ "$1" = "-l" ]; then [ -f "$F" ] || { echo "no crontab for $USER" >&2; exit 1; }; '
        'cat "$F"; exit 0; fi\n'
        'if [ "$1" = "-" ]; then cat > "$F"; exit 0; fi\n'
        "exit 2\n")
    (bin_ / "crontab").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    return store


def test_cron_round_trip_keeps_other_lines(fake_crontab: Path) -> None:
    assert "not installed" in run_ao("cron", "show").out
    fake_crontab.write_text("MAILTO=me@example.invalid\n0 * * * * backup.sh\n")
    assert run_ao("cron", "install", "--at", "03:30").code == 0
    assert run_ao("cron", "install", "--at", "04:15").code == 0  # moved, not duplicated
    lines = fake_crontab.read_text().splitlines()
    assert lines[:2] == ["MAILTO=me@example.invalid", "0 * * * * backup.sh"]
    ours = [x for x in lines if "ao-nightly-cleanup" in x]
    assert len(ours) == 1 and ours[0].startswith("15 4 * * * ")
    assert "session cleanup --all --yes" in ours[0] and "cleanup.log" in ours[0]
    assert "ao-nightly-cleanup" in run_ao("cron", "show").out
    assert run_ao("cron", "remove").out.strip() == "removed"
    assert fake_crontab.read_text().splitlines() == lines[:2]
    bad = run_ao("cron", "install", "--at", "25:00")
    assert bad.code == 2 and "HH:MM" in bad.err


def test_cron_without_crontab_prints_a_systemd_timer(tmp_path: Path) -> None:
    import sys

    r = subprocess.run([sys.executable, "-m", "ao", "cron", "install"], capture_output=True,
                       text=True, env={**os.environ, "PATH": str(tmp_path)})
    assert r.returncode == 0 and "OnCalendar=*-*-* 03:00:00" in r.stdout


def test_ignored_files_are_work_and_disposable_ones_are_not(env: Env) -> None:
    (env.repo / ".gitignore").write_text("local.env\nnode_modules/\n")
    git(env.repo, "add", "-A")
    git(env.repo, "commit", "-q", "-m", "ignore")
    git(env.repo, "push", "-q", "origin", "main")
    sid = spawned(env, "A-1")
    ended(env, sid)
    wt = paths.worktree_path("shop", sid)
    (wt / "node_modules" / "pkg").mkdir(parents=True)
    (wt / "node_modules" / "pkg" / "index.js").write_text("rebuilt on install\n")
    (wt / "local.env").write_text("SECRET_THING=only-here\n")
    r = run_ao("session", "kill", sid)
    assert r.code == 0 and "worktree kept" in r.out and "local.env" in r.out, r.out
    assert (wt / "local.env").exists()
    r = run_ao("session", "kill", sid, "--force")
    assert r.code == 0 and "saved" in r.out, r.out
    patch = next((paths.session_dir("shop", sid) / "saved").glob("*.patch")).read_text()
    assert "SECRET_THING=only-here" in patch and "rebuilt on install" not in patch
    assert not wt.exists()


def test_a_killed_session_whose_branch_a_later_one_continues_is_cleaned(env: Env) -> None:
    """Kill a session, start its task again (the new session continues the task's branch),
    then clean up: the killed one ends, its worktree goes, and the branch the new session
    has checked out stays, without holding the cleanup back on every run."""
    first = spawned(env, "A-1")
    ended(env, first)
    assert run_ao("session", "kill", first).code == 0
    second = spawned(env, "A-1")
    ended(env, second)
    out = cleanup("-p", "shop", "--yes")
    items = {i["name"]: i for i in out["items"]}  # type: ignore[union-attr]
    assert items[first]["kept"] == [], items[first]
    store = env.fleet().store
    assert store.session(first).state is State.CLEANED
    assert store.session(second).state is State.WORKING
    assert "ao/a-1" in git(env.repo, "branch", "--list", "ao/a-1")
    assert cleanup("-p", "shop", "--yes")["items"] == []  # nothing left to retry


def test_delete_remote_prunes_branches_an_earlier_cleanup_left(env: Env) -> None:
    """Remote ao/* branches were pruned only by the cleanup that ended their session with
    --delete-remote; a later `--delete-remote` prunes those an earlier run left, under a
    lease (a branch pushed to since its PR merged is kept, and says so)."""
    a, b = spawned(env, "A-1"), spawned(env, "C-1")
    for sid in (a, b):
        ended(env, sid)
    store = env.fleet().store
    for sid in (a, b):
        head = git(env.remote, "rev-parse", store.session(sid).branch or "")
        store.update_session(sid, pr_head_sha=head)
        store.set_state(sid, State.PR_OPEN)
        store.set_state(sid, State.MERGED)
    out = run_ao("session", "cleanup", "-p", "shop", "--yes")  # no --delete-remote
    assert out.code == 0, out.err
    heads = git(env.remote, "branch", "--format=%(refname:short)")
    assert "ao/a-1" in heads and "ao/c-1" in heads
    # someone pushes to C-1's branch after its PR merged: that work is not to be deleted
    clone = env.repo.parent / "other-clone"
    git(env.repo.parent, "clone", "-q", str(env.remote), str(clone))
    git(clone, "checkout", "-q", "ao/c-1")
    (clone / "later.txt").write_text("later\n")
    git(clone, "add", "-A")
    git(clone, "-c", "user.name=x", "-c", "user.email=x@example.invalid", "commit", "-qm", "later")
    git(clone, "push", "-q", "origin", "ao/c-1")
    dry = cleanup("-p", "shop", "--dry-run", "--delete-remote")
    items = {i["name"]: i for i in dry["items"]}  # type: ignore[union-attr]
    assert items["ao/a-1"]["kind"] == "remote-branch" and items["ao/a-1"]["kept"] == []
    assert "after its PR merged" in items["ao/c-1"]["kept"][0]
    assert "ao/a-1" in git(env.remote, "branch", "--format=%(refname:short)")  # dry: kept
    out = run_ao("session", "cleanup", "-p", "shop", "--yes", "--delete-remote")
    assert out.code == 0, out.err
    assert "removed  remote branch ao/a-1" in out.out and "kept     remote branch ao/c-1" \
        in out.out, out.out
    heads = git(env.remote, "branch", "--format=%(refname:short)")
    assert "ao/a-1" not in heads and "ao/c-1" in heads
