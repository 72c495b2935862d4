"""Built-in agent profiles. Registered through the `ao.agents` entry points in pyproject.toml,
exactly as a third-party package would register its own."""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from typing import ClassVar

from ..errors import BadInput
from ..state import Activity
from .base import LaunchContext, Profile


@dataclass
class CommandAgent(Profile):
    """Any command: `{prompt_file}`, `{worktree}`, `{task}`, `{session}` are filled in.

    With `{prompt_file}` in the template the command receives its prompt that way and nothing is
    pasted; otherwise the first prompt is pasted once the command shows any output."""

    name: ClassVar[str] = "command"
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
    description: ClassVar[str] = "deterministic scripted agent shipped with ao (demo and tests)"
    busy_texts: ClassVar[tuple[str, ...]] = ("working…",)
    submit_delay: ClassVar[float] = 0.05
    ready_timeout: ClassVar[float] = 20.0
    PROMPT: ClassVar[str] = "demo› "
    shows_limits: ClassVar[bool] = True

    def command(self, ctx: LaunchContext) -> str:
        return f"{shlex.quote(sys.executable)} -m ao.agents.demo_agent"

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
    binary: ClassVar[str | None] = "codex"
    shows_limits: ClassVar[bool] = True
    passthrough: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_HOME")
    description: ClassVar[str] = "OpenAI Codex CLI"
    busy_texts: ClassVar[tuple[str, ...]] = ("Esc to interrupt", "esc to interrupt")

    def command(self, ctx: LaunchContext) -> str:
        mode = "--full-auto" if ctx.sandboxed else ""
        return f"codex {mode}".strip()

    def resume_command(self, ctx: LaunchContext) -> str:
        return "codex resume --last"

    def is_ready(self, screen: str) -> bool:
        return "›" in screen or "▌" in screen


@dataclass
class AiderAgent(Profile):
    name: ClassVar[str] = "aider"
    binary: ClassVar[str | None] = "aider"
    passthrough: ClassVar[tuple[str, ...]] = (
        "OPENAI_API_KEY", "OPENAI_API_BASE", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
        "GEMINI_API_KEY", "AIDER_MODEL")
    description: ClassVar[str] = "Aider"
    waiting_texts: ClassVar[tuple[str, ...]] = ("(Y)es/(N)o", "[Yes]:")

    def command(self, ctx: LaunchContext) -> str:
        return "aider --yes-always" if ctx.sandboxed else "aider"

    def resume_command(self, ctx: LaunchContext) -> str:
        return self.command(ctx) + " --restore-chat-history"

    def is_ready(self, screen: str) -> bool:
        return bool(re.search(r"^\S*> ?$", screen.rstrip().splitlines()[-1] if screen.strip()
                              else "", re.M))


@dataclass
class GeminiAgent(Profile):
    name: ClassVar[str] = "gemini"
    binary: ClassVar[str | None] = "gemini"
    passthrough: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY", "GOOGLE_API_KEY",
                                              "GOOGLE_CLOUD_PROJECT", "GOOGLE_GENAI_USE_VERTEXAI")
    description: ClassVar[str] = "Google Gemini CLI"
    clear_keys: ClassVar[tuple[str, ...]] = ("Escape", "Escape")
    clear_only_drafts: ClassVar[bool] = True
    busy_texts: ClassVar[tuple[str, ...]] = ("esc to cancel",)
    waiting_texts: ClassVar[tuple[str, ...]] = ("Allow execution", "Apply this change?")

    def command(self, ctx: LaunchContext) -> str:
        return "gemini --yolo" if ctx.sandboxed else "gemini"

    def is_ready(self, screen: str) -> bool:
        return "Type your message" in screen or ">" in screen


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
