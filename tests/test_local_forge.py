"""The local forge end to end with real git: PRs from pushed branches, CI per sha, reviews,
sha-guarded merges and conflict refusal."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ao import config
from ao.errors import ExternalError, NothingToReview
from ao.loop.daemon import Daemon
from ao.record.store import Store
from ao.world.forge.local import LocalForge

from .fleet_helpers import Env
from .helpers import git, push_branch, retry_until, run_ao

CI = "test -f ok.txt || { echo 'src/app.py:3: AssertionError: ok.txt is missing'; exit 1; }"


@pytest.fixture
def clone(env: Env, tmp_path: Path) -> Path:
    c = tmp_path / "agent-clone"
    git(tmp_path, "clone", "-q", str(env.remote), str(c))
    return c


def forge(env: Env) -> LocalForge:
    env.write_config(ci={"command": CI, "timeout": "60s"})
    return LocalForge(config.load().project("shop"), Store())


def wait_ci(f: LocalForge, branch: str, want: str) -> None:
    """Poll and serve, as each daemon tick does, until the head's CI says `want`."""
    def tick() -> bool:
        prs = f.poll([branch]).prs
        f.serve(prs)
        pr = prs[branch]
        return pr is not None and pr.checks.overall == want

    retry_until(tick, timeout=30, message=f"CI {want}")


def test_pull_request_lifecycle(env: Env, clone: Path) -> None:
    f = forge(env)
    assert f.poll(["ao/a-1"]).prs == {"ao/a-1": None}
    sha1 = push_branch(clone, "ao/a-1", {"feature.txt": "v1\n"})
    # a read opens nothing and starts nothing: the PR is opened, and CI started, by actions
    assert f.poll(["ao/a-1"]).prs == {"ao/a-1": None}
    assert Store().local_prs("shop") == [] and Store().local_ci("shop", sha1) is None
    pr = f.create_pr("ao/a-1", "[A-1] feature", "")
    assert (pr.number, pr.state, pr.head_sha, pr.mergeable, pr.title) == (
        1, "open", sha1, "mergeable", "[A-1] feature")
    assert pr.checks.overall == "pending" and Store().local_ci("shop", sha1) is None
    wait_ci(f, "ao/a-1", "failing")
    details = f.failure_details(f.poll(["ao/a-1"]).prs["ao/a-1"])  # type: ignore[arg-type]
    assert details[0].annotations[0].path == "src/app.py"
    assert details[0].annotations[0].line == 3
    assert "ok.txt is missing" in details[0].log_tail
    # a fix pushed: CI runs again for the new sha only, and passes
    sha2 = push_branch(clone, "ao/a-1", {"ok.txt": "fixed\n"}, "fix")
    wait_ci(f, "ao/a-1", "passing")
    pr = f.poll(["ao/a-1"]).prs["ao/a-1"]
    assert pr is not None and pr.head_sha == sha2 and pr.number == 1
    store = Store()
    assert store.local_ci("shop", sha1)["status"] == "failing"  # type: ignore[index]
    # reviews
    f.review(pr.number, "changes_requested", "rename the file", "feature.txt", 1, sha2)
    pr = f.poll(["ao/a-1"]).prs["ao/a-1"]
    assert pr is not None and pr.review_decision == "changes_requested"
    assert [(c.body, c.path, c.line) for c in f.review_comments(pr)] == [
        ("rename the file", "feature.txt", 1)]
    f.review(pr.number, "approved")
    pr = f.poll(["ao/a-1"]).prs["ao/a-1"]
    assert pr is not None and pr.review_decision == "approved"
    # merge, guarded by the sha
    with pytest.raises(ExternalError, match="head moved"):
        f.merge(pr, sha1)
    merged = f.merge(pr, sha2)
    assert git(env.remote, "rev-parse", "main") == merged
    parents = git(env.remote, "log", "-1", "--format=%P", "main").split()
    assert parents[1] == sha2
    assert f.poll(["ao/a-1"]).prs["ao/a-1"].state == "merged"  # type: ignore[union-attr]


def test_conflicting_merge_is_refused(env: Env, clone: Path) -> None:
    f = forge(env)
    a = push_branch(clone, "ao/a-1", {"README.md": "# from a\n", "ok.txt": "ok"}, "a")
    b = push_branch(clone, "ao/c-1", {"README.md": "# from c\n", "ok.txt": "ok"}, "c")
    pr_a = f.create_pr("ao/a-1", "a", "")
    f.create_pr("ao/c-1", "c", "")
    f.merge(pr_a, a)
    pr_c = f.poll(["ao/c-1"]).prs["ao/c-1"]
    assert pr_c is not None and pr_c.mergeable == "conflicting"
    before = git(env.remote, "rev-parse", "main")
    with pytest.raises(ExternalError, match="conflicts"):
        f.merge(pr_c, b)
    assert git(env.remote, "rev-parse", "main") == before


def test_ci_runner_that_died_is_run_again(env: Env, clone: Path) -> None:
    f = forge(env)
    sha = push_branch(clone, "ao/a-1", {"ok.txt": "ok"})
    f.create_pr("ao/a-1", "a", "")
    store = Store()
    store.claim_local_ci("shop", sha, str(f.ci_log("ao/a-1", sha)))
    dead = subprocess.Popen(["true"])
    dead.wait()
    store.set_local_ci("shop", sha, pid=dead.pid)
    wait_ci(f, "ao/a-1", "passing")


def test_branch_without_new_commits_is_not_a_pr(env: Env, clone: Path) -> None:
    f = forge(env)
    git(clone, "push", "-q", "origin", "origin/main:refs/heads/ao/a-1")
    with pytest.raises(NothingToReview, match="no commits ahead"):
        f.create_pr("ao/a-1", "a", "")
    assert f.poll(["ao/a-1"]).prs["ao/a-1"] is None


def test_cli_pr_ls_review_and_merge(env: Env, clone: Path) -> None:
    from .test_sessions import spawned

    env.write_config(ci={"command": "true"})
    sid = spawned(env)  # the demo agent pushes ao/a-1 with a note
    # `ao pr ls` reads: the daemon's tick opens the PR and starts its CI
    assert json.loads(run_ao("pr", "ls", "--json").out or "[]") == []
    d = Daemon(config.load(), Store())
    retry_until(lambda: (d.tick(), json.loads(run_ao("pr", "ls", "--json").out or "[]"))[1],
                timeout=20, message="the PR")
    retry_until(lambda: (d.tick(), json.loads(run_ao("pr", "ls", "--json").out)[0]["ci"])[1]
                == "passing", timeout=30, message="CI")
    r = run_ao("review", sid, "--request-changes", "add a docstring", "--file", "x.py",
               "--line", "2")
    assert r.code == 0 and "changes requested" in r.out, r.err
    row = json.loads(run_ao("pr", "ls", "--json").out)[0]
    assert (row["session"], row["review"]) == (sid, "changes_requested")
    bad = run_ao("review", sid, "--approve", "--comment", "x")
    assert bad.code == 2 and "choose one" in bad.err
    r = run_ao("pr", "merge", sid)  # the same merge gate as the daemon: changes requested
    assert r.code == 2 and "cannot merge: changes are requested" in r.err, r.err
    assert run_ao("review", sid, "--approve").code == 0
    r = run_ao("pr", "merge", sid)
    assert r.code == 0 and "merged as" in r.out, r.err


def test_update_branch_merges_the_base_into_the_head(env: Env, clone: Path) -> None:
    """The local forge's "Update branch", as GitHub's: the base merged into the head on the
    remote, only while the head is the one expected; a conflict is refused."""
    f = forge(env)
    sha = push_branch(clone, "ao/a-1", {"a.txt": "a\n"})
    f.create_pr("ao/a-1", "a", "")
    push_branch(clone, "main", {"m.txt": "main moved on\n"})
    pr = f.poll(["ao/a-1"]).prs["ao/a-1"]
    assert pr is not None
    with pytest.raises(ExternalError, match="head moved"):
        f.update_branch(pr, "0" * 40)
    f.update_branch(pr, sha)
    head = git(env.remote, "rev-parse", "refs/heads/ao/a-1")
    assert head != sha and git(env.remote, "merge-base", "--is-ancestor", "main", head) == ""
    push_branch(clone, "ao/b-1", {"m.txt": "conflicts\n"}, base=f"{sha}")
    f.poll(["ao/b-1"])  # as a tick does before it opens the PR of a branch it saw pushed
    f.create_pr("ao/b-1", "b", "")
    b = f.poll(["ao/b-1"]).prs["ao/b-1"]
    assert b is not None
    with pytest.raises(ExternalError, match="conflicts"):
        f.update_branch(b, b.head_sha)


def test_a_changed_ci_command_runs_again_on_the_same_head(env: Env, clone: Path) -> None:
    """The CI command fixed in the config: the head's old verdict was of a command nobody
    runs any more, and the agent was sent its log as if it were now."""
    f = forge(env)  # CI: fails without ok.txt
    push_branch(clone, "ao/a-1", {"feature.txt": "v1\n"})
    f.create_pr("ao/a-1", "a", "")
    wait_ci(f, "ao/a-1", "failing")
    env.write_config(ci={"command": "true", "timeout": "60s"})
    wait_ci(LocalForge(config.load().project("shop"), Store()), "ao/a-1", "passing")
