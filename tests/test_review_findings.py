"""What a review of the lifecycle work found, each as a test against real git and the store:
work is never lost to a missing default branch, a switched branch or a worktree deleted by
hand; standing change requests block; one starter per queued record; escalations that only a
human can clear stay escalated; queued records outside a plan start."""

from __future__ import annotations

import shutil
from pathlib import Path

from ao import config, paths
from ao.decide.gate import Approval, approval
from ao.decide.reactions import History, Observation, Policy, decide
from ao.loop.daemon import Daemon
from ao.record.forge import PASSING, CheckSummary, PullRequest
from ao.record.state import Activity, State
from ao.record.store import Store
from ao.world import worksafe, workspace

from .fleet_helpers import Env
from .helpers import git
from .test_sessions import spawned


def commit_in(wt: Path, name: str) -> None:
    (wt / name).write_text("work\n")
    git(wt, "add", "-A")
    git(wt, "commit", "-q", "-m", name)


def test_unpushed_work_is_seen_without_a_local_default_branch(env: Env, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    git(env.repo, "worktree", "add", "-q", "-b", "ao/t1", str(wt), "origin/main")
    commit_in(wt, "one.txt")
    git(env.repo, "checkout", "-q", "--detach")
    git(env.repo, "branch", "-D", "main")  # a clone that only has origin/main
    assert worksafe.work_at_risk(wt, "origin", "main", branch="ao/t1")


def test_commits_on_the_session_branch_count_when_the_agent_switched(
        env: Env, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    git(env.repo, "worktree", "add", "-q", "-b", "ao/t1", str(wt), "origin/main")
    commit_in(wt, "one.txt")
    git(wt, "switch", "-q", "-c", "elsewhere", "origin/main")
    assert worksafe.work_at_risk(wt, "origin", "main", branch="ao/t1")
    assert not worksafe.work_at_risk(wt, "origin", "main")  # HEAD alone would say safe


def test_a_branch_whose_worktree_was_deleted_by_hand_keeps_its_commits(env: Env) -> None:
    fleet = env.fleet()
    s = fleet.store.session(spawned(env, "C-1"))  # its agent has done its first work
    wt = Path(s.worktree or "")
    commit_in(wt, "precious.txt")  # committed, never pushed
    shutil.rmtree(wt)  # someone removed the folder
    out = fleet.kill(s.id)
    assert out["branch"] == "kept", out
    assert workspace.local_branch_exists(env.repo, s.branch or "")
    assert "precious.txt" in git(env.repo, "show", "--stat", s.branch or "")
    out = fleet.kill(s.id, force=True)  # forced: the commits are bundled, then it goes
    assert out["branch"] == "deleted" and any("bundle" in x for x in out["saved"]), out  # type: ignore[union-attr]


def test_a_standing_change_request_outranks_an_approved_decision() -> None:
    pr = PullRequest(1, "u", "open", "ao/a", "s", review_decision="approved",
                     checks=CheckSummary(PASSING, ()), mergeable="mergeable",
                     reviews=(("alice", "changes_requested"), ("bob", "approved")))
    assert approval(pr) is Approval.CHANGES_REQUESTED


def test_one_starter_per_queued_record(env: Env) -> None:
    store = Store()
    s = store.create_session("shop", "sho", "A-1", state=State.QUEUED)
    assert store.claim_queued(s.id) and not store.claim_queued(s.id)


def test_escalations_only_a_human_can_clear_stay() -> None:
    green = PullRequest(1, "u", "open", "ao/a", "s", checks=CheckSummary(PASSING, ()),
                        mergeable="mergeable", reviews=(("r", "approved"),))
    policy = Policy(auto_merge=True)
    for key in ("merge:s", "delivery:7"):
        hist = History(escalated_for=key)
        obs = Observation(State.NEEDS_HUMAN, Activity.IDLE, 0, green)
        assert decide(obs, hist, policy) == [], key
    working = Observation(State.NEEDS_HUMAN, Activity.ACTIVE, 0, green)
    assert [a.kind for a in decide(working, History(escalated_for="delivery:7"), policy)] == \
        ["resume"]


def test_a_queued_one_off_task_starts_without_a_plan(env: Env) -> None:
    fleet = env.fleet()
    key = fleet.one_off("shop", "do the thing", "Thing")
    task = fleet.task(fleet.cfg.project("shop"), key, None)
    s = fleet.queue(fleet.cfg.project("shop"), task, None)
    assert s is not None
    Daemon(config.load(), Store(), env.server()).tick()
    assert Store().session(s.id).state in (State.WORKING, State.PR_OPEN)
    assert paths.session_dir("shop", s.id).exists()


def test_a_merged_session_whose_branch_keeps_commits_is_reported_once(env: Env) -> None:
    """After the grace period the merged session's teardown keeps a branch that holds commits
    found nowhere else: said once (`cleanup.kept`), not taken for cleaned on every tick."""
    import json

    fleet = env.fleet()
    s = fleet.store.session(spawned(env, "C-1"))
    wt = Path(s.worktree or "")
    commit_in(wt, "after-merge.txt")  # committed, never pushed
    shutil.rmtree(wt)
    fleet.store.set_state(s.id, State.MERGED)
    d = Daemon(config.load(), Store(), env.server(), clock=lambda: 10**10)
    for _ in range(3):
        d.cleanup_merged(config.load().project("shop"))
    log = [json.loads(x) for x in paths.events_log().read_text().splitlines()]
    mine = [e["type"] for e in log if e.get("session") == s.id]
    assert mine.count("cleanup.kept") == 1 and "session.cleaned" not in mine, mine
    assert Store().session(s.id).state is State.MERGED
    assert workspace.local_branch_exists(env.repo, s.branch or "")
