"""Codex, Gemini CLI and Aider profiles read against screens captured from the real CLIs in
tmux (tests/screens/<cli>/, from codex 0.169.0, gemini-cli 0.61.0, aider 0.86.2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ao.record.state import Activity
from ao.world.agents import LaunchContext, get

SCREENS = Path(__file__).parent / "screens"


def screen(cli: str, name: str) -> str:
    return (SCREENS / cli / f"{name}.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize(("name", "want"), [
    ("04-ready", Activity.IDLE),                  # an answered question above the prompt
    ("06-after-typed-enter", Activity.IDLE),
    ("09-busy-hold", Activity.ACTIVE),            # the submitted "> message" stays on screen
    ("18-run-shell-question", Activity.WAITING_INPUT),
    ("19-after-run-shell", Activity.IDLE),        # "diff>" prompt
])
def test_aider_activity(name: str, want: Activity) -> None:
    assert get("aider").activity(screen("aider", name)) is want


def test_aider_never_reads_its_submitted_line_as_a_draft() -> None:
    aider = get("aider")
    assert aider.draft_pending(screen("aider", "05-typed-draft"), "hello aider typed")
    # while it works, "> HOLD10 think" is above "Waiting for": not a draft to press Enter on
    assert not aider.draft_pending(screen("aider", "09-busy-hold"), "HOLD10 think")
    assert aider.line_oriented  # one Enter per message, never a second that answers "Yes"
    assert aider.is_ready(screen("aider", "04-ready"))
    assert not aider.is_ready(screen("aider", "18-run-shell-question"))


def test_codex_readiness_drafts_and_approval() -> None:
    codex = get("codex")
    assert not codex.is_ready(screen("codex", "01-first-start"))  # the trust dialog
    assert codex.is_ready(screen("codex", "04-ready"))
    assert not codex.draft_pending(screen("codex", "04-ready"), "")
    assert codex.draft_pending(screen("codex", "05-typed-draft"), "hello codex first prompt")
    assert codex.draft_pending("› [Pasted Content 1681 chars]\n", "x" * 1681)
    assert codex.activity(screen("codex", "27-approval")) is Activity.WAITING_INPUT
    # the early input box of a codex still starting (docs/agents.md: its footer is only
    # "? for shortcuts"; a prompt sent then waits "for startup", and the trust dialog can
    # still come up over it): the ready screen with that footer is not ready
    early = "\n".join(ln for ln in screen("codex", "04-ready").splitlines()
                      if "default ·" not in ln and "for agents" not in ln) + \
        "\n  ? for shortcuts\n"
    assert not codex.is_ready(early)
    assert codex.clear_keys == ("C-c",) and codex.clear_only_drafts  # C-c on empty exits


def test_gemini_readiness_drafts_and_approval() -> None:
    gemini = get("gemini")
    assert not gemini.is_ready(screen("gemini", "01-first-start"))
    assert gemini.is_ready(screen("gemini", "04-ready"))
    assert not gemini.draft_pending(screen("gemini", "04-ready"), "")
    assert gemini.draft_pending(screen("gemini", "05-typed-draft"), "hello gemini typed")
    assert gemini.draft_pending(screen("gemini", "09-big-paste-draft"), "x\n" * 12)
    assert gemini.activity(screen("gemini", "16-approval")) is Activity.WAITING_INPUT


def test_commands_use_the_flags_that_exist(tmp_path: Path) -> None:
    ctx = LaunchContext(session_id="s-1", project="p", task="T-1", worktree=tmp_path,
                        prompt_file=tmp_path / "p.md", session_dir=tmp_path, sandboxed=True)
    codex = get("codex").command(ctx)
    assert "--no-daemon" in codex and "--dangerously-bypass-approvals-and-sandbox" in codex
    assert "--full-auto" not in codex
    aider = get("aider").command(ctx)
    assert "--no-gitignore" in aider and "--no-show-model-warnings" in aider
    assert get("gemini").env(ctx)["GEMINI_CLI_TRUST_WORKSPACE"] == "true"
