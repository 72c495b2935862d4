"""Claude Code, built from what was measured with the real CLI in tmux (docs/agents.md):
pre-answered first-run dialogs, hooks for state, Escape-twice to clear, readiness by the input
box, and never a paste while a permission prompt is up."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ao.errors import BadInput
from ao.record.state import Activity
from ao.world.agents.base import (
    HOOK_MARK,
    LaunchContext,
    LocalMachine,
    Machine,
    Profile,
    running_as_root,
    update_json,
)

HOOK_EVENTS = ("SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse",
               "PermissionRequest", "Notification", "Stop", "SessionEnd")
_RULE = re.compile(r"^\s*─{20,}\s*$", re.M)
# the spinner line above the input box while a turn runs: `✻ Undulating…`, `* Julienning… (9s ·
# ↓ 9 tokens)`; a turn that ended reads `✻ Worked for 2s · done 5:04 AM` (no ellipsis)
_SPINNER = re.compile(r"^\s*[^\s⎿│]\s+[A-Z][\w-]*…(\s+\(.*\))?\s*$")  # not a tool's `⎿  Running…`
_PERMISSION = ("Do you want to proceed?", "Esc to cancel · Tab to amend", "Do you want to create",
               "Do you want to make this edit", "Do you want to allow",
               # menus that wait on a human: AskUserQuestion, the /model picker and the like
               "Enter to select · ↑/↓ to navigate", "↑/↓ to navigate", "Enter to confirm · Esc")
BYPASS = ("bypassPermissions", "dangerously-skip-permissions")




@dataclass
class ClaudeCode(Profile):
    name: ClassVar[str] = "claude-code"
    binary: ClassVar[str | None] = "claude"
    description: ClassVar[str] = "Anthropic Claude Code"
    measured: ClassVar[tuple[str, str] | None] = ("2.1.329", "2.1.329")
    clear_keys: ClassVar[tuple[str, ...]] = ("Escape", "Escape")
    clear_gap: ClassVar[float] = 0.15
    clear_only_drafts: ClassVar[bool] = True
    submit_delay: ClassVar[float] = 0.2
    ready_timeout: ClassVar[float] = 45.0
    uses_hooks: ClassVar[bool] = True
    on_hosts: ClassVar[bool] = True  # prepare edits the host's files (LaunchContext.machine)
    shows_limits: ClassVar[bool] = True
    waiting_texts: ClassVar[tuple[str, ...]] = _PERMISSION
    passthrough: ClassVar[tuple[str, ...]] = (
        "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL",
        "CLAUDE_CODE_OAUTH_TOKEN",  # a subscription's login (`claude setup-token`)
        "CLAUDE_CONFIG_DIR", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX",
        "DISABLE_AUTOUPDATER", "DISABLE_TELEMETRY", "DISABLE_ERROR_REPORTING",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "NODE_EXTRA_CA_CERTS")

    def _bypass(self, ctx: LaunchContext) -> bool:
        return ctx.permission_mode in BYPASS

    def command(self, ctx: LaunchContext) -> str:
        if self._bypass(ctx):
            if running_as_root() and not ctx.sandboxed:
                raise BadInput(
                    "Claude Code refuses --dangerously-skip-permissions as root unless "
                    "IS_SANDBOX=1",
                    "set `sandboxed: true` for the project if its sessions really run in a "
                    "sandbox, or choose another permission_mode",
                )
            return "claude --dangerously-skip-permissions"
        if ctx.permission_mode:
            return f"claude --permission-mode {ctx.permission_mode}"
        return "claude"

    def resume_command(self, ctx: LaunchContext) -> str:
        return self.command(ctx) + " --continue"

    def env(self, ctx: LaunchContext) -> dict[str, str]:
        env = super().env(ctx)
        if ctx.sandboxed:
            env["IS_SANDBOX"] = "1"
        return env

    def prepare(self, ctx: LaunchContext) -> None:
        m = ctx.machine  # a host: its home, its files; its paths are physical already
        home = ctx.agent_home()
        trusted = str(ctx.worktree) if m else str(ctx.worktree.resolve())
        # the key the agent will actually get, which the project's `env:` may remap
        key = (ctx.agent_env if ctx.agent_env is not None else os.environ).get(
            "ANTHROPIC_API_KEY", "")

        def answer(data: dict[str, Any]) -> None:
            data["hasCompletedOnboarding"] = True
            data["hasSeenAutoDefaultNotice"] = True
            if key:
                responses = data.setdefault("customApiKeyResponses",
                                            {"approved": [], "rejected": []})
                approved = responses.setdefault("approved", [])
                if key[-20:] not in approved:
                    approved.append(key[-20:])
                rejected = responses.setdefault("rejected", [])
                if key[-20:] in rejected:
                    rejected.remove(key[-20:])
            project = data.setdefault("projects", {}).setdefault(trusted, {})
            project["hasTrustDialogAccepted"] = True

        update_json(home / ".claude.json", answer, m)
        if self._bypass(ctx):
            update_json(home / ".claude" / "settings.json",
                        lambda d: d.__setitem__("skipDangerousModePermissionPrompt", True), m)
        self.write_hooks(ctx)

    def forget(self, worktree: Path, machine: Machine | None = None) -> None:
        """The trust entry `prepare` added for this worktree, removed with it (else
        ~/.claude.json grows by one entry per session for ever); on its host, there."""
        m = machine or LocalMachine()
        path = str(worktree.resolve()) if machine is None and worktree.exists() \
            else str(worktree)
        update_json(m.home() / ".claude.json",
                    lambda data: (data.get("projects") or {}).pop(path, None), m, create=False)

    def write_hooks(self, ctx: LaunchContext) -> None:
        def hooks(data: dict[str, Any]) -> None:
            table = data.setdefault("hooks", {})
            for event in HOOK_EVENTS:
                entry: dict[str, Any] = {"hooks": [{"type": "command",
                                                    "command": ctx.hook_command(self.name, event)}]}
                if event in ("PreToolUse", "PostToolUse"):
                    entry["matcher"] = "*"
                # keep the user's own hooks for the event; replace only ours
                kept = [h for h in table.get(event, [])
                        if not any(" -m ao hook " in c.get("command", "")
                                   or HOOK_MARK in c.get("command", "")
                                   for c in h.get("hooks", []))]
                table[event] = [*kept, entry]

        update_json(ctx.worktree / ".claude" / "settings.local.json", hooks, ctx.machine)

    def _box(self, screen: str) -> str | None:
        """The text in the input box, or None when no input box is drawn."""
        if any(t in screen for t in _PERMISSION) or len(_RULE.findall(screen)) < 2:
            return None
        for line in reversed(screen.splitlines()):
            s = line.strip()
            if s.startswith("❯"):
                return s[1:].strip()
        return None

    def is_ready(self, screen: str) -> bool:
        return self._box(screen) is not None

    @staticmethod
    def _working(screen: str) -> bool:
        """A turn runs: the status line ends `esc to interrupt`, or (while someone has text in
        the box, which replaces that status line) the spinner line stands above the box."""
        if "esc to interrupt" in screen:
            return True
        rules = list(_RULE.finditer(screen))
        if len(rules) < 2:
            return False
        above = [ln for ln in screen[:rules[-2].start()].splitlines() if ln.strip()]
        # the effort indicator (`◐ medium · /effort`) may sit between the spinner and the box
        return any(_SPINNER.match(ln) for ln in above[-2:])

    def activity(self, screen: str) -> Activity | None:
        if any(t in screen for t in _PERMISSION):
            return Activity.WAITING_INPUT
        if self._working(screen):
            return Activity.ACTIVE
        if self._box(screen) is not None:
            return Activity.IDLE
        return None

    def settled(self, screen: str) -> bool:
        """An Escape interrupt fires no Stop hook: Claude puts the prompt back in the box
        (or says "Interrupted"). A box holding text with no spinner is a turn that ended."""
        if "esc to interrupt" in screen:
            return False
        box = self._box(screen)
        return "What should Claude do instead" in screen or bool(box and box.strip())

    def draft_pending(self, screen: str, text: str) -> bool:
        box = self._box(screen)
        return box is not None and box != "" and not box.startswith("Press up to edit")

    def draft_is(self, screen: str, text: str) -> bool:
        """The box shows `text`: its words (the box wraps them) begin the message, or the
        box shows the placeholder Claude Code draws for a long bracketed paste."""
        box = self._box(screen)
        if not box or box.startswith("Press up to edit"):
            return False
        if box.startswith("[Pasted text"):
            return True
        shown, sent = " ".join(box.split()), " ".join(text.split())
        return bool(shown) and sent.startswith(shown[:60])
