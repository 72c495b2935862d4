"""The local forge's merge queue (`merge: queue`, docs/reactions.md "Merge train"): a PR that
passed the whole gate is queued, not merged, and reaches main only after CI passed on the
result of merging it onto main as it is (and onto the PRs queued ahead of it).

The queue advances as a merge train, at each tick (`serve`): up to `BATCH` queued PRs are
merged one onto the other from main's head (the train's commits, kept under the forge's
refs), and CI runs on the last. Green: main fast-forwards to it, and every PR in it is merged
at once. Red: the train is bisected (CI on the commit halfway), so the PR that breaks it is
found in about log2(n) runs; green halves ahead of it merge as soon as they pass, and the PR
that fails alone is removed from the queue with its train commit, whose failing CI reaches
its agent as a fix round (loop/actions.py). A queued PR that conflicts with main is removed
(its agent is asked to rebase, as for any conflict); one that conflicts only with a PR ahead
waits for the next train. A head pushed after queueing leaves the queue (the new head is
gated and queued again), in a train too. While main is red for a reason of its own the train
waits (each PR would fail alone, charged for a break not its own), and the red main's revert
or fix merges straight in. The train is kept in the store: a restarted daemon goes on.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ao.record.forge import Enqueued, FailureDetail, PullRequest, QueueRemoval
from ao.sanitize import for_terminal
from ao.world import workspace

if TYPE_CHECKING:
    from ao.world.forge.local import LocalForge

BATCH = 8  # PRs in one train at most


@dataclass(frozen=True)
class Step:
    kind: str  # wait | merge | remove | test
    count: int = 0  # merge: the first `count` members; test: CI on member count - 1


def step(tested: int, verdict: str) -> Step:
    """What a train does on the verdict of CI on its first `tested` members. Pure."""
    if verdict == "passing":
        return Step("merge", tested)
    if verdict in ("failing", "error"):
        return Step("remove", 1) if tested == 1 else Step("test", max(1, tested // 2))
    return Step("wait")


def queue_of(row: dict[str, Any], sha: str) -> str | None:
    """A local PR's queue state for its head `sha`: queued, or None."""
    return "queued" if row.get("queued_sha") and row["queued_sha"] == sha \
        and not row.get("removed") else None


def enqueue(forge: LocalForge, pr: PullRequest, sha: str) -> Enqueued:
    name = forge.project.name
    row = forge.store.local_pr(name, pr.head_branch)
    if row is not None and queue_of(row, sha):
        return Enqueued(pr.number, "queued", None)  # never twice
    forge.store.set_local_pr(name, pr.number, queued_sha=sha, queued_at=time.time(),
                             removed=None)
    position = sum(1 for r in forge.store.local_prs(name)
                   if r["state"] == "open" and queue_of(r, str(r["queued_sha"] or "")))
    return Enqueued(pr.number, "queued", position)


def removal(forge: LocalForge, pr: PullRequest) -> QueueRemoval | None:
    row = forge.store.local_pr(forge.project.name, pr.head_branch)
    if row is None or not row.get("removed"):
        return None
    why = json.loads(str(row["removed"]))
    return QueueRemoval(str(why.get("reason")), why.get("group"), float(why.get("at") or 0))


def group_failures(forge: LocalForge, gone: QueueRemoval) -> list[FailureDetail]:
    return forge.details_at(gone.group_sha) if gone.group_sha else []


def advance(forge: LocalForge) -> None:
    """One step of the project's train (the daemon's tick, through `serve`)."""
    store, name, main = forge.store, forge.project.name, forge.project.default_branch
    heads = forge._refresh(max_age=2.0)
    base = heads.get(main)
    train = store.train(name)
    if base is None or store.main_watch(name).get("red"):
        # main red for a reason of its own: each PR would fail alone and be charged a fix
        # round for it; the train waits (the red main's revert or fix merges straight in)
        return
    if train.get("base") != base:  # main moved under the train (or none yet): a new one
        train = _build(forge, base, heads)
    if not train:
        store.set_train(name, None)
        return
    members, tested = train["members"], int(train["tested"])
    gone = [m for m in members[:tested] if heads.get(str(m.get("branch"))) != m["head"]
            or (row := store.local_pr(name, str(m.get("branch")))) is None
            or row["state"] != "open"]
    if gone:  # pushed again (or closed) since the train was built: rebuilt without it
        for m in gone:
            _remove(forge, int(m["number"]), "head_moved", None)
        store.set_train(name, None)
        return
    tip = str(members[tested - 1]["group"])
    forge._run_ci(main, tip)  # once per commit
    row = store.local_ci(name, tip)
    decided = step(tested, str(row["status"]) if row else "pending")
    if decided.kind == "merge":
        _land(forge, base, members[:decided.count])
        train = {}
    elif decided.kind == "remove":
        first = members[0]
        _remove(forge, int(first["number"]), "failed_checks", str(first["group"]))
        train = {}
    elif decided.kind == "test":
        train["tested"] = decided.count
    store.set_train(name, train or None)


def _build(forge: LocalForge, base: str, heads: dict[str, str]) -> dict[str, Any]:
    """A new train from main's head: the queued PRs in order, each merged onto the one
    before it."""
    name = forge.project.name
    queued = sorted((r for r in forge.store.local_prs(name) if r["state"] == "open"
                     and queue_of(r, str(r["queued_sha"] or ""))),
                    key=lambda r: float(r["queued_at"] or 0))
    members: list[dict[str, Any]] = []
    parent = base
    for r in queued:
        if len(members) >= BATCH:
            break
        head = str(r["queued_sha"])
        if heads.get(str(r["branch"])) != head:
            _remove(forge, int(r["number"]), "head_moved", None)
            continue
        clean, tree = forge._merge_tree(parent, head)
        if not clean:
            if parent == base:  # it conflicts with main itself: its agent must rebase
                _remove(forge, int(r["number"]), "merge_conflict", None)
            continue  # else only with a PR ahead: it waits for the next train
        group = workspace.git(forge.repo, "commit-tree", tree, "-p", parent, "-p", head, "-m",
                              f"Merge pull request #{r['number']} from {r['branch']}\n\n"
                              f"{for_terminal(str(r['title']))[:200]}").stdout.strip()
        # kept under the forge's refs: CI checks it out, and gc never takes it
        workspace.git(forge.repo, "update-ref", f"{forge.ns}/train/{r['number']}", group)
        members.append({"number": int(r["number"]), "head": head, "group": group,
                        "branch": str(r["branch"])})
        parent = group
    return {"base": base, "members": members, "tested": len(members)} if members else {}


def _land(forge: LocalForge, base: str, members: list[dict[str, Any]]) -> None:
    """Main fast-forwarded to the last member's train commit: every member merged at once.
    Refused (main moved), nothing is recorded and the next train starts from the new main."""
    tip = str(members[-1]["group"])
    push = workspace.git(forge.repo, "push", "-q", forge.project.remote,
                         f"{tip}:refs/heads/{forge.project.default_branch}", check=False)
    if push.returncode != 0:
        return
    for m in members:
        forge.store.set_local_pr(forge.project.name, int(m["number"]), state="merged",
                                 merged_sha=str(m["group"]), queued_sha=None)
    forge._refresh()  # the pushed main, read before the next look


def _remove(forge: LocalForge, number: int, reason: str, group: str | None) -> None:
    forge.store.set_local_pr(forge.project.name, number, removed=json.dumps(
        {"reason": reason, "group": group, "at": time.time()}))
