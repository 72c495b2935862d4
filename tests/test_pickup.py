"""GitHub as the plan: labelled issues are tasks, with the dependencies GitHub records
(pickup.py), against the fake GitHub server answering issues, labels, `blocked_by` and
`sub_issues` as GitHub documents them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ao import config, pickup
from ao.daemon import Daemon
from ao.forge.base import PickedIssue
from ao.state import State
from ao.store import Store

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
    d = Daemon(config.load(), store, env.server())

    def started() -> bool:
        d.tick()
        return any(s.task == str(a) and s.state is not State.QUEUED
                   for s in store.sessions("shop"))

    retry_until(started, timeout=30, interval=0.3, message=f"#{a} started")
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
