"""The agent protocol: what `ao` needs to know to start an agent CLI, give it work, and tell
what it is doing. Profiles are registered through the `ao.agents` entry point group, built-ins
included, so a third-party profile is installed the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ao import paths
from ao.errors import AoError, BadInput
from ao.record.state import Activity
from ao.world import workspace
from ao.world.agent_hooks import HOOK_FILE, HOOK_MAX_PAYLOAD

HOOK_MARK = "ao-hook"  # in every hook command ao installs: a later install replaces only its own
# newlines out of the JSON (raw ones are only whitespace between its tokens), one line, and
# nothing on stdout (Claude Code adds a UserPromptSubmit hook's output to the prompt); a
# failure never fails the agent; ao's wake file is touched when ao runs on this machine;
# outside an ao session (the agent started by hand in a kept worktree) nothing is written
_HOOK_SCRIPT = ('[ -n "$AO_SESSION_DIR" ] || exit 0; '
                'p=$(tr -d "\\n\\r" | head -c {max}); [ -n "$p" ] || p="{{}}"; '
                'printf "%s\\t%s\\t%s\\n" "$0" "$(date +%s.%N)" "$p" '
                '>> "$AO_SESSION_DIR/{file}" 2>/dev/null; '
                '[ -d "$AO_HOME" ] && : > "$AO_HOME/wake" 2>/dev/null; exit 0')


class Machine(Protocol):
    """The machine an agent runs on, for the files `prepare` edits there: this machine
    (LocalMachine) or an SSH host (hostwork.HostMachine)."""

    name: str

    def home(self) -> Path: ...

    def read(self, path: Path) -> str | None: ...

    def write(self, path: Path, text: str) -> None:
        """Replace the file whole and private (0600), its folder made if missing."""

    def lock(self, path: Path) -> AbstractContextManager[None]: ...

    def main_root(self, worktree: Path) -> Path:
        """The main repository a worktree belongs to (the folder of its common .git)."""


class LocalMachine:
    """This machine, as a Machine: its HOME, its files, a lock under AO_HOME."""

    name = "local"

    def home(self) -> Path:
        return Path(os.environ.get("HOME", str(Path.home())))

    def read(self, path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def write(self, path: Path, text: str) -> None:
        paths.write_atomic(path, text, mode=0o600)

    def lock(self, path: Path) -> AbstractContextManager[None]:
        return config_lock(path)

    def main_root(self, worktree: Path) -> Path:
        try:
            common: Path | None = workspace.common_dir(worktree)
        except AoError:
            common = None
        return (common.parent if common and common.name == ".git" else worktree).resolve()


def config_lock(path: Path) -> AbstractContextManager[None]:
    # the lock lives under AO_HOME, never beside the file: a lock file in a worktree would
    # show in `git status`, keep every killed worktree and end up in an agent's `git add -A`
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    return paths.locked(paths.home() / "locks" / f"cfg-{key}.lock")


@dataclass(frozen=True)
class LaunchContext:
    session_id: str
    project: str
    task: str
    worktree: Path
    prompt_file: Path
    session_dir: Path
    default_branch: str = "main"
    remote: str = "origin"
    sandboxed: bool = False
    permission_mode: str | None = None
    command_template: str | None = None
    ready_pattern: str | None = None  # a command agent is ready when this regex shows
    # the environment the agent will get (set before `prepare`, so pre-answers match it)
    agent_env: dict[str, str] | None = None
    machine: Machine | None = None  # where it runs, when not on this machine

    def where(self) -> Machine:
        """The machine the agent runs on."""
        return self.machine or LocalMachine()

    def agent_home(self) -> Path:
        """The HOME the agent will have: its environment's, else its machine's login's."""
        env = self.agent_env if self.agent_env is not None else os.environ
        return Path(env["HOME"]) if env.get("HOME") else self.where().home()

    def hook_command(self, agent: str, event: str) -> str:
        """The agent's hook for `event`: a line of shell that appends the event to the hook
        file in the session's folder, wherever the agent runs (agent_hooks.py reads it)."""
        script = _HOOK_SCRIPT.format(max=HOOK_MAX_PAYLOAD, file=HOOK_FILE)
        return f"sh -c {shlex.quote(script)} {shlex.quote(event)} # {HOOK_MARK}"


@dataclass
class Profile:
    """Defaults fit a line-oriented CLI; profiles override what differs."""

    name: ClassVar[str] = "base"
    binary: ClassVar[str | None] = None
    description: ClassVar[str] = ""
    # keys that empty the agent's input box (tmux key names)
    clear_keys: ClassVar[tuple[str, ...]] = ("C-u",)
    clear_gap: ClassVar[float] = 0.0  # pause between clear keys
    # press the clear keys only when the input holds text: on an empty input they can mean
    # something else (Escape twice in Claude Code opens its rewind menu)
    clear_only_drafts: ClassVar[bool] = False
    # pause between the paste and Enter, so the agent has taken the paste in
    submit_delay: ClassVar[float] = 0.2
    ready_timeout: ClassVar[float] = 30.0
    # the agent reports UserPromptSubmit / Stop / ... through `ao hook`
    uses_hooks: ClassVar[bool] = False
    # it can run on an SSH host (hosts.py): whatever its `prepare` edits outside the worktree
    # (trust entries, settings) it edits through `ctx.where()`, the machine the agent runs on
    on_hosts: ClassVar[bool] = False
    # seconds after which a live process counts as ready when its screen cannot tell (a
    # plain command that draws nothing until it gets input); 0: readiness is the screen's
    ready_when_alive_after: ClassVar[float] = 0.0
    # the agent pushes its own commits; False where it cannot in ao's modes (aider answers
    # "no" to every shell command under --yes-always): ao pushes them for it (pushes.py)
    pushes_itself: ClassVar[bool] = True
    # a line-oriented program (no input box: what is typed is echoed like output): a message
    # gets exactly one Enter, confirmed by the screen changing after it
    line_oriented: ClassVar[bool] = False
    # Enter while the agent works queues the message (Claude Code, Gemini CLI); False where it
    # would steer the running turn (codex) or be replayed as the next question's answer (aider)
    enter_while_busy: ClassVar[bool] = True
    # files the agent writes into a worktree, kept out of `git status` (info/exclude)
    excludes: ClassVar[tuple[str, ...]] = ()
    # the agent prints a usage-limit message with its reset time (limits.py reads it)
    shows_limits: ClassVar[bool] = False
    # the keys that interrupt a turn in flight (a session parked at a usage limit)
    stop_keys: ClassVar[tuple[str, ...]] = ("Escape",)
    # screen texts meaning "blocked on a question to the human"
    waiting_texts: ClassVar[tuple[str, ...]] = (
        "Do you want to proceed?", "(y/n)", "[y/N]", "[Y/n]", "Allow command?", "Approve?",
    )
    busy_texts: ClassVar[tuple[str, ...]] = ()
    # variables of ao's own environment the agent needs (its API key and endpoint): passed
    # through when set; nothing else of the user's environment reaches an agent but BASE_ENV
    # and what the project's config names (`env:`)
    passthrough: ClassVar[tuple[str, ...]] = ()
    # the versions of the CLI this profile was measured with (docs/agents.md); `ao agents`
    # warns for an installed version outside [min, max]
    measured: ClassVar[tuple[str, str] | None] = None
    version_flag: ClassVar[str] = "--version"
    extra_env: dict[str, str] = field(default_factory=dict)

    def installed(self) -> bool:
        return self.binary is None or shutil.which(self.binary) is not None

    def needs(self) -> str | None:
        """The program a machine must have to run this agent (`ao hosts check` looks for it
        on each host): its CLI, or None when it needs none of its own."""
        return self.binary

    def version(self) -> str | None:
        """The installed CLI's version (`<binary> --version`), or None."""
        path = shutil.which(self.binary) if self.binary else None
        if path is None:
            return None
        try:
            r = subprocess.run([path, self.version_flag], capture_output=True, text=True,
                               timeout=20, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
        m = re.search(r"\d+\.\d+\.\d+", r.stdout + r.stderr)
        return m.group(0) if m else None

    def version_ok(self, version: str | None) -> bool | None:
        """Whether `version` lies in the measured range; None when either is unknown."""
        if version is None or self.measured is None:
            return None

        def key(v: str) -> tuple[int, ...]:
            return tuple(int(x) for x in v.split("."))

        lo, hi = self.measured
        return key(lo) <= key(version) <= key(hi)

    def command(self, ctx: LaunchContext) -> str:
        raise NotImplementedError

    def resume_command(self, ctx: LaunchContext) -> str:
        return self.command(ctx)

    def pastes_prompt(self, ctx: LaunchContext) -> bool:
        """The first prompt is pasted once the agent is ready (False: its command carries it)."""
        return True

    def env(self, ctx: LaunchContext) -> dict[str, str]:
        return {"AO_SESSION": ctx.session_id, "AO_PROJECT": ctx.project, "AO_TASK": ctx.task,
                "AO_SESSION_DIR": str(ctx.session_dir), "AO_DEFAULT_BRANCH": ctx.default_branch,
                "AO_REMOTE": ctx.remote, **self.extra_env}

    def prepare(self, ctx: LaunchContext) -> None:
        """Pre-answer first-run dialogs and install hooks before the agent starts."""

    def forget(self, worktree: Path, machine: Machine | None = None) -> None:
        """Undo what `prepare` recorded outside the worktree (a trust entry), once the
        worktree is gone; on `machine` when the agent ran on a host."""

    def is_ready(self, screen: str) -> bool:
        """The input is drawn and will take a paste."""
        return bool(screen.strip())

    def activity(self, screen: str) -> Activity | None:
        """What the screen says, or None when the screen alone cannot tell."""
        if any(t in screen for t in self.waiting_texts):
            return Activity.WAITING_INPUT
        if self.busy_texts and any(t in screen for t in self.busy_texts):
            return Activity.ACTIVE
        return None

    def title_activity(self, title: str) -> Activity | None:
        """What the pane title says (a CLI that sets its run state there), or None. Read on
        every observation and trusted over the screen: it changes with the state, also while a
        reply streams and the screen looks idle."""
        return None

    def settled(self, screen: str) -> bool:
        """The screen shows the turn ended with no hook to say so (Claude Code after an
        Escape: "Interrupted"); the screen's state is then taken at once."""
        return False

    def draft_pending(self, screen: str, text: str) -> bool:
        """The text we pasted still sits in the input (Enter not taken)."""
        tail = _last_words(text)
        last = [ln for ln in screen.splitlines() if ln.strip()][-3:]
        return bool(tail) and any(tail in ln for ln in last)

    def draft_is(self, screen: str, text: str) -> bool:
        """The input holds `text` (ao's own paste, or a message just submitted whose box has
        not cleared yet), not something else (a person's draft)."""
        return self.draft_pending(screen, text)

    def submitted(self, before: str, after: str, text: str) -> bool:
        """The screen shows the message was taken (used when there are no hooks)."""
        return after != before and not self.draft_pending(after, text)


def _last_words(text: str) -> str:
    words = re.findall(r"\S+", text.strip().splitlines()[-1] if text.strip() else "")
    return " ".join(words[-3:])[-40:]


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def update_json(path: Path, change: Any, machine: Machine | None = None,
                create: bool = True) -> None:
    """Read-modify-write a JSON file other processes share: under a lock, replaced atomically,
    every key we do not own kept as it was; on `machine` (by default this one). A missing
    file is made, unless `create` is False (then nothing is done)."""
    m = machine or LocalMachine()
    with m.lock(path):
        text = m.read(path)
        if text is None and not create:
            return
        data = _parsed(path, text) if text is not None else {}
        change(data)
        m.write(path, json.dumps(data, indent=2))


def _parsed(path: Path, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise BadInput(f"{path} is not valid JSON", "fix or move it; ao will not "
                       "overwrite a file it cannot read") from None
    return data if isinstance(data, dict) else {}
