"""Built-in agent profiles. Registered through the `ao.agents` entry points in pyproject.toml,
exactly as a third-party package would register its own."""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ao.errors import BadInput
from ao.record.state import Activity
from ao.world.agent_usage import AIDER_USAGE_FILE
from ao.world.agents.base import LaunchContext, Profile, update_json


@dataclass
class CommandAgent(Profile):
    """Any command: `{prompt_file}`, `{worktree}`, `{task}`, `{session}` are filled in.

    With `{prompt_file}` in the template the command receives its prompt that way and nothing is
    pasted; otherwise the first prompt is pasted once the command shows any output."""

    name: ClassVar[str] = "command"
    on_hosts: ClassVar[bool] = True
    description: ClassVar[str] = "any command line, from a template"
    ready_when_alive_after: ClassVar[float] = 1.0
    line_oriented: ClassVar[bool] = True

    def command(self, ctx: LaunchContext) -> str:
        if not ctx.command_template:
            raise BadInput("the command agent needs a template",
                           'set agent: {command: "my-agent --prompt-file {prompt_file}"}')
        try:
            return ctx.command_template.format(
                prompt_file=shlex.quote(str(ctx.prompt_file)), worktree=shlex.quote(
                    str(ctx.worktree)), task=shlex.quote(ctx.task), session=ctx.session_id)
        except (KeyError, IndexError, ValueError) as e:
            raise BadInput(f"agent command template {ctx.command_template!r}: bad placeholder {e}",
                           "use {prompt_file}, {worktree}, {task}, {session}") from None

    def pastes_prompt(self, ctx: LaunchContext) -> bool:
        return "{prompt_file}" not in (ctx.command_template or "")


@dataclass
class DemoAgent(Profile):
    name: ClassVar[str] = "demo"
    on_hosts: ClassVar[bool] = True
    description: ClassVar[str] = "deterministic scripted agent shipped with ao (demo and tests)"
    busy_texts: ClassVar[tuple[str, ...]] = ("working…",)
    submit_delay: ClassVar[float] = 0.05
    ready_timeout: ClassVar[float] = 20.0
    PROMPT: ClassVar[str] = "demo› "
    shows_limits: ClassVar[bool] = True

    def command(self, ctx: LaunchContext) -> str:
        return f"{shlex.quote(sys.executable)} -m ao.world.agents.demo_agent"

    def needs(self) -> str:
        return sys.executable  # ao's own module: this Python, at the same path there

    def _input_line(self, screen: str) -> str | None:
        lines = [ln for ln in screen.splitlines() if ln.strip()]
        if lines and lines[-1].startswith(self.PROMPT.strip()):
            return lines[-1][len(self.PROMPT):]
        return None

    def is_ready(self, screen: str) -> bool:
        return self._input_line(screen) is not None

    def activity(self, screen: str) -> Activity | None:
        if self._input_line(screen) is not None:
            return Activity.IDLE  # the input line is drawn at the bottom only when idle
        if "Do you want to proceed?" in "\n".join(screen.splitlines()[-8:]):
            return Activity.WAITING_INPUT
        return Activity.ACTIVE if "working…" in screen else None

    def draft_pending(self, screen: str, text: str) -> bool:
        return bool((self._input_line(screen) or "").strip())


@dataclass
class CodexAgent(Profile):
    name: ClassVar[str] = "codex"
    on_hosts: ClassVar[bool] = True
    binary: ClassVar[str | None] = "codex"
    shows_limits: ClassVar[bool] = True
    passthrough: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_HOME")
    description: ClassVar[str] = "OpenAI Codex CLI"
    measured: ClassVar[tuple[str, str] | None] = ("0.169.0", "0.169.0")
    busy_texts: ClassVar[tuple[str, ...]] = ("Esc to interrupt", "esc to interrupt")
    waiting_texts: ClassVar[tuple[str, ...]] = (
        "Would you like to run the following command?", "Press enter to confirm or esc to cancel",
        "Trust this folder?")
    # C-c clears a draft, but exits on an empty input: only with a draft
    clear_keys: ClassVar[tuple[str, ...]] = ("C-c",)
    clear_only_drafts: ClassVar[bool] = True
    enter_while_busy: ClassVar[bool] = False  # Enter steers the running turn

    def command(self, ctx: LaunchContext) -> str:
        # --no-daemon: the default background app-server outlives the session and is shared
        # by every later one with the first one's environment; the title tells the run state
        flags = ["--no-daemon", "-c", shlex.quote('tui.terminal_title=["spinner","run-state"]')]
        if ctx.sandboxed:
            flags.append("--dangerously-bypass-approvals-and-sandbox")  # --full-auto is gone
        return "codex " + " ".join(flags)

    def resume_command(self, ctx: LaunchContext) -> str:
        return self.command(ctx).replace("codex ", "codex resume --last ", 1)

    def prepare(self, ctx: LaunchContext) -> None:
        """Trust the project's main repository root in codex's config.toml (the `-c` flag
        does not reach this setting; in a worktree codex asks about the main root), on the
        machine codex runs on."""
        import tomlkit

        m = ctx.where()
        root = m.main_root(ctx.worktree)
        env = ctx.agent_env if ctx.agent_env is not None else os.environ
        home = Path(env["CODEX_HOME"]) if env.get("CODEX_HOME") else ctx.agent_home() / ".codex"
        path = home / "config.toml"
        with m.lock(path):
            text = m.read(path) or ""
            try:
                doc = tomlkit.parse(text)
            except tomlkit.exceptions.ParseError as e:
                raise BadInput(f"{m.name}:{path} is not valid TOML ({e})", "fix or move it; "
                               "ao will not overwrite a file it cannot read") from None
            projects = doc.get("projects")
            if projects is None:
                projects = tomlkit.table(is_super_table=True)
                doc["projects"] = projects
            entry = projects.get(str(root))
            if entry is not None and entry.get("trust_level") == "trusted":
                return
            if entry is not None and entry.get("trust_level") not in (None, "trusted"):
                raise BadInput(f"{m.name}:{path} marks {root} as {entry.get('trust_level')}; "
                               "codex would stop at its trust dialog", "trust it there (ao "
                               "does not override your choice), or pick another agent")
            if entry is None:
                entry = tomlkit.table()
                projects[str(root)] = entry
            entry["trust_level"] = "trusted"  # keeps the entry's other keys
            m.write(path, tomlkit.dumps(doc))

    def title_activity(self, title: str) -> Activity | None:
        # with the run-state title: "Ready", "⠦ Working" (also while a reply streams),
        # "[ ! ] Action Required"
        t = title.strip()
        if t.endswith("Action Required"):
            return Activity.WAITING_INPUT
        if t.endswith("Working"):
            return Activity.ACTIVE
        return Activity.IDLE if t == "Ready" else None

    def is_ready(self, screen: str) -> bool:
        # the early input (footer only "? for shortcuts") comes before startup ends
        return "Ask Codex to do anything" in screen and "default ·" in screen \
            and not any(t in screen for t in self.waiting_texts)

    def draft_pending(self, screen: str, text: str) -> bool:
        # the input runs from the last "› " line down to the footer; a multi-line draft
        # continues on indented lines
        lines = screen.splitlines()
        start = max((i for i, ln in enumerate(lines) if ln.startswith("› ")), default=None)
        if start is None:
            return False
        block = []
        for ln in lines[start:]:
            if " default · " in ln or "? for shortcuts" in ln:
                break
            block.append(ln)
        body = "\n".join(block)[2:].strip()
        if not body or body == "Ask Codex to do anything":
            return False
        return not text or body.startswith("[Pasted Content") or super().draft_pending(
            body, text)


@dataclass
class AiderAgent(Profile):
    name: ClassVar[str] = "aider"
    on_hosts: ClassVar[bool] = True
    binary: ClassVar[str | None] = "aider"
    passthrough: ClassVar[tuple[str, ...]] = (
        "OPENAI_API_KEY", "OPENAI_API_BASE", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
        "GEMINI_API_KEY", "AIDER_*", "LITELLM_*")
    description: ClassVar[str] = "Aider"
    measured: ClassVar[tuple[str, str] | None] = ("0.86.2", "0.86.2")
    waiting_texts: ClassVar[tuple[str, ...]] = ("(Y)es/(N)o",)
    # aider takes every Enter: one typed while it works answers its next question (a shell
    # command approved by nobody). One Enter per message, confirmed by the screen.
    line_oriented: ClassVar[bool] = True
    enter_while_busy: ClassVar[bool] = False
    # C-u clears one line of a multi-line draft; C-c the whole of it, and on an empty prompt
    # it starts exiting ("^C again to exit"): only with a draft
    clear_keys: ClassVar[tuple[str, ...]] = ("C-c",)
    stop_keys: ClassVar[tuple[str, ...]] = ("C-c",)  # one C-c interrupts a reply in flight
    clear_only_drafts: ClassVar[bool] = True
    excludes: ClassVar[tuple[str, ...]] = (".aider*",)
    # it commits every edit itself, but --yes-always answers "no" to its shell commands (a
    # `git push` too), and without it every push waits for a person: ao pushes for it
    pushes_itself: ClassVar[bool] = False
    FLAGS: ClassVar[str] = ("--no-gitignore --no-show-model-warnings --no-show-release-notes "
                            "--analytics-disable --no-check-update")

    def command(self, ctx: LaunchContext) -> str:
        return f"aider {self.FLAGS}" + (" --yes-always" if ctx.sandboxed else "")

    def resume_command(self, ctx: LaunchContext) -> str:
        return self.command(ctx) + " --restore-chat-history"

    def env(self, ctx: LaunchContext) -> dict[str, str]:
        # its analytics log (written with analytics off) has each message's tokens and cost:
        # one a session, in its folder, where ao reads what it spent (agent_usage.py)
        return {**super().env(ctx), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "AIDER_ANALYTICS_LOG": str(ctx.session_dir / AIDER_USAGE_FILE)}

    @staticmethod
    def _last(screen: str) -> str:
        lines = [ln for ln in screen.splitlines() if ln.strip()]
        return lines[-1].strip() if lines else ""

    def is_ready(self, screen: str) -> bool:
        return bool(re.fullmatch(r"\S*>", self._last(screen)))

    def activity(self, screen: str) -> Activity | None:
        last = self._last(screen)
        # a question counts only while it is the last line: an answered one stays on screen
        if "(Y)es/(N)o" in last and last.endswith("]:"):
            return Activity.WAITING_INPUT
        if re.fullmatch(r"\S*>( .*)?", last):
            return Activity.IDLE  # its prompt, empty or with a draft typed at it
        # no prompt at the bottom: aider is thinking ("Waiting for <model>") or streaming a
        # reply; an idle aider always ends its screen with its `>` prompt
        return Activity.ACTIVE if last else None

    def draft_pending(self, screen: str, text: str) -> bool:
        last = self._last(screen)
        m = re.fullmatch(r"\S*> (.+)", last)
        return bool(m) and (not text or super().draft_pending(last, text))


@dataclass
class GeminiAgent(Profile):
    name: ClassVar[str] = "gemini"
    on_hosts: ClassVar[bool] = True
    binary: ClassVar[str | None] = "gemini"
    passthrough: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY", "GOOGLE_API_KEY",
                                              "GOOGLE_CLOUD_PROJECT", "GOOGLE_GENAI_USE_VERTEXAI",
                                              "GOOGLE_GEMINI_BASE_URL", "GEMINI_MODEL")
    description: ClassVar[str] = "Google Gemini CLI"
    measured: ClassVar[tuple[str, str] | None] = ("0.61.0", "0.61.0")
    # Escape twice clears the input (a paste right after them lost its bracket, `[200~`
    # typed in: ao waits for the input to empty before it pastes, messaging.py)
    clear_keys: ClassVar[tuple[str, ...]] = ("Escape", "Escape")
    clear_gap: ClassVar[float] = 0.15
    clear_only_drafts: ClassVar[bool] = True
    busy_texts: ClassVar[tuple[str, ...]] = ("esc to cancel",)
    waiting_texts: ClassVar[tuple[str, ...]] = ("Allow execution", "Apply this change?",
                                                "Do you trust the files in this folder?",
                                                "How would you like to authenticate")

    def command(self, ctx: LaunchContext) -> str:
        return "gemini --yolo" if ctx.sandboxed else "gemini"

    def env(self, ctx: LaunchContext) -> dict[str, str]:
        # the trust dialog pre-answered (a gemini left on it survives the tmux session)
        return {**super().env(ctx), "GEMINI_CLI_TRUST_WORKSPACE": "true"}

    def prepare(self, ctx: LaunchContext) -> None:
        update_json(ctx.agent_home() / ".gemini" / "settings.json", lambda d: d.setdefault(
            "security", {}).setdefault("auth", {}).setdefault("selectedType",
                                                               "gemini-api-key"), ctx.machine)

    def title_activity(self, title: str) -> Activity | None:
        # "◇  Ready (<dir>)", "✦  Working… (<dir>)", "✋  Action Required (<dir>)"
        t = re.sub(r"\s*\([^)]*\)\s*$", "", title).strip()
        if t.endswith("Action Required"):
            return Activity.WAITING_INPUT
        if t.endswith("Working…"):
            return Activity.ACTIVE
        return Activity.IDLE if t.endswith("Ready") else None

    def is_ready(self, screen: str) -> bool:
        return "Type your message" in screen and not any(
            t in screen for t in self.waiting_texts)

    def draft_pending(self, screen: str, text: str) -> bool:
        # the input runs from the last " > " (" * " under --yolo) line down to the footer; a
        # multi-line draft continues on indented lines
        lines = screen.splitlines()
        start = max((i for i, ln in enumerate(lines) if ln.strip().startswith((">", "*"))),
                    default=None)
        if start is None:
            return False
        block = []
        for ln in lines[start:]:
            if "workspace (/directory)" in ln or ln.lstrip().startswith("─"):
                break
            block.append(ln.strip())
        body = "\n".join(block)[1:].strip()
        if not body or body.startswith("Type your message"):
            return False
        return not text or body.startswith("[Pasted Text") or super().draft_pending(
            body, text)


