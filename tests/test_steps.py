"""Steps and gates (docs/steps.md): a reviewer agent before the merge, a human approval gate,
check commands; run for real with the demo agent, the local forge and the daemon."""

from __future__ import annotations

import pytest

from ao.decide import steps
from ao.decide.gate import GatePolicy, merge_gate
from ao.decide.plan import parse
from ao.errors import PlanError
from ao.record.forge import PASSING, CheckSummary, PullRequest
from ao.record.state import State
from ao.record.store import Store

from .fleet_helpers import Env
from .helpers import git, run_ao
from .test_daemon import demo, event_types, run_until, setup, write

TEST_C = """import unittest
import mod_c


class T(unittest.TestCase):
    def test_c(self):
        self.assertEqual(mod_c.c(), 3)
"""


def review_plan(*extra_steps: str) -> dict[str, object]:
    """One task whose reviewer asks for a change once, then approves; the implementing demo
    agent makes the change when the review reaches it."""
    body = demo("\n".join([write("mod_c.py", "def c():\n    return 3"),
                           write("test_c.py", TEST_C), "commit C-1: add c", "push"]))
    body += "\n```demo-on Please add a docstring\n" + "\n".join([
        write("mod_c.py", 'def c():\n    """Three."""\n    return 3'), "commit C-1: docstring",
        "push"]) + "\n```\n"
    body += ("```demo-review\n1: request_changes mod_c.py:1 Please add a docstring to c().\n"
             "2: approve Looks right now.\n```\n")
    return {"defaults": {"steps": ["implement", "review", *extra_steps]},
            "tasks": {"C-1": {"title": "Add c", "body": body}}}


def test_steps_parse_and_refuse_bad_input() -> None:
    p = parse("defaults: {steps: [review]}\ntasks:\n  A: {title: a}\n"
              "  B: {title: b, steps: [implement, {review: {agent: codex}}, approve]}\n", None)
    assert [s.kind for s in p.steps("A")] == ["implement", "review"]  # implement implied
    assert [(s.kind, s.agent) for s in p.steps("B")] == [
        ("implement", None), ("review", "codex"), ("approve", None)]
    for bad, says in (("[deploy]", "unknown step `deploy`"),
                      ("[implement, review, review]", "listed twice"),
                      ("[{check: {}}]", "needs `run: COMMAND`"),
                      ("[{review: {model: x}}]", "unknown option `model`"),
                      ("[]", "non-empty list")):
        with pytest.raises(PlanError, match=says):
            parse(f"tasks:\n  A: {{title: a, steps: {bad}}}\n", None)


def test_the_gate_holds_for_steps_not_passed_on_this_head() -> None:
    pr = PullRequest(number=1, url="", state="open", head_branch="ao/a", head_sha="s2",
                     checks=CheckSummary(PASSING), mergeable="mergeable",
                     merge_state="clean")
    required = steps.gates(steps.parse(["implement", "review", "approve"], "t"))
    assert merge_gate(pr, GatePolicy(), required=required).waiting_for == "review"
    # an approval of an earlier head does not count for this one
    passed = steps.passed({"gate:review:s1", "gate:approve:s1", "gate:review:s2"}, "s2")
    v = merge_gate(pr, GatePolicy(), required=required, passed=passed)
    assert (v.ok, v.waiting_for) == (False, "approve") and "ao approve" in v.reason
    v = merge_gate(pr, GatePolicy(), required=required, passed=passed | {"approve"})
    assert v.ok and v.reason == "approved and green"  # the reviewer's approval is the review


def test_a_reviewer_requests_changes_once_then_approves(env: Env) -> None:
    """The reviewer agent's verdict is posted as a review on the forge, reaches the
    implementing agent, which pushes a fix; the reviewer runs again on the new head and
    approves; the PR merges. Killing and restarting the daemon on every other tick loses
    and repeats nothing."""
    plan_file = setup(env, review_plan(), require_review=True)
    assert run_ao("plan", "run", str(plan_file), "--project", "shop").code == 0
    store = Store()
    run_until(env, lambda: any(s.merged for s in store.sessions("shop")), timeout=150,
              restart_every=2)
    s = next(s for s in store.sessions("shop"))
    reviews = store.local_reviews("shop", s.pr_number or 0)
    verdicts = [(r["state"], r["sha"]) for r in reviews if r["state"] != "commented"]
    assert [v[0] for v in verdicts] == ["changes_requested", "approved"]
    assert verdicts[0][1] != verdicts[1][1]  # the second review is of the new head
    inline = [r for r in reviews if r["state"] == "commented"]
    assert [(r["path"], r["line"]) for r in inline] == [("mod_c.py", 1)]
    assert all("<!-- ao-review" in r["body"] for r in reviews if r["state"] != "commented")
    # the implementing agent got the comments once, and made the change
    msgs = [m for m in store.messages(s.id) if m["source"] == "changes-requested"]
    assert len(msgs) == 1 and "docstring" in msgs[0]["body"]
    assert '"""Three."""' in git(env.remote, "show", "main:mod_c.py")
    types = [e["type"] for e in event_types()]
    assert types.count("review.started") == 2 and types.count("review.posted") == 2
    # a crash after a review was posted and before it was recorded posts nothing twice: the
    # forge finds the run's marker
    from ao import config
    from ao.record.forge import AgentReview
    from ao.world.forge.local import LocalForge

    forge = LocalForge(config.load().project("shop"), store)
    first = next(r for r in reviews if "<!-- ao-review" in r["body"])
    marker = first["body"][first["body"].index("<!-- ao-review"):]
    pr = forge.find_pr(s.branch or "")
    assert pr is not None
    again = AgentReview("request_changes", "posted again?", (("mod_c.py", 1, "x"),), marker)
    assert forge.submit_review(pr, again, pr.head_sha) == "already posted"
    assert len(store.local_reviews("shop", s.pr_number or 0)) == len(reviews)
    # the reviewer's session and worktree are gone; it never committed or pushed
    assert not any(n.endswith("-review") for n in
                   git(env.repo, "worktree", "list").split())
    assert "C-1: add c" in git(env.remote, "log", "--format=%s", "main")


def test_an_approval_gate_holds_the_merge_until_a_human_approves(env: Env) -> None:
    plan = review_plan("approve")
    plan["tasks"]["C-1"]["body"] = plan["tasks"]["C-1"]["body"].replace(  # type: ignore[index]
        "1: request_changes mod_c.py:1 Please add a docstring to c().\n", "")
    plan_file = setup(env, plan)
    assert run_ao("plan", "run", str(plan_file), "--project", "shop").code == 0
    store = Store()

    def at_gate() -> bool:
        return any(s.step == "approve" for s in store.sessions("shop"))

    d = run_until(env, at_gate, timeout=120)
    s = next(iter(store.sessions("shop")))
    for _ in range(5):
        d.tick()
    s = store.session(s.id)
    assert s.state is State.PR_OPEN and not s.merged
    assert "ao approve" in (s.pr_gate or "")
    asked = [e for e in event_types() if e["type"] == "attention.approval-asked"]
    assert len(asked) == 1
    r = run_ao("approve", s.id, "--reject", "Where is the rollback plan?")
    assert r.code == 0 and "rejected" in r.out, r.err
    msgs = [m for m in store.messages(s.id) if m["source"] == "review"]
    assert len(msgs) == 1 and "rollback plan" in msgs[0]["body"]
    d.tick()
    assert not store.session(s.id).merged

    def new_head_at_gate(old: str | None) -> bool:
        now = store.session(s.id)
        return now.pr_head_sha != old and now.step == "approve"

    # the agent answers the rejection with a push: the new head is asked about again
    first = s.pr_head_sha
    d = run_until(env, lambda: new_head_at_gate(first), timeout=60)
    # an approval taken back by a rejection of the same head no longer counts
    assert run_ao("approve", s.id).code == 0
    assert run_ao("approve", s.id, "--reject", "On second thought: no.").code == 0
    assert not any(str(a["fingerprint"]).startswith("gate:approve:")
                   for a in store.attempts(s.id))
    second = store.session(s.id).pr_head_sha
    run_until(env, lambda: new_head_at_gate(second), timeout=60)
    r = run_ao("approve", s.id)
    assert r.code == 0 and "approved at" in r.out, r.err
    assert "already" in run_ao("approve", s.id).out
    run_until(env, lambda: store.session(s.id).merged, timeout=60)
    assert store.session(s.id).step == "merged"


def test_approve_refuses_a_task_without_the_gate(env: Env) -> None:
    plan_file = setup(env, {"tasks": {"C-1": {"title": "Add c", "body": demo("\n".join([
        write("mod_c.py", "def c():\n    return 3"), write("test_c.py", TEST_C),
        "commit C-1: add c", "push"]))}}}, auto_merge=False)
    assert run_ao("plan", "run", str(plan_file), "--project", "shop").code == 0
    store = Store()
    run_until(env, lambda: any(s.pr_number for s in store.sessions("shop")), timeout=60)
    s = next(iter(store.sessions("shop")))
    r = run_ao("approve", s.id)
    assert r.code == 2 and "has no approval gate" in r.err


def test_check_gates_follow_their_command_and_verdicts_are_checked() -> None:
    """A check's pass belongs to its command, not its place in the list: a check inserted
    before it later is not passed by it. A verdict's comment paths are cleaned first, then
    judged."""
    from ao.services.stepwork import parse_verdict

    lint = steps.parse(["implement", {"check": {"run": "make lint"}}], "t")
    both = steps.parse(["implement", {"check": {"run": "make scan"}},
                        {"check": {"run": "make lint"}}], "t")
    passed = frozenset(steps.gates(lint) - {"implement"})
    assert steps.gates(both) - passed == {steps.gate_id(both[1])}
    for bad in ('{"verdict": "approve", "comments": [{"path": ".\u0007./.\u0007./etc/passwd",'
                ' "body": "x"}]}',
                '{"verdict": "approve", "comments": [{"path": "a.py", "line": true, "body": "x"}]}',
                '{"verdict": "merge it"}'):
        with pytest.raises(ValueError):
            parse_verdict(bad)


def test_a_failing_check_step_goes_back_to_the_agent(env: Env,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_the_daemons_own_secret")
    body = demo("\n".join([write("mod_c.py", "def c():\n    return 3"),
                           write("test_c.py", TEST_C), "commit C-1: add c", "push"]))
    body += "\n```demo-on deploy-check\n" + "\n".join([
        write("DEPLOY.md", "rollback: git revert"), "commit C-1: deploy notes", "push"]) + \
        "\n```\n"
    plan = {"tasks": {"C-1": {"title": "Add c", "body": body, "steps": [
        "implement", {"check": {"run": 'test -z "$GITHUB_TOKEN" && '
                                "{ test -f DEPLOY.md || { echo no DEPLOY.md; exit 3; }; }",
                                "name": "deploy-check"}}]}}}
    plan_file = setup(env, plan)
    assert run_ao("plan", "run", str(plan_file), "--project", "shop").code == 0
    store = Store()
    run_until(env, lambda: any(s.merged for s in store.sessions("shop")), timeout=150)
    s = next(iter(store.sessions("shop")))
    failed = [m for m in store.messages(s.id) if m["source"] == "check-failed"]
    assert len(failed) == 1 and "no DEPLOY.md" in failed[0]["body"]
    evs = [e["type"] for e in event_types()]
    assert evs.count("check.failed") == 1 and evs.count("check.passed") == 1
    assert "rollback" in git(env.remote, "show", "main:DEPLOY.md")


def test_a_reviewer_on_github_reviews_through_the_reviews_api(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same reviewer loop against the fake GitHub: ao's token opened the PR, so GitHub
    refuses it a REQUEST_CHANGES or APPROVE on it (422); the verdicts arrive as COMMENT
    reviews on the PR, the request reaches the agent, and the PR merges after the approval."""
    import time

    from ao import config
    from ao.loop.daemon import Daemon
    from ao.world.forge.github import GitHubForge

    from .fake_github import serve
    from .test_daemon import github_ci

    with serve() as fake:
        repo = fake.add_repo("acme/shop", env.remote)
        fake.auto_ci = github_ci
        fake.add_issue(repo, "[C-1] Add c")
        setup(env, review_plan(), repo="acme/shop", forge="github")
        store = Store()
        cfg = config.load()
        store.put_task("shop", "C-1", "Add c", issue_number=1)
        gh = GitHubForge(cfg.project("shop"), store, "t0ken", base_url=fake.url,
                         sleep=lambda _s: None)
        store.ensure_project("shop", str(env.repo), "acme/shop")
        store.start_plan_run("shop", str(env.repo / "plans" / "run.yaml"))
        d = Daemon(cfg, store, env.server(), forges={"shop": gh})
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            d.tick()
            if any(s.merged for s in store.sessions("shop")):
                break
            time.sleep(0.1)
        else:
            raise AssertionError([(e["type"], e.get("data")) for e in event_types()][-30:])
        pr = next(iter(repo.pulls.values()))
        reviews = repo.reviews[pr["number"]]
        assert [r["state"] for r in reviews] == ["COMMENTED", "COMMENTED"]
        assert reviews[0]["body"].startswith("**Changes requested**")
        assert "Please add a docstring" in reviews[0]["body"]
        assert reviews[1]["body"].startswith("**Approved**")
        s = next(iter(store.sessions("shop")))
        msgs = [m for m in store.messages(s.id) if m["source"] == "changes-requested"]
        assert len(msgs) == 1 and "docstring" in msgs[0]["body"]
        assert '"""Three."""' in git(env.remote, "show", "main:mod_c.py")
