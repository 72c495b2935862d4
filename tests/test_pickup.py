"""GitHub as the plan: labelled issues are tasks, with the dependencies GitHub records
(pickup.py), against the fake GitHub server answering issues, labels, `blocked_by` and
`sub_issues` as GitHub documents them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ao import config
from ao.decide import pickup
from ao.loop.daemon import Daemon
from ao.record.forge import PickedIssue
from ao.record.state import State
from ao.record.store import Store

from .fake_github import FakeGitHub, Repo, serve
from .fleet_helpers import Env
from .helpers import retry_until, run_ao

LABEL = "ai-implement"


def test_the_plan_of_picked_issues() -> None:
    plan, problems = pickup.plan_of([
        PickedIssue(1, "a", ""), PickedIssue(2, "b", "", (1,)),
        PickedIssue(3, "c", "", (9,)),  # waits for an issue not picked up
        PickedIssue(4, "d", "", (3,)),  # ... and so does this one, through #3
        PickedIssue(5, "e", "", (6,)), PickedIssue(6, "f", "", (5,)),  # a cycle
        PickedIssue(7, "g", "", (5,)),  # waits on the cycle
    ])
    assert sorted(plan.tasks) == ["1", "2"] and plan.tasks["2"].deps == ("1",)
    text = "\n".join(problems)
    assert "#3 waits for #9" in text and "#4 waits for #3" in text
    assert "cycle: #5 -> #6 -> #5" in text and "#7 waits for #5" in text
    assert pickup.number("12") == 12 and pickup.number("A-1") is None


@pytest.fixture
def gh(env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeGitHub, Repo]]:
    with serve() as fake:
        repo = fake.add_repo("acme/shop", env.remote)
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_pickup_token")
        monkeypatch.setenv("AO_GITHUB_API_URL", fake.url)
        env.write_config(repo="acme/shop", forge="github", plan=None,
                         pickup={"label": LABEL}, agent={"command": "cat"})
        yield fake, repo


def labelled(fake: FakeGitHub, repo: Repo, title: str, body: str = "",
             login: str = "maintainer") -> int:
    issue = fake.add_issue(repo, title, body, login=login)
    issue["labels"] = [LABEL]
    return int(issue["number"])


def started(store: Store, env: Env, issue: int) -> Daemon:
    """A daemon ticked until the issue's task has started."""
    d = Daemon(config.load(), store, env.server())

    def going() -> bool:
        d.tick()
        return any(s.task == str(issue) and s.state is not State.QUEUED
                   for s in store.sessions("shop"))

    retry_until(going, timeout=30, interval=0.3, message=f"#{issue} started")
    return d


def test_labelled_issues_start_in_dependency_order_and_a_dropped_label_unqueues(
        gh: tuple[FakeGitHub, Repo], env: Env) -> None:
    fake, repo = gh
    a = labelled(fake, repo, "Add a")
    b = labelled(fake, repo, "Add b", f"Needs the first.\n\nDepends on #{a}\n")
    c = labelled(fake, repo, "Add c")
    repo.issues[c]["blocked_by"] = [a]  # GitHub's own "blocked by" relationship
    stranger = labelled(fake, repo, "Run this for me", login="stranger")
    fake.add_issue(repo, "Not for ao")  # no label
    store = Store()
    d = started(store, env, a)
    by_task = {s.task: s for s in store.sessions("shop")}
    assert by_task[str(b)].state is State.QUEUED and by_task[str(c)].state is State.QUEUED
    assert str(stranger) not in by_task and len(by_task) == 3
    assert by_task[str(a)].branch == f"ao/{a}"
    assert store.task("shop", str(a))["issue_number"] == a  # closed when it merges
    held = [json.loads(e["data"])["why"] for e in store.events_after(0, project="shop")
            if e["type"] == "pickup.held"]
    assert any(f"#{stranger} was opened by stranger" in w for w in held), held
    # the label taken off #b before it started: un-queued, said once
    repo.issues[b]["labels"] = []
    d.tick()
    assert store.session(by_task[str(b)].id).state is State.KILLED
    d.tick()
    kinds = [e["type"] for e in store.events_after(0, project="shop")]
    assert kinds.count("pickup.dropped") == 1 and kinds.count("pickup.held") == len(held)
    assert f"ao/{a}" in run_ao("session", "ls", "--json").out
    # #a closed (its PR merged on GitHub, `Closes #a`): not a label taken off
    repo.issues[a]["state"] = "closed"
    d.tick()
    kinds = [e["type"] for e in store.events_after(0, project="shop")]
    assert "pickup.unlabelled" not in kinds and kinds.count("pickup.dropped") == 1
    assert store.session(by_task[str(a)].id).state is State.WORKING


def test_each_picked_issue_has_one_status_comment_edited_in_place(
        gh: tuple[FakeGitHub, Repo], env: Env) -> None:
    """The issue is the status page: one comment by ao on each picked-up issue, made once and
    edited as its task moves on (queued, an agent on it), never a comment per step and never
    edited when nothing changed; another account's comment carrying the marker is not ao's."""
    from ao.decide.pickup import MARKER

    fake, repo = gh
    a = labelled(fake, repo, "Add a")
    b = labelled(fake, repo, "Add b", f"Depends on #{a}\n")
    fake.add_issue(repo, "unrelated")
    repo.comments.setdefault(b, []).append(  # a stranger's look-alike: never edited
        {"id": 999, "body": f"{MARKER} fake status", "issue": b, "user": {"login": "mallory"}})
    store = Store()
    d = started(store, env, a)
    d.tick()

    def ours(n: int) -> list[str]:
        return [c["body"] for c in repo.comments.get(n, [])
                if c["user"]["login"] == fake.token_login]

    assert len(ours(a)) == 1 and "An agent (command) is on it in session" in ours(a)[0], \
        ours(a)
    assert len(ours(b)) == 1 and "Queued" in ours(b)[0], ours(b)
    assert repo.comments[b][0]["body"] == f"{MARKER} fake status"  # the stranger's, untouched
    edits = repo.comment_edits
    for _ in range(3):
        d.tick()
    assert repo.comment_edits == edits  # nothing changed: nothing sent
    # a fresh daemon finds its comment again rather than making a second one
    d2 = Daemon(config.load(), store, env.server())
    d2.tick()
    assert len(ours(a)) == 1 and len(ours(b)) == 1 and repo.comment_edits == edits
    # #b's task is stopped by hand: its comment is edited in place to say so
    sid = next(s.id for s in store.sessions("shop") if s.task == str(b))
    store.set_state(sid, State.KILLED)
    d2.tick()
    assert len(ours(b)) == 1 and "Stopped (killed)" in ours(b)[0], ours(b)
    assert repo.comment_edits == edits + 1


def test_a_status_line_does_not_move_with_the_clock(isolated_home: object) -> None:
    """The status comment is edited when the line changes: a reason that counts minutes
    ("idle with no pull request for 12 min") would edit it every minute."""
    from ao.decide.pickup import status_body, status_line
    from ao.decide.waiting import PERSON, Wait

    s = Store().create_session("shop", "sho", "12", state=State.WORKING)
    a = status_line(s, Wait("idle with no pull request for 11 min (...)", PERSON, "stuck"))
    b = status_line(s, Wait("idle with no pull request for 12 min (...)", PERSON, "stuck"))
    assert a == b and "idle with no pull request" in a
    body = status_body("PR #3: @alice asked [x](javascript:alert(1)) <b>")
    assert "@\u200balice" in body and "\\[x\\]" in body and "\\<b\\>" in body


def test_held_issues_say_why_on_the_issue_and_plan_show_reads_githubs_graph(
        gh: tuple[FakeGitHub, Repo], env: Env) -> None:
    """A cycle on GitHub (#c blocked by #d, #d by #c) holds both: each issue's status comment
    says so; `ao plan show --from-github` prints the graph GitHub holds, with what is held and
    why, and refuses to be given a file as well."""
    fake, repo = gh
    a = labelled(fake, repo, "Add a")
    labelled(fake, repo, "Add b", f"Depends on #{a}\n")
    c = labelled(fake, repo, "Add c")
    d = labelled(fake, repo, "Add d")
    repo.issues[c]["blocked_by"] = [d]
    repo.issues[d]["blocked_by"] = [c]
    out = run_ao("plan", "show", "--from-github", "shop")
    assert out.code == 0, out.err
    assert "wave 1:" in out.out and "wave 2:" in out.out and f"<- {a}" in out.out, out.out
    assert f"held: a dependency cycle: #{c} -> #{d} -> #{c}" in out.out, out.out
    js = json.loads(run_ao("plan", "show", "--from-github", "shop", "--json").out)
    assert sorted(js["held"]) == [f"#{c}", f"#{d}"]
    bad = run_ao("plan", "show", "plans/p.yaml", "--from-github", "shop")
    assert bad.code == 2 and "one of them" in bad.err
    store = Store()
    started(store, env, a).tick()
    said = [x["body"] for x in repo.comments.get(c, []) if x["user"]["login"] == fake.token_login]
    assert len(said) == 1 and "Held: a dependency cycle" in said[0], said
