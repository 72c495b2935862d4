"""Main stays green (docs/reactions.md): after merges, CI runs on each new head of the
project's default branch; when it turns red, ao holds merges and new starts on that project,
names the merge that turned it red (redmain.py's bisection, CI on main's earlier merges), and
tells a person. When main is green again, merging and starting go on.

Only a turn to red is acted on: a main already failing before any green head was seen is
noted, never held against every start. The local forge runs main's CI itself; a forge that
does not (GitHub runs its own checks on main) is not watched here: `supports(forge)` says
which.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from ao.decide import redmain
from ao.record.events import Event, emit
from ao.services import redmain_act

if TYPE_CHECKING:
    from ao.config import ProjectConfig
    from ao.record.store import Store
    from ao.services.notify import Notifier


class WatchedForge(Protocol):
    def main_head(self) -> str | None: ...

    def main_ci(self, sha: str, start: bool = True) -> str: ...

    def first_parents(self, since: str, head: str) -> list[str]: ...

    def pr_of_merge(self, sha: str) -> tuple[int, str] | None: ...


def supports(forge: object) -> bool:
    return all(hasattr(forge, m) for m in ("main_head", "main_ci", "first_parents",
                                            "pr_of_merge"))


def watch(store: Store, project: ProjectConfig, forge: object,
          notifier: Notifier | None = None) -> str | None:
    """One look at main, at each tick: CI started on a new head, a turn to red or back to
    green recorded (an event each; a person told of red and of its culprit), the bisection
    moved on by one step. Returns why merges and starts wait, or None."""
    # the local forge watches main with the project's `ci:` command; GitHub with its checks
    if not supports(forge) or (project.forge == "local" and not project.ci_command):
        return None
    f: WatchedForge = forge  # type: ignore[assignment]
    head = f.main_head()
    if head is None:
        return None
    w = store.main_watch(project.name)
    before = dict(w)
    w["head"] = head
    status = f.main_ci(head)
    if status == redmain.PASSING:
        if w.get("red"):
            emit(Event("main.green", project.name, data={"sha": head, "was": w["red"]}),
                 store)
        w = {"head": head, "green": head}
    elif status in (redmain.FAILING, "error") and w.get("green"):
        _red(store, project, f, w, head, notifier)
    elif status in (redmain.FAILING, "error"):
        # red before any green head was seen: not something a merge of ours did, and holding
        # every start for it would stop a project whose main was already failing
        w["red_from_start"] = head
    if w != before:
        store.ensure_project(project.name, str(project.path), project.repo)
        store.set_main_watch(project.name, w)
    return redmain.red_reason(w)


def _red(store: Store, project: ProjectConfig, f: WatchedForge, w: dict[str, Any], head: str,
         notifier: Notifier | None) -> None:
    if not w.get("red"):
        w.update(red=head, since=time.time())
        event = emit(Event("main.red", project.name, data={"sha": head,
                                                           "last_green": w.get("green")}),
                     store)
        if notifier is not None:
            notifier.notify(event, f"{project.name}: main is red",
                            f"CI fails on {project.default_branch} at {head[:10]}; merges and "
                            "new starts wait until it is green")
    w["red"] = head
    if w.get("culprit"):  # named already: what the project does about it
        redmain_act.act(store, project, f, w, notifier)  # type: ignore[arg-type]
        return
    merges = f.first_parents(str(w["green"]), head)
    # a run that errored (a timeout, a crash) counts as red: the bisection never waits on it
    verdicts = {m: redmain.FAILING if v == "error" else v for m in merges
                if (v := f.main_ci(m, start=False)) != "none"}
    if not getattr(f, "runs_ci_on_demand", True):  # GitHub: only what its checks ran on
        merges = [m for m in merges if m in verdicts or m == head]
    verdicts[head] = redmain.FAILING
    step = redmain.bisect(merges, verdicts)
    if step.run is not None:
        f.main_ci(step.run)  # its verdict is read at a later tick
        return
    if step.culprit is None:
        return
    pr = f.pr_of_merge(step.culprit)
    w["culprit"] = step.culprit
    # the merges before it since green: the other half of a semantic conflict
    w["involved"] = [list(p) for m in merges[:merges.index(step.culprit)]
                     if (p := f.pr_of_merge(m)) is not None][-5:]
    if pr is not None:
        w["culprit_pr"], w["culprit_branch"] = pr
    event = emit(Event("main.culprit", project.name, data={
        "sha": step.culprit, "pr": pr[0] if pr else None, "branch": pr[1] if pr else None,
        "merges_since_green": len(merges),
        # CI runs on earlier commits the bisection needed (the red head's own aside)
        "ci_runs": sum(1 for m in merges[:-1] if m in verdicts)}), store)
    if notifier is not None:
        what = f"PR #{pr[0]} ({pr[1]})" if pr else step.culprit[:10]
        notifier.notify(event, f"{project.name}: main turned red with {what}",
                        f"CI passes before {what} merged and fails after it; merges wait")
    redmain_act.act(store, project, f, w, notifier)  # type: ignore[arg-type]
