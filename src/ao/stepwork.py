"""The work of the steps after `implement` (steps.py): a reviewer agent on the PR's head, and
check commands. Both run beside the implementing session and are found again by the daemon
on every tick, so a daemon killed mid-step resumes it: nothing is lost, nothing runs twice.

A reviewer runs in its own tmux session (`<session>-review`) on its own detached worktree at
the PR's head, with a prompt holding the task, the diff against the base and the CI summary.
It answers by writing its verdict to `.ao/verdict.json` in that worktree:

    {"verdict": "approve" | "request_changes", "summary": "...",
     "comments": [{"path": "src/x.py", "line": 12, "body": "..."}]}

ao posts it on the forge as a review (once: the body carries a marker looked for before
posting), records `verdict:<sha>:<verdict>` (and `gate:review:<sha>` for an approval), and
stops the reviewer. A check runs its command in the background in a detached worktree at the
head; its exit code passes (`gate:check:<i>:<sha>`) or fails the step, and on failure its
output's tail goes to the implementing agent.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import agents, paths, tmux, workspace
from .agents import LaunchContext
from .config import ProjectConfig
from .errors import BadInput, ExternalError
from .events import Event, emit
from .forge.base import AgentReview, Forge, PullRequest
from .plan import Task
from .sanitize import cap, clean
from .store import Session

if TYPE_CHECKING:
    from .fleet import Fleet

VERDICT_FILE = ".ao/verdict.json"
REVIEW_TIMEOUT = 1800.0  # a reviewer silent this long is given up on (escalated)
DIFF_LIMIT = 40_000
CHECK_TIMEOUT = 1800.0


@dataclass(frozen=True)
class Verdict:
    verdict: str  # approve | request_changes
    summary: str
    comments: tuple[tuple[str, int | None, str], ...] = ()


def parse_verdict(text: str) -> Verdict:
    """A reviewer's answer, validated (ValueError says what is wrong). Its text is untrusted:
    it is cleaned before it reaches a forge, a terminal or an agent."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the verdict must be a JSON object")
    verdict = data.get("verdict")
    if verdict not in ("approve", "request_changes"):
        raise ValueError('"verdict" must be "approve" or "request_changes"')
    comments = []
    for c in data.get("comments") or []:
        if not isinstance(c, dict) or not str(c.get("body") or "").strip() or \
                not str(c.get("path") or "").strip():
            raise ValueError("each comment needs a path and a body")
        line = c.get("line")
        if line is not None and (not isinstance(line, int) or line < 1):
            raise ValueError(f"comment on {c['path']}: line must be a positive number")
        path = str(c["path"]).strip()
        if path.startswith("/") or ".." in Path(path).parts:
            raise ValueError(f"comment path {path!r} must be relative to the repository")
        comments.append((clean(path)[:300], line, cap(clean(str(c["body"])), 4000)))
    summary = cap(clean(str(data.get("summary") or "")), 8000)
    if verdict == "request_changes" and not summary and not comments:
        raise ValueError("a request for changes needs a summary or comments")
    return Verdict(verdict, summary, tuple(comments[:50]))


def reviewer_name(sid: str) -> str:
    return f"{sid}-review"


def _dir(project: str, sid: str) -> Path:
    return paths.ensure_dir(paths.session_dir(project, sid) / "steps")


def _checkout(project: ProjectConfig, pr: PullRequest, sha: str, where: Path) -> None:
    """A detached worktree at the PR's head (made again if one is left from a crash)."""
    workspace.remove_worktree(project.path, where)
    workspace.git(project.path, "fetch", "-q", project.remote,
                  f"+refs/heads/{pr.head_branch}:refs/remotes/{project.remote}/"
                  f"{pr.head_branch}")
    workspace.git(project.path, "worktree", "add", "-q", "--detach", str(where), sha)


class StepWork:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.store = fleet.store
        self.srv = fleet.srv

    # ---- the reviewer agent ---------------------------------------------------------------

    def start_review(self, project: ProjectConfig, s: Session, task: Task, pr: PullRequest,
                     sha: str, round_: int, agent: str | None) -> None:
        name = reviewer_name(s.id)
        wt = paths.worktrees_dir(project.name) / name
        tmux.kill_session(self.srv, name)  # one left by a crash, or by an earlier head
        _checkout(project, pr, sha, wt)
        workspace.exclude(project.path, ".ao/")
        profile = agents.get(agent or s.agent or project.agent)
        sdir = _dir(project.name, s.id)
        diff = workspace.git(project.path, "diff", f"{project.remote}/"
                             f"{project.default_branch}...{sha}", check=False).stdout
        prompt = review_prompt(task, pr, sha, round_, diff, wt / VERDICT_FILE)
        prompt_file = sdir / f"review-{round_}.md"
        prompt_file.write_text(prompt, encoding="utf-8")
        ctx = LaunchContext(session_id=name, project=project.name, task=task.key, worktree=wt,
                            prompt_file=prompt_file, session_dir=sdir,
                            default_branch=project.default_branch, remote=project.remote,
                            sandboxed=project.sandboxed,
                            permission_mode=project.agent.permission_mode)
        env = self.fleet.agent_env(profile, ctx)
        ctx = replace(ctx, agent_env=env)
        profile.prepare(ctx)
        tmux.new_session(self.srv, name, wt, profile.command(ctx), env)
        tmux.pipe_to(self.srv, name, sdir / f"review-{round_}.log")
        if profile.pastes_prompt(ctx):
            self._give_prompt(name, profile, prompt)

    def _give_prompt(self, name: str, profile: agents.Profile, prompt: str) -> None:
        """Paste the prompt once the reviewer is ready and press Enter until it leaves the
        input (the reviewer has no session row, so no message queue: it gets one message)."""
        if tmux.wait_screen(self.srv, name, profile.is_ready, profile.ready_timeout) is None:
            raise ExternalError(f"reviewer {profile.name} was not ready after "
                                f"{profile.ready_timeout:g}s", f"its screen is in {name}'s "
                                "log under the session's steps/ folder")
        tmux.paste(self.srv, name, prompt)
        if tmux.wait_screen(self.srv, name, lambda sc: profile.draft_pending(sc, prompt),
                            timeout=5.0) is None and not profile.line_oriented:
            raise ExternalError(f"the review prompt did not show in {profile.name}'s input",
                                "it is tried again on the next poll")
        time.sleep(profile.submit_delay)
        for _ in range(3):
            tmux.send_keys(self.srv, name, "Enter")
            if tmux.wait_screen(self.srv, name,
                                lambda sc: not profile.draft_pending(sc, prompt),
                                timeout=3.0) is not None:
                return
        raise ExternalError("the reviewer did not take its prompt", "attach to see why")

    def collect_review(self, project: ProjectConfig, forge: Forge, s: Session,
                       pr: PullRequest, sha: str, started_at: float, now: float
                       ) -> tuple[str, Verdict | None]:
        """Where the reviewer of `sha` is: ("running", None), ("verdict", v) once posted,
        ("bad", None) for an unreadable verdict (its reason in an event), ("gone", None) if
        the reviewer ended without one, ("timeout", None)."""
        name = reviewer_name(s.id)
        f = paths.worktrees_dir(project.name) / name / VERDICT_FILE
        if f.exists():
            try:
                verdict = parse_verdict(f.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                emit(Event("review.invalid", project.name, s.id, s.task,
                           {"sha": sha, "why": str(e)[:300]}), self.store)
                self.stop_review(project, s)
                return "bad", None
            how = forge.submit_review(pr, AgentReview(
                verdict.verdict, review_body(verdict), verdict.comments,
                marker=f"<!-- ao-review {s.id} {sha} -->"), sha)
            emit(Event("review.posted", project.name, s.id, s.task,
                       {"sha": sha, "verdict": verdict.verdict, "as": how,
                        "comments": len(verdict.comments)}), self.store)
            self.stop_review(project, s)
            return "verdict", verdict
        p = tmux.pane(self.srv, name)
        if p is None or p.dead:
            self.stop_review(project, s)
            return "gone", None
        if now - started_at > REVIEW_TIMEOUT:
            self.stop_review(project, s)
            return "timeout", None
        return "running", None

    def stop_review(self, project: ProjectConfig, s: Session) -> None:
        """The reviewer's session and worktree go (a detached checkout of pushed commits:
        nothing of anyone's work is in it)."""
        name = reviewer_name(s.id)
        tmux.kill_session(self.srv, name)
        workspace.remove_worktree(project.path, paths.worktrees_dir(project.name) / name)

    # ---- check commands -------------------------------------------------------------------

    def start_check(self, project: ProjectConfig, s: Session, pr: PullRequest, sha: str,
                    index: int, command: str) -> None:
        wt = paths.worktrees_dir(project.name) / f"{s.id}-check-{index}"
        _checkout(project, pr, sha, wt)
        base = _dir(project.name, s.id) / f"check-{index}-{sha[:12]}"
        for suffix in (".out", ".rc"):
            Path(f"{base}{suffix}").unlink(missing_ok=True)
        # the exit code is written last, atomically: a half-written one is never read
        script = (f"timeout {int(CHECK_TIMEOUT)} sh -c {shlex.quote(command)} "
                  f"> {shlex.quote(f'{base}.out')} 2>&1; echo $? > {shlex.quote(f'{base}.tmp')}"
                  f" && mv {shlex.quote(f'{base}.tmp')} {shlex.quote(f'{base}.rc')}")
        subprocess.Popen(["sh", "-c", script], cwd=wt, start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env={**os.environ, "AO_SESSION": s.id,
                                                         "AO_SHA": sha})

    def collect_check(self, project: ProjectConfig, s: Session, sha: str, index: int
                      ) -> tuple[int, str] | None:
        """(exit code, output tail) once the check is done, else None."""
        base = _dir(project.name, s.id) / f"check-{index}-{sha[:12]}"
        rc = Path(f"{base}.rc")
        if not rc.exists():
            return None
        try:
            code = int(rc.read_text().strip() or "1")
        except ValueError:
            code = 1
        out = Path(f"{base}.out")
        tail = out.read_text(encoding="utf-8", errors="replace")[-4000:] if out.exists() else ""
        workspace.remove_worktree(project.path,
                                  paths.worktrees_dir(project.name) / f"{s.id}-check-{index}")
        return code, clean(tail)


def approve_gate(fleet: Fleet, s: Session, pr: PullRequest, by: str,
                 reject: str | None = None) -> str:
    """A human's answer at a task's approval gate, for the PR's current head: approved (the
    merge may go on once the rest of the gate passes), or rejected with a reason the agent
    gets as a review. What `ao approve` and the web's approve action print."""
    from .messaging import Messenger

    store = fleet.store
    if not any(st.kind == "approve" for st in store.task_steps(s.project, s.task)):
        raise BadInput(f"{s.id}'s task {s.task} has no approval gate",
                       "add `approve` to its `steps:` in the plan (docs/steps.md)")
    if pr.state != "open":
        raise BadInput(f"{s.id}: PR #{pr.number} is {pr.state}", "nothing to approve")
    sha = pr.head_sha
    if reject is not None:
        why = clean(reject).strip()
        if not why:
            raise BadInput("--reject needs a reason", 'e.g. --reject "no rollback plan"')
        n = len(store.attempts(s.id, "approval-rejected")) + 1
        store.record_attempt(s.id, "approval-rejected", f"approval-rejected:{sha}:{n}",
                             {"by": by, "why": why})
        emit(Event("gate.rejected", s.project, s.id, s.task, {"sha": sha, "by": by,
                                                             "why": why}), store)
        r = Messenger(fleet).send(s.id, f"A human rejected PR #{pr.number} at its approval "
                                  f"gate:\n\n{why}\n\nAddress this, commit and push; the new "
                                  "head goes through the gate again.", source="review")
        return f"{s.id}: PR #{pr.number} rejected at {sha[:10]}; the agent's message is {r.status}"
    if not store.record_attempt(s.id, "gate", f"gate:approve:{sha}", {"by": by}):
        return f"{s.id}: PR #{pr.number} was approved at {sha[:10]} already"
    emit(Event("gate.approved", s.project, s.id, s.task, {"sha": sha, "by": by}), store)
    paths.poke_daemon()
    return (f"{s.id}: PR #{pr.number} approved at {sha[:10]}; it merges when the rest of its "
            "gate passes")


def review_body(v: Verdict) -> str:
    head = "**Approved**" if v.verdict == "approve" else "**Changes requested**"
    return f"{head} by ao's reviewer agent.\n\n{v.summary}".strip()


def review_prompt(task: Task, pr: PullRequest, sha: str, round_: int, diff: str,
                  verdict_file: Path) -> str:
    cut = "" if len(diff) <= DIFF_LIMIT else \
        f"\n[the diff is {len(diff)} characters; the first {DIFF_LIMIT} are shown]"
    checks = pr.checks
    ci = f"CI: {checks.overall} ({len(checks.checks)} check(s))"
    body = clean(task.body) if task.body else "(no description)"
    return "\n".join([
        f"# Review of {task.key}: {clean(task.title)} (PR #{pr.number}, review round {round_})",
        "",
        "You are the reviewer, not the author. Do not change, commit or push anything.",
        f"The worktree you are in is the PR's head, {sha[:12]}, detached.",
        "",
        "## The task", body, "",
        "## What to check",
        "- The change does what the task asks, and nothing it does not.",
        "- Tests cover what changed, and would fail without the change.",
        "- No secrets, no debugging leftovers, no unrelated edits.",
        "",
        f"## {ci}", "",
        f"## The diff against the base{cut}", "```diff", clean(diff[:DIFF_LIMIT]), "```", "",
        "## Your answer",
        f"Write your verdict as JSON to {verdict_file} (and nothing else there):",
        '{"verdict": "approve" or "request_changes", "summary": "one paragraph",',
        ' "comments": [{"path": "file/in/repo.py", "line": 12, "body": "what to change"}]}',
        "Request changes only for what must change before merging.",
        f"AO-REVIEW-ROUND {round_}",
    ])
