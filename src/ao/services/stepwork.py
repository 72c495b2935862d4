"""The work of the steps after `implement` (steps.py): a reviewer agent on the PR's head, and
check commands. Both run beside the implementing session and are found again by the daemon
on every tick, so a daemon killed mid-step resumes it: nothing is lost, nothing runs twice.

A reviewer runs in its own tmux session (`<session>-review`) on its own detached worktree at
the PR's head, with a prompt holding the task, the diff against the base and the CI summary.
It answers by writing its verdict to `.ao/verdict-<random>.json` in that worktree (a name
made for that run and told only in its prompt; `.ao/` is emptied after the checkout, so a
file committed in the PR can never pass for a verdict):

    {"verdict": "approve" | "request_changes", "summary": "...",
     "comments": [{"path": "src/x.py", "line": 12, "body": "..."}]}

ao records it (`verdict:<sha>:<verdict>`, and `gate:review:<sha>` for an approval), then
posts it on the forge as a review (once: the body carries a marker looked for before
posting; a crash between the two posts it from the record), and stops the reviewer.

A check runs its command in the background in a detached worktree at the head, with the
environment an agent gets (never ao's own tokens); its exit code passes
(`gate:check:<hash>:<sha>`) or fails the step, and on failure its output's tail goes to the
implementing agent. A check whose runner died counts as failed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ao import environment, paths
from ao.errors import ExternalError
from ao.record.events import Event, emit
from ao.record.forge import AgentReview, Forge, PullRequest
from ao.sanitize import cap, clean
from ao.services.teardown import end_checks, pid_file
from ao.world import agents, tmux, workspace
from ao.world.agents import LaunchContext

if TYPE_CHECKING:
    from ao.config import ProjectConfig
    from ao.decide.plan import Task
    from ao.record.store import Session
    from ao.services.fleet import Fleet

VERDICTS = ("approve", "request_changes")
NEVER_STARTED = -1  # collect_check: the check was recorded but its runner never started
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
    comments = [_comment(c) for c in data.get("comments") or []]
    summary = cap(clean(str(data.get("summary") or "")), 8000)
    if verdict == "request_changes" and not summary and not comments:
        raise ValueError("a request for changes needs a summary or comments")
    return Verdict(verdict, summary, tuple(comments[:50]))


def _comment(c: object) -> tuple[str, int | None, str]:
    """A reviewer's comment: a path inside the repository, a positive line or none, a body."""
    if not isinstance(c, dict):
        raise ValueError("each comment must be an object with a path and a body")
    # cleaned first, then judged: control characters could hide a ".." otherwise
    path, body = clean(str(c.get("path") or "")).strip(), clean(str(c.get("body") or ""))
    if not path or not body.strip():
        raise ValueError("each comment needs a path and a body")
    line = c.get("line")
    if line is not None and (type(line) is not int or line < 1):
        raise ValueError(f"comment on {path[:100]!r}: line must be a positive number")
    if path.startswith("/") or ".." in Path(path).parts:
        raise ValueError(f"comment path {path[:100]!r} must be inside the repository")
    return path[:300], line, cap(body, 4000)


def reviewer_name(sid: str) -> str:
    return f"{sid}-review"


def check_name(sid: str, gate: str) -> str:
    return f"{sid}-check-{gate.split(':', 1)[1]}"


def owner_of_step(name: str) -> str | None:
    """The session a reviewer's or a check's tmux session or worktree belongs to."""
    m = re.fullmatch(r"(.+)-(?:review|check-[0-9a-f]+)", name)
    return m.group(1) if m else None


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
        _fresh_dir(wt / ".ao")  # nothing the PR carries counts, a link least of all
        workspace.exclude(project.path, ".ao/")
        verdict_file = wt / ".ao" / f"verdict-{secrets.token_hex(8)}.json"
        sdir = _dir(project.name, s.id)
        (sdir / "review-verdict-path").write_text(str(verdict_file), encoding="utf-8")
        profile = agents.get(agent or s.agent or project.agent)
        diff = workspace.git(project.path, "diff", f"{project.remote}/"
                             f"{project.default_branch}...{sha}", check=False).stdout
        prompt = review_prompt(task, pr, sha, round_, diff, verdict_file)
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
        tmux.new_session(self.srv, name, wt, profile.command(ctx), env,
                         log=sdir / f"review-{round_}.log")
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

    def collect_review(self, project: ProjectConfig, s: Session, sha: str,
                       started_at: float, now: float) -> tuple[str, Verdict | None]:
        """Where the reviewer of `sha` is: ("running", None), ("verdict", v), ("bad", None)
        for an unreadable verdict (its reason in an event), ("gone", None) if the reviewer
        ended without one, ("timeout", None)."""
        name = reviewer_name(s.id)
        pointer = _dir(project.name, s.id) / "review-verdict-path"
        f = Path(pointer.read_text(encoding="utf-8")) if pointer.exists() else None
        text = _read_verdict(f, started_at) if f is not None else None
        if text is not None:
            try:
                return "verdict", parse_verdict(text)
            except (ValueError, UnicodeDecodeError) as e:
                emit(Event("review.invalid", project.name, s.id, s.task,
                           {"sha": sha, "why": clean(str(e))[:300]}), self.store)
                return "bad", None
        p = tmux.pane(self.srv, name)
        if p is None or p.dead:
            return "gone", None
        if now - started_at > REVIEW_TIMEOUT:
            return "timeout", None
        return "running", None

    def post_review(self, s: Session, forge: Forge, pr: PullRequest, run: str,
                    verdict: Verdict) -> str:
        """Post one run's verdict (`run`: its fingerprint, review-run:<sha>:<hand-back>); the
        marker names the run, so each run posts once and a later run posts its own."""
        sha = run.split(":")[1]
        return forge.submit_review(pr, AgentReview(
            verdict.verdict, review_body(verdict), verdict.comments,
            marker=f"<!-- ao-review {s.id} {run.removeprefix('review-run:')} -->"), sha)

    def stop_review(self, project: ProjectConfig, s: Session) -> None:
        """The reviewer's session and worktree go (a detached checkout of pushed commits:
        nothing of anyone's work is in it)."""
        name = reviewer_name(s.id)
        tmux.kill_session(self.srv, name)
        workspace.remove_worktree(project.path, paths.worktrees_dir(project.name) / name)

    # ---- check commands -------------------------------------------------------------------

    def start_check(self, project: ProjectConfig, s: Session, pr: PullRequest, sha: str,
                    gate: str, command: str) -> None:
        wt = paths.worktrees_dir(project.name) / check_name(s.id, gate)
        _checkout(project, pr, sha, wt)
        base = self._check_base(project, s, gate, sha)
        for suffix in (".out", ".rc", ".tmp", ".pid"):
            Path(f"{base}{suffix}").unlink(missing_ok=True)
        # the exit code is written last, atomically: a half-written one is never read
        q = shlex.quote
        script = (f"timeout {int(CHECK_TIMEOUT)} sh -c {q(command)} > {q(f'{base}.out')} 2>&1;"
                  f" echo $? > {q(f'{base}.tmp')} && mv {q(f'{base}.tmp')} {q(f'{base}.rc')}")
        # the agent's code runs here: it gets what an agent gets, never ao's own secrets
        env = environment.build(os.environ, (), {"AO_SESSION": s.id, "AO_SHA": sha},
                                dict((*project.env, *project.agent.env)))
        proc = subprocess.Popen(["sh", "-c", script], cwd=wt, start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        Path(f"{base}.pid").write_text(f"{proc.pid} {time.time()}", encoding="utf-8")

    def _check_base(self, project: ProjectConfig, s: Session, gate: str, sha: str) -> Path:
        return _dir(project.name, s.id) / f"{check_name(s.id, gate)}-{sha[:12]}"

    def collect_check(self, project: ProjectConfig, s: Session, sha: str, gate: str
                      ) -> tuple[int, str] | None:
        """(exit code, output tail) once the check is done, else None. A check whose runner
        died (a reboot, the OOM killer) or that outlived its timeout counts as failed."""
        base = self._check_base(project, s, gate, sha)
        rc = Path(f"{base}.rc")
        out = Path(f"{base}.out")
        if not rc.exists():
            pid, started = pid_file(Path(f"{base}.pid"))
            if pid is None:
                return NEVER_STARTED, ""  # cut short before it ran: the caller runs it again
            alive = paths.pid_alive(pid)
            if alive and time.time() - started < CHECK_TIMEOUT + 60:
                return None
            if not rc.exists():  # not finished between the two looks either
                self.stop_check(project, s, gate, sha)
                return 125, ("the check ran out of time" if alive else
                             "the check's runner ended without an exit code (killed?)")
        try:
            code = int(rc.read_text().strip() or "1")
        except ValueError:
            code = 1
        tail = out.read_text(encoding="utf-8", errors="replace")[-4000:] if out.exists() else ""
        self.stop_check(project, s, gate, sha)
        return code, clean(tail)

    def stop_check(self, project: ProjectConfig, s: Session, gate: str,
                   sha: str | None = None) -> None:
        """The check's processes (all of them: the command may start its own groups) and its
        worktree go. Without `sha`, every run of that check of the session."""
        end_checks(project.name, s.id, f"{check_name(s.id, gate)}-{sha[:12] if sha else '*'}.pid")
        workspace.remove_worktree(project.path,
                                  paths.worktrees_dir(project.name) / check_name(s.id, gate))


def _fresh_dir(d: Path) -> None:
    """`d` as a new, empty, real folder: a link or file in its place is removed, never
    followed."""
    try:
        st = os.lstat(d)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(d)
        else:
            os.unlink(d)
    d.mkdir(mode=0o700)


def _read_verdict(f: Path, started_at: float) -> str | None:
    """The verdict's text if a regular file (not a link, not a pipe) written by this run is
    there; at most 256 KB."""
    try:
        fd = os.open(f, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_mtime < started_at - 1 or \
                st.st_size > 256_000:
            return None
        return os.read(fd, 256_000).decode("utf-8", "replace")
    finally:
        os.close(fd)


def as_data(v: Verdict) -> dict[str, object]:
    return {"verdict": v.verdict, "summary": v.summary,
            "comments": [list(c) for c in v.comments]}


def from_data(d: object) -> Verdict | None:
    if not isinstance(d, dict) or d.get("verdict") not in VERDICTS:
        return None
    return Verdict(str(d["verdict"]), str(d.get("summary") or ""), tuple(
        (str(p), ln if isinstance(ln, int) else None, str(b))
        for p, ln, b in d.get("comments") or []))


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
