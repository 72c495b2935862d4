"""`ao demo`: the whole loop, offline, in one command.

It makes a small real project (a Python package with tests, a bare git remote, a plan of five
tasks in which two parallel branches join) and runs the daemon on it with the demo agent and
the local forge, telling the story as it happens: waves, spawns, PRs, a CI failure and its
fix, a reviewer agent asking for a change and the agent addressing it, a merge conflict
between the two parallel tasks and the rebase, an approval gate, merges, dependents starting,
cleanup, and a summary.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from ao import config as cfgmod
from ao import paths
from ao.loop.daemon import Daemon
from ao.record.events import Event, add_listener
from ao.record.state import State
from ao.record.store import Store
from ao.world import tmux, workspace
from ao.world.forge.local import LocalForge

PROJECT = "demo"

OPS = '''"""Arithmetic for the demo project."""


def add(a, b):
    return a + b
'''
TEST_OPS = '''import unittest

from calc import ops


class TestAdd(unittest.TestCase):
    def test_add(self):
        self.assertEqual(ops.add(2, 3), 5)
'''
CHANGELOG = "# Changelog\n\n- add\n"


def _script(*steps: str) -> str:
    return "```demo\n" + "\n".join(steps) + "\n```"


def _on(keyword: str, *steps: str) -> str:
    return f"```demo-on {keyword}\n" + "\n".join(steps) + "\n```"


def _write(path: str, text: str) -> str:
    return f"write {path}\n{text.rstrip()}\nEOF"


def _append(path: str, text: str) -> str:
    return f"append {path}\n{text.rstrip()}\nEOF"


def _test(name: str, call: str, want: str) -> str:
    return (f"import unittest\n\nfrom calc import ops\n\n\nclass Test{name.title()}"
            f"(unittest.TestCase):\n    def test_{name}(self):\n"
            f"        self.assertEqual(ops.{call}, {want})")


# the agents' scripts: what each "agent" does on its first prompt and on later messages
PLAN: dict[str, Any] = {"project": PROJECT, "tasks": {
    "CORE-1": {"title": "Add subtraction", "estimate": "1d", "body": _script(
        _append("calc/ops.py", "\n\ndef sub(a, b):\n    return a - b"),
        _write("tests/test_sub.py", _test("sub", "sub(5, 3)", "2")),
        "commit CORE-1: subtraction", "push")},
    "CORE-2": {"title": "Add multiplication", "deps": ["CORE-1"], "estimate": "2d",
               "body": _script(
                   _append("calc/ops.py", "\n\ndef mul(a, b):\n    return a * b + 1"),
                   _write("tests/test_mul.py", _test("mul", "mul(3, 4)", "12")),
                   _append("CHANGELOG.md", "- multiplication"),
                   "commit CORE-2: multiplication", "push")
               + "\n" + _on("CI failed", "replace calc/ops.py return a * b + 1 => return a * b",
                             "commit CORE-2: fix mul", "push")
               + "\n" + _on("conflicts", "rebase", "push")},
    "DOCS-1": {"title": "Document the API", "deps": ["CORE-1"], "estimate": "1d",
               "body": _script(
                   _write("docs/api.md", "# API\n\n- add(a, b)\n- sub(a, b)"),
                   _append("CHANGELOG.md", "- API documentation"),
                   "commit DOCS-1: API docs", "push")
               + "\n" + _on("Review feedback", _append("docs/api.md", "\nExample: add(2, 3) == 5"),
                             "commit DOCS-1: an example, as asked", "push")
               + "\n" + _on("conflicts", "rebase", "push")
               # the reviewer agent's verdicts, round by round (docs/steps.md)
               + "\n```demo-review\n"
               "1: request_changes docs/api.md:3 Please add a usage example.\n"
               "2: approve The example makes it clear.\n```",
               "steps": ["implement", "review"]},
    "CLI-1": {"title": "Add a command line", "deps": ["CORE-2", "DOCS-1"], "estimate": "1d",
              "body": _script(
                  _write("calc/__main__.py", "import sys\n\nfrom calc import ops\n\n"
                         "print(ops.add(int(sys.argv[1]), int(sys.argv[2])))"),
                  "commit CLI-1: python -m calc A B", "push")},
    "REL-1": {"title": "Release notes", "deps": ["CLI-1"], "estimate": "1d",
              "body": _script(_append("CHANGELOG.md", "- command line"),
                              "commit REL-1: release notes", "push"),
              "steps": ["implement", "approve"]},  # a human approves the release
}}


def _git(cwd: Path, *args: str) -> None:
    workspace.git(cwd, *args)


def make_project(root: Path) -> Path:
    """The demo repository and its bare remote, fresh."""
    if root.exists():
        shutil.rmtree(root)
    work, bare = root / "calc", root / "remote.git"
    (work / "calc").mkdir(parents=True)
    (work / "tests").mkdir()
    (work / "plans").mkdir()
    (work / "calc" / "__init__.py").write_text("")
    (work / "calc" / "ops.py").write_text(OPS)
    (work / "tests" / "__init__.py").write_text("")
    (work / "tests" / "test_add.py").write_text(TEST_OPS)
    (work / "CHANGELOG.md").write_text(CHANGELOG)
    (work / "plans" / "demo.yaml").write_text(json.dumps(PLAN, indent=2))
    (work / "agent-orchestrator.yaml").write_text(json.dumps({
        "poll_interval": "0.5s",
        "cleanup": {"grace": "1s"},
        "projects": {PROJECT: {
            "path": ".", "agent": "demo", "forge": "local", "max_concurrent": 3,
            "auto_merge": True, "require_review": False, "plan": "plans/demo.yaml",
            "ci": {"command": f"{sys.executable} -m unittest discover -q", "timeout": "60s"},
        }}}, indent=2))
    (work / ".gitignore").write_text("__pycache__/\n")
    _git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    _git(root, "init", "-q", "-b", "main", str(work))
    for k, v in (("user.name", "ao demo"), ("user.email", "demo@example.invalid")):
        _git(work, "config", k, v)
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "calc: add")
    _git(work, "remote", "add", "origin", str(bare))
    _git(work, "push", "-q", "-u", "origin", "main")
    return work


STORY: dict[str, Callable[[Event], str]] = {
    "wave.started": lambda e: f"▶ starting {', '.join(e.data['tasks'])} "
                              "(everything they depend on has merged)",
    "session.spawned": lambda e: f"  {e.session} {e.task}: agent spawned on {e.data['branch']}",
    "session.pr_open": lambda e: f"  {e.session} {e.task}: pushed, {e.data['reason']} opened",
    "ci.failed": lambda e: f"  ✗ {e.session} {e.task}: CI failed (fix round "
                           f"{e.data['round']} of 3); the failure goes to the agent",
    "review.started": lambda e: f"  {e.session}-review: a reviewer agent reads {e.task}'s PR "
                                f"(round {e.data['round']})",
    "review.posted": lambda e: f"  reviewer on {e.task}: "
                               f"{e.data['verdict'].replace('_', ' ')}",
    "attention.approval-asked": lambda e: f"  ⏸ {e.session} {e.task}: green, waits for a "
                                          f"human's approval (ao approve {e.session})",
    "gate.approved": lambda e: f"  ✓ {e.session} {e.task}: approved by {e.data['by']}",
    "review.forwarded": lambda e: f"  → {e.session} {e.task}: review comments sent to the agent",
    "pr.conflict": lambda e: f"  ⚠ {e.session} {e.task}: conflicts with main; agent asked to "
                             "rebase",
    "message.delivered": lambda e: f"  → {e.session}: {e.data['source']} message delivered"
    if e.data.get("source") not in ("prompt", None) else "",
    "pr.merged_by_ao": lambda e: f"  ✓ {e.session} {e.task}: its merge gate passed, merged",
    "session.cleaned": lambda e: f"  {e.session} {e.task}: cleaned up "
                                 f"(worktree {e.data['worktree']})",
    "all-complete": lambda e: f"■ plan complete: {e.data['merged']} of {e.data['tasks']} tasks "
                              f"merged, {sum(e.data['fix_rounds'].values())} CI fix round(s), "
                              f"{e.data['escalations']} escalation(s)",
    "escalated": lambda e: f"  ! {e.session} {e.task}: needs a human: {e.data['reason']}",
}


def forget(store: Store, srv: Any) -> None:
    """A previous demo's sessions and records go, so this run starts from nothing."""
    for s in store.sessions(PROJECT):
        tmux.kill_session(srv, s.id)
    store.forget_project(PROJECT)
    # its sessions' folders too: the ids start again at dem-1, and their logs would mix
    shutil.rmtree(paths.ao_home() / "sessions" / PROJECT, ignore_errors=True)


def run(root: Path, keep: bool = False, timeout: float = 240.0,
        out: Callable[[str], None] = print) -> dict[str, Any]:
    started = time.monotonic()
    tmux.require_tmux()  # said at once: each start failing on it kept the demo going 4 minutes
    out(f"ao demo: a small project in {paths.display(root)}, five tasks, the demo agent, "
        "the local forge")
    work = make_project(root)
    # registered as `ao init` registers a repository: every `ao` command sees the demo's
    # project from anywhere (`ao board -p demo`, `ao session diff dem-2`)
    cfgmod.register_repo(work)
    cfg = cfgmod.load(cwd=work)
    if keep:
        cfg = replace(cfg, cleanup_grace=10.0**9)
    store = Store()
    srv = tmux.server(cfg.tmux_socket)
    forget(store, srv)
    project = cfg.project(PROJECT)
    store.ensure_project(PROJECT, str(work), None)
    plan_file = work / "plans" / "demo.yaml"
    store.start_plan_run(PROJECT, str(plan_file.resolve()))
    d = Daemon(cfg, store, srv)
    forge = d.forge(project, d.active_plans(project)[0])
    assert isinstance(forge, LocalForge)

    def tell(e: Event) -> None:
        if e.project == PROJECT and e.type in STORY:
            line = STORY[e.type](e)
            if line:
                out(line)

    add_listener(tell)
    out("plan: CORE-1 -> (CORE-2 | DOCS-1) -> CLI-1 -> REL-1; DOCS-1 has a reviewer agent, "
        "REL-1 an approval gate\n")
    while time.monotonic() - started < timeout:
        d.tick()
        _approve_as_a_human(d, store, forge)
        sessions = store.sessions(PROJECT)
        finished = not store.plan_runs(PROJECT) and all(
            s.state in ({State.MERGED, State.CLEANED} if keep else {State.CLEANED})
            for s in sessions)
        if finished or any(s.state is State.NEEDS_HUMAN for s in sessions):
            break
        time.sleep(cfg.poll_interval)
    summary = _summary(store, srv, time.monotonic() - started)
    out("")
    for row in summary["tasks"]:
        out(f"  {row['task']:<7} {row['session']:<7} {row['state']:<8} fix rounds "
            f"{row['fix_rounds']}, review rounds {row['review_rounds']}, rebases "
            f"{row['rebases']}")
    out(f"\n{summary['merged']}/{summary['total']} tasks merged in {summary['seconds']:.0f}s; "
        f"{summary['left_running']} sessions left running"
        + ("" if not keep else " (--keep: `ao session ls --all -p demo`, `ao session diff ID`)"))
    return summary


def _approve_as_a_human(d: Daemon, store: Store, forge: LocalForge) -> None:
    """The demo's human: approves a session held at its approval gate, as `ao approve` would
    (once the notification went out, so the story shows the wait)."""
    from ao.services.step_results import approve_gate

    for s in store.sessions(PROJECT):
        if s.step == "approve" and s.branch and any(
                r["fingerprint"].startswith("approval-asked:") for r in store.attempts(s.id)):
            pr = forge.find_pr(s.branch)
            if pr is not None and pr.state == "open":
                approve_gate(d.fleet, s, pr, "the demo's human")


def _summary(store: Store, srv: Any, seconds: float) -> dict[str, Any]:
    rows = []
    for s in store.sessions(PROJECT):
        rows.append({"task": s.task, "session": s.id, "state": s.state.value,
                     "fix_rounds": len(store.attempts(s.id, "fix-ci")),
                     "review_rounds": len(store.attempts(s.id, "review-round")),
                     "rebases": len(store.attempts(s.id, "ask-rebase"))})
    alive = [s for s in store.sessions(PROJECT) if tmux.has_session(srv, s.id)]
    return {"tasks": rows, "total": len(rows),
            "merged": sum(1 for r in rows if r["state"] in ("merged", "cleaned")),
            "seconds": seconds, "left_running": len(alive)}


def command(
    dir_: Path | None = typer.Option(None, "--dir", help="Where to make the demo project "
                                     "(default: ~/.agent-orchestrator/demo)."),
    keep: bool = typer.Option(False, "--keep", help="Leave the sessions' worktrees and records "
                              "for inspection (their agents end at their merges)."),
) -> None:
    """Watch ao run a five-task plan end to end, offline, in about half a minute."""
    summary = run((dir_ or paths.home() / "demo").resolve(), keep=keep)
    if summary["merged"] != summary["total"]:
        raise typer.Exit(1)
