"""The GitHub forge's whole surface through PyGithub over real HTTP against the fake server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ao import config
from ao.decide.gate import Approval, GatePolicy, approval, merge_gate
from ao.decide.plan import parse
from ao.errors import BadInput, ExternalError, NotFound
from ao.record.store import Store
from ao.world.forge.github import GitHubForge, push_plan

from .fake_github import FakeGitHub, Repo, serve
from .fleet_helpers import Env
from .helpers import git, push_branch, run_ao

TOKEN = "ghp_secret_token_value_1234567890"
GH = tuple[FakeGitHub, Repo]


@pytest.fixture
def gh(env: Env) -> Iterator[tuple[FakeGitHub, Repo]]:
    with serve() as fake:
        repo = fake.add_repo("acme/shop", env.remote)
        env.write_config(repo="acme/shop", forge="github")
        yield fake, repo


@pytest.fixture
def f(gh: GH) -> GitHubForge:
    return GitHubForge(config.load().project("shop"), Store(), TOKEN, base_url=gh[0].url,
                       sleep=lambda _s: None)


@pytest.fixture
def clone(env: Env, tmp_path: Path) -> Path:
    c = tmp_path / "agent-clone"
    git(tmp_path, "clone", "-q", str(env.remote), str(c))
    return c


def test_resolve_task_by_number_and_bracketed_key(f: GitHubForge, gh: GH) -> None:
    fake, repo = gh
    fake.add_issue(repo, "[AUTH-001] Implement JWT authentication")
    fake.add_issue(repo, "[AUTH-002] Sessions")
    fake.add_issue(repo, "[DUP-1] one")
    fake.add_issue(repo, "[DUP-1] two")
    assert f.resolve_task("#1").title == "[AUTH-001] Implement JWT authentication"
    assert f.resolve_task("AUTH-002").number == 2
    with pytest.raises(NotFound, match=r"no issue titled \[AUTH-009\]") as e:
        f.resolve_task("AUTH-009")
    assert "AUTH-001" in e.value.hint
    with pytest.raises(BadInput, match=r"several issues: #3, #4|several issues: #4, #3"):
        f.resolve_task("DUP-1")
    with pytest.raises(NotFound):
        f.resolve_task("99")
    # the listing is cached: resolving again costs no request
    before = fake.counts["total"]
    f.resolve_task("AUTH-001")
    assert fake.counts["total"] == before


def test_poll_is_one_request_for_many_branches(f: GitHubForge, gh: GH,
                                               clone: Path) -> None:
    fake, _repo = gh
    shas = {}
    for i in range(6):
        shas[f"ao/t-{i}"] = push_branch(clone, f"ao/t-{i}", {f"f{i}.txt": "x"})
    for b in list(shas)[:4]:
        f.create_pr(b, f"[{b}] title", "body")
    fake.counts.clear()
    result = f.poll(list(shas))
    assert fake.counts["total"] == 1 and fake.counts["POST /graphql"] == 1
    assert result.errors == [] and result.requests == 1
    assert [b for b, pr in result.prs.items() if pr is None] == ["ao/t-4", "ao/t-5"]
    pr = result.prs["ao/t-0"]
    assert pr is not None and pr.head_sha == shas["ao/t-0"] and pr.state == "open"
    assert pr.mergeable == "mergeable" and pr.checks.overall == "none"
    # an agent's push moves the PR: the head is read live from the bare repository
    new = push_branch(clone, "ao/t-0", {"more.txt": "y"})
    assert f.poll(["ao/t-0"]).prs["ao/t-0"].head_sha == new  # type: ignore[union-attr]
    assert result.rate_remaining is not None and result.rate_remaining < 5000


def test_checks_failure_details_and_reviews(f: GitHubForge, gh: GH, clone: Path) -> None:
    fake, repo = gh
    sha = push_branch(clone, "ao/a-1", {"a.py": "x = 1\n"})
    f.create_pr("ao/a-1", "[A-1] title", "Closes #1")
    fake.add_check_run(repo, sha, "lint", "success")
    fake.add_check_run(repo, sha, "tests", None)
    assert f.poll(["ao/a-1"]).prs["ao/a-1"].checks.overall == "pending"  # type: ignore[union-attr]
    repo.check_runs[sha][1].update(status="completed", conclusion="failure",
                                   summary="1 failed", annotations=[{
                                       "path": "src/a.py", "start_line": 12, "end_line": 12,
                                       "annotation_level": "failure",
                                       "message": "assert 1 == 2\x1b[31m", "title": "t"}])
    repo.job_logs[repo.check_runs[sha][1]["id"]] = "\n".join(f"log {i}" for i in range(200))
    fake.add_status(repo, sha, "ci/legacy", "error", "it broke")
    pr = f.poll(["ao/a-1"]).prs["ao/a-1"]
    assert pr is not None and pr.checks.overall == "failing"
    assert {c.name: c.conclusion for c in pr.checks.checks} == {
        "lint": "success", "tests": "failure", "ci/legacy": "error"}
    details = {d.check: d for d in f.failure_details(pr)}
    assert set(details) == {"tests", "ci/legacy"}
    t = details["tests"]
    assert t.annotations[0].path == "src/a.py" and t.annotations[0].line == 12
    assert "\x1b" not in t.annotations[0].message
    assert t.log_tail.splitlines()[-1] == "log 199" and len(t.log_tail.splitlines()) == 80
    assert details["ci/legacy"].output == "it broke"
    # asked again for the same head: conditional requests, answered 304 Not Modified
    fake.counts.clear()
    again = {d.check: d for d in f.failure_details(pr)}
    assert again["tests"].annotations == t.annotations
    assert fake.counts["not modified"] == 3  # check runs, annotations, statuses
    fake.add_review(repo, pr.number, "CHANGES_REQUESTED", "please split this",
                    [("src/a.py", 3, "rename x")])
    pr = f.poll(["ao/a-1"]).prs["ao/a-1"]
    # no branch protection: GitHub's reviewDecision is null, the latest reviews still say no
    assert pr is not None and pr.review_decision is None
    assert approval(pr) is Approval.CHANGES_REQUESTED and not merge_gate(pr, GatePolicy())
    comments = f.review_comments(pr)
    assert [(c.body, c.path, c.line) for c in comments] == [
        ("please split this", None, None), ("rename x", "src/a.py", 3)]
    repo.threads[pr.number][0]["isResolved"] = True
    assert [c.body for c in f.review_comments(pr)] == ["please split this"]


def test_merge_is_sha_guarded_and_closes_issues(f: GitHubForge, gh: GH,
                                               clone: Path) -> None:
    fake, repo = gh
    fake.add_issue(repo, "[A-1] thing")
    old = push_branch(clone, "ao/a-1", {"a.txt": "1"})
    f.create_pr("ao/a-1", "[A-1] thing", "Closes #1")
    new = push_branch(clone, "ao/a-1", {"a.txt": "2"})
    pr = f.poll(["ao/a-1"]).prs["ao/a-1"]
    assert pr is not None
    with pytest.raises(ExternalError, match="409"):
        f.merge(pr, old)
    sha = f.merge(pr, new)
    assert git(env_remote(repo), "rev-parse", "main") == sha
    assert repo.issues[1]["state"] == "closed"
    assert f.poll(["ao/a-1"]).prs["ao/a-1"].state == "merged"  # type: ignore[union-attr]


def env_remote(repo: Repo) -> Path:
    return repo.bare


def test_conflict_is_seen(f: GitHubForge, gh: GH, clone: Path) -> None:
    _fake, _repo = gh
    a = push_branch(clone, "ao/a-1", {"README.md": "a\n"})
    push_branch(clone, "ao/b-1", {"README.md": "b\n"})
    f.create_pr("ao/a-1", "a", "")
    f.create_pr("ao/b-1", "b", "")
    f.merge(f.poll(["ao/a-1"]).prs["ao/a-1"], a)  # type: ignore[arg-type]
    assert f.poll(["ao/b-1"]).prs["ao/b-1"].mergeable == "conflicting"  # type: ignore[union-attr]


def test_faults_never_escape_a_poll(f: GitHubForge, gh: GH, clone: Path) -> None:
    fake, _repo = gh
    push_branch(clone, "ao/a-1", {"a.txt": "1"})
    f.create_pr("ao/a-1", "a", "")
    fake.fault_rate = 0.2
    ok = 0
    for _ in range(60):
        result = f.poll(["ao/a-1"])
        if result.errors:
            assert TOKEN not in " ".join(result.errors)
        else:
            ok += 1
            assert result.prs["ao/a-1"] is not None
    # three jittered retries: a poll fails only when four tries in a row fail
    assert ok >= 55
    fake.fault_rate = 1.0
    result = f.poll(["ao/a-1"])
    assert result.prs == {} and len(result.errors) == 1 and "GitHub graphql failed" in \
        result.errors[0]


def test_token_never_in_errors_or_events(f: GitHubForge, gh: GH) -> None:
    fake, _ = gh
    fake.fault_rate = 1.0
    with pytest.raises(ExternalError) as e:
        f.create_issue("x", "y")
    assert TOKEN not in str(e.value) and TOKEN not in e.value.hint


def test_plan_push_is_idempotent(f: GitHubForge, gh: GH, tmp_path: Path) -> None:
    fake, repo = gh
    plan_file = tmp_path / "p.yaml"
    plan_file.write_text("tasks:\n  DB-001: {title: Schema}\n"
                         "  AUTH-001: {title: Auth, deps: [DB-001], body: use JWT}\n")
    fake.add_issue(repo, "[DB-001] Schema (made by hand)")
    env = {"GITHUB_TOKEN": TOKEN, "AO_GITHUB_API_URL": fake.url}
    r = run_ao("plan", "push", str(plan_file), "--project", "shop", env=env)
    assert r.code == 0, r.err
    assert "DB-001         #1     exists" in r.out and "AUTH-001       #2     created" in r.out
    assert repo.issues[2]["title"] == "[AUTH-001] Auth"
    assert repo.issues[2]["body"] == "use JWT\n\nDepends on #1\n\n<!-- ao:shop/AUTH-001 -->"
    again = run_ao("plan", "push", str(plan_file), "--project", "shop", env=env)
    assert again.code == 0 and again.out.count("exists") == 2 and len(repo.issues) == 2
    assert Store().task("shop", "AUTH-001")["issue_number"] == 2  # type: ignore[index]
    assert TOKEN not in r.out + r.err


def test_plan_push_refuses_local_forge(env: Env, tmp_path: Path) -> None:
    plan_file = tmp_path / "p.yaml"
    plan_file.write_text(json.dumps({"tasks": {"A-1": {"title": "a"}}}))
    r = run_ao("plan", "push", str(plan_file), "--project", "shop")
    assert r.code == 2 and "local forge" in r.err


def test_push_plan_in_dependency_order(f: GitHubForge, gh: GH) -> None:
    _fake, repo = gh
    plan = parse("tasks:\n  B-1: {title: b, deps: [A-1]}\n  A-1: {title: a}\n")
    out = push_plan(f, plan, Store())
    assert out == [("A-1", 1, "created"), ("B-1", 2, "created")]
    assert repo.issues[2]["body"] == "Depends on #1\n\n<!-- ao:shop/B-1 -->"


def test_a_branch_with_nothing_to_review_gets_no_pr_and_no_error_event(
        f: GitHubForge) -> None:
    """GitHub answers 422 "No commits between" for a PR of a branch with nothing ahead: the
    daemon waits for commits (NothingToReview) instead of reporting a failure every tick."""
    from ao.errors import NothingToReview

    with pytest.raises(NothingToReview, match="no commits ahead"):
        f.create_pr("ao/nothing-1", "n", "")


def test_the_rest_budget_is_read_from_each_answer(f: GitHubForge, gh: GH, clone: Path) -> None:
    """x-ratelimit-remaining of a REST answer, through PyGithub's public rate_limiting,
    counted for `core` apart from `graphql`."""
    fake, _ = gh
    fake.rate_limit = 4321
    push_branch(clone, "ao/b-1", {"b.txt": "1"})
    f.create_pr("ao/b-1", "b", "")
    # the fake counts each request down from there
    assert 4300 < f.budgets["core"] <= 4321 and f.rate_remaining == f.budgets["core"]
    assert "graphql" not in f.budgets


def test_low_rate_budget_is_noticed(f: GitHubForge, gh: GH, clone: Path) -> None:
    fake, _ = gh
    push_branch(clone, "ao/a-1", {"a.txt": "1"})
    f.create_pr("ao/a-1", "a", "")
    assert not f.low_budget()
    fake.rate_limit = 150
    f.poll(["ao/a-1"])
    assert f.low_budget() and f.rate_remaining is not None and f.rate_remaining < 150
    # the daemon stretches its interval and says so
    from ao.loop.daemon import Daemon

    d = Daemon(config.load(), Store(), forges={"shop": f})
    assert d._low_budget() is True
    assert any(r["type"] == "forge.rate_low" for r in Store().db.query("SELECT type FROM events"))


def test_a_reviewer_verdict_is_posted_once_as_github_allows(f: GitHubForge, gh: GH,
                                                            clone: Path) -> None:
    """POST /pulls/{n}/reviews on the head commit. On a PR ao's own token opened, GitHub
    refuses the author an APPROVE or REQUEST_CHANGES (422): the verdict goes as a COMMENT
    headed with it, the comments folded into its body; ao's own record holds the gate. A
    second post finds the first by its marker."""
    from ao.record.forge import AgentReview

    fake, repo = gh
    sha = push_branch(clone, "ao/r-1", {"r.py": "x = 1\n"})
    pr = f.create_pr("ao/r-1", "[R-1] review me", "body")  # opened by the token's user
    review = AgentReview("request_changes", "**Changes requested** by ao's reviewer agent.",
                         (("r.py", 1, "name x better"), ("README.md", None, "mention r")),
                         marker="<!-- ao-review rev-1 abc -->")
    assert f.submit_review(pr, review, sha) == "COMMENT"
    posted = fake.repos[repo.full].reviews[pr.number]
    assert [r["state"] for r in posted] == ["COMMENTED"]
    assert "name x better" in posted[0]["body"] and "mention r" in posted[0]["body"]
    assert f.submit_review(pr, review, sha) == "already posted"
    assert len(fake.repos[repo.full].reviews[pr.number]) == 1
    # the agent gets the request through the usual loop
    comments = f.review_comments(pr)
    assert any("name x better" in c.body for c in comments)
    # a PR someone else opened takes the real verdict, its line comments inline
    fake.repos[repo.full].pulls[pr.number]["user"] = "a-human"
    again = AgentReview("request_changes", "**Changes requested** by ao's reviewer agent.",
                        (("r.py", 1, "and add a test"),), marker="<!-- ao-review rev-1 def -->")
    assert f.submit_review(pr, again, sha) == "REQUEST_CHANGES"
    assert fake.repos[repo.full].reviews[pr.number][-1]["state"] == "CHANGES_REQUESTED"
    threads = fake.repos[repo.full].threads[pr.number]
    assert threads[-1]["comments"]["nodes"][0]["path"] == "r.py"
