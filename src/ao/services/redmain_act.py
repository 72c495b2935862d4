"""What ao does once the merge that turned main red is named (mainwatch.py), per the project's
`on_red_main` (docs/reactions.md "Main stays green"): `pause` (nothing more: merges and starts
wait for a person), `revert` or `fix`.

`revert`: ao opens a PR that reverts the culprit on top of main's head, follows it like any PR
(the forge's CI runs on it), and merges it when its checks pass and it merges cleanly, if the
project auto-merges; a person is told at each step. It is the one merge a red main lets
through.

`fix`: ao records a fix task (`FIX-MAIN-<PR>`) whose prompt holds main's failing checks, the
culprit PR and the PRs merged before it since main was green (the other half of a semantic
conflict); the daemon starts it at once, red main or not, and its PR is the one that may merge
onto the red main (its gate, reviews included, still holds).

The revert needs no review: it takes main back towards a tree that was reviewed and green,
and a person chose `revert` for exactly this. It is made in a throwaway worktree of the
project's clone (`git revert`, `-m 1` for a merge commit), never in a session's worktree.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ao import paths
from ao.decide import compose
from ao.decide.gate import merge_gate
from ao.decide.reactions import Policy
from ao.errors import AoError, ExternalError
from ao.record.events import Event, emit
from ao.record.forge import FAILING, Enqueued, FailureDetail
from ao.sanitize import for_terminal
from ao.world import remotes, workspace

if TYPE_CHECKING:
    from ao.config import ProjectConfig
    from ao.record.forge import Forge
    from ao.record.store import Store
    from ao.services.notify import Notifier

log = logging.getLogger(__name__)

def branch_for(culprit: str) -> str:
    return f"ao/revert-{culprit[:10]}"


def act(store: Store, project: ProjectConfig, forge: Forge, w: dict[str, Any],
        notifier: Notifier | None) -> None:
    """One step of the revert, at each tick while main is red and its culprit named: open the
    revert PR once, then start its CI and merge it when the gate allows. `w` (main's watch)
    keeps where it is, so a restarted daemon goes on where this one stopped."""
    if project.on_red_main == "fix" and w.get("culprit") and not w.get("fix_task"):
        _fix_task(store, project, forge, w, notifier)
        return
    if project.on_red_main != "revert" or not w.get("culprit") or w.get("revert_failed"):
        return
    if not w.get("revert_pr"):
        _open(store, project, forge, w, notifier)
        return
    branch = str(w["revert_branch"])
    pr = forge.poll([branch]).prs.get(branch)
    if pr is None or pr.state != "open":
        return  # merged (main's CI says the rest) or closed by a person: theirs to say
    forge.serve({branch: pr})  # the local forge's CI on its head
    # the project's gate, less the review (see above); checks are always required here
    gate = replace(Policy.for_project(project).gate, require_review=False, require_checks=True)
    verdict = merge_gate(pr, gate, expected_sha=pr.head_sha)
    if not verdict and pr.mergeable == "conflicting":  # main moved on since it was made
        w["revert_failed"] = f"the revert PR #{pr.number} conflicts with {project.default_branch}"
        _tell(store, project, notifier, "main.revert_failed", {"pr": pr.number,
                                                               "error": w["revert_failed"]},
              w["revert_failed"], "main stays red and merges wait; a person must fix main")
        return
    def once(kind: str, title: str, body: str) -> None:
        """Said once a head of the revert PR and a kind of news."""
        if w.get("revert_told") != f"{kind}:{pr.head_sha}":
            w["revert_told"] = f"{kind}:{pr.head_sha}"
            _tell(store, project, notifier, f"main.revert_{kind}", {"pr": pr.number},
                  f"the revert PR #{pr.number} {title}", body)

    if not verdict:
        if pr.checks.overall == FAILING:
            once("failing", "fails CI too", "main stays red and merges wait; a person must "
                 "fix main")
        return
    if not project.auto_merge:
        once("ready", "is green", "merge it to make main green (the project does not "
             "auto-merge)")
        return
    if pr.queue is not None:
        return  # in the forge's merge queue: it merges from there
    try:
        sha = forge.merge(pr, pr.head_sha)
    except Enqueued:  # the branch requires a merge queue: it merges from there
        once("queued", "is in the merge queue", "it merges once the queue's checks pass on it")
        return
    w["reverted"] = sha
    emit(Event("main.reverted", project.name, data={"pr": pr.number, "sha": sha,
                                                    "culprit": w["culprit"]}), store)


def fix_task(w: dict[str, Any]) -> str | None:
    """The task that fixes the red main (`on_red_main: fix`), when there is one: it starts, and
    its PR merges, while everything else waits."""
    return str(w["fix_task"]) if w.get("fix_task") else None


def _fix_task(store: Store, project: ProjectConfig, forge: Forge, w: dict[str, Any],
              notifier: Notifier | None) -> None:
    culprit = str(w["culprit"])
    what = f"PR #{w['culprit_pr']}" if w.get("culprit_pr") else culprit[:10]
    key = f"FIX-MAIN-{w.get('culprit_pr') or culprit[:7]}".upper()
    details: list[FailureDetail] = getattr(forge, "details_at", lambda sha: [])(
        str(w.get("head") or w["red"]))
    involved = ", ".join(f"PR #{n} ({for_terminal(b)})" for n, b in w.get("involved") or [])
    body = "\n".join([
        f"Main ({project.default_branch}) turned red when {what} "
        f"({for_terminal(str(w.get('culprit_branch') or culprit[:10]))}) merged: CI passes "
        "before that merge and fails after it.",
        f"Merged before it since main was last green: {involved}." if involved else "",
        "Those are each green alone; together they break main (a semantic conflict). Make "
        f"main green again on a branch from {project.default_branch}: fix what breaks, keep "
        "what both changes meant to do, run the tests, commit and push. Merges and new starts "
        "wait for your PR.", "", compose.ci_fix(1, 1, str(w["red"]), details).split("\n", 1)[-1]])
    store.ensure_project(project.name, str(project.path), project.repo)
    store.put_task(project.name, key, f"Make {project.default_branch} green again after {what}",
                   body=body, deps=())
    w["fix_task"] = key
    _tell(store, project, notifier, "main.fix_task", {"task": key},
          f"ao starts {key} to fix main", f"main turned red with {what}; the fix task's PR is "
          "the one merge a red main lets through")


def _open(store: Store, project: ProjectConfig, forge: Forge, w: dict[str, Any],
          notifier: Notifier | None) -> None:
    culprit, head = str(w["culprit"]), str(w.get("head") or w["red"])  # main as it is now
    branch = branch_for(culprit)
    what = f"PR #{w['culprit_pr']}" if w.get("culprit_pr") else culprit[:10]
    try:
        if not remotes.remote_branch_exists(project.path, project.remote, branch):
            _push_revert(project, culprit, head, branch, what)
        forge.poll([branch])  # the forge reads the pushed branch before it opens its PR
        pr = forge.create_pr(branch, f"Revert {what}",
                             f"main turned red with {what} ({culprit}); this reverts it "
                             f"(ao, on_red_main: revert).")
    except AoError as e:
        w["revert_failed"] = str(e)
        _tell(store, project, notifier, "main.revert_failed", {"error": str(e)},
              f"ao could not revert {what}", f"{for_terminal(str(e))[:200]}; main stays "
              "red and merges wait: a person must fix main")
        return
    w.update(revert_pr=pr.number, revert_branch=branch)
    _tell(store, project, notifier, "main.revert_opened", {"pr": pr.number, "branch": branch},
          f"ao opened PR #{pr.number} to revert {what}",
          "it merges once its CI passes" if project.auto_merge else
          "merge it once its CI passes (the project does not auto-merge)")


def _push_revert(project: ProjectConfig, culprit: str, head: str, branch: str,
                 what: str) -> None:
    """The revert commit on top of `head`, pushed as `branch`, from a throwaway worktree."""
    repo = project.path
    remotes.fetch_retrying(repo, "-q", "--no-tags", project.remote,
                             project.default_branch, timeout=120)
    tmp = paths.home() / "forge" / project.name / f"revert-{culprit[:10]}"
    if tmp.exists():  # a try cut short
        workspace.git(repo, "worktree", "remove", "--force", str(tmp), check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    paths.ensure_dir(tmp.parent)
    workspace.git(repo, "worktree", "add", "-q", "--detach", str(tmp), head)
    try:
        parents = workspace.git(tmp, "rev-list", "--parents", "-n", "1",
                                culprit).stdout.split()[1:]
        mainline = ["-m", "1"] if len(parents) > 1 else []
        proc = workspace.git(tmp, "revert", "--no-edit", *mainline, culprit, check=False)
        if proc.returncode != 0:
            said = (proc.stderr or proc.stdout).strip().splitlines()
            why = "conflicts with what merged after it" if "conflict" in \
                (proc.stdout + proc.stderr).lower() else f"failed: {said[-1] if said else '?'}"
            raise ExternalError(f"reverting {what} {why}", "a person must fix main")
        workspace.git(tmp, "push", "-q", project.remote, f"HEAD:refs/heads/{branch}")
    finally:
        workspace.git(repo, "worktree", "remove", "--force", str(tmp), check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def _tell(store: Store, project: ProjectConfig, notifier: Notifier | None, kind: str,
          data: dict[str, Any], title: str, body: str) -> None:
    event = emit(Event(kind, project.name, data=data), store)
    if notifier is not None:
        notifier.notify(event, f"{project.name}: {title}", body)
