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


# ---- the quirks measured on the real CLIs, each caught here when reverted ------------------
# (benchmarks/mutation.py reverts each one and runs this file: docs/mutation.md)

@pytest.mark.parametrize(("title", "want"), [
    ("Ready", Activity.IDLE), ("⠦ Working", Activity.ACTIVE),
    ("[ ! ] Action Required", Activity.WAITING_INPUT), ("codex", None)])
def test_codex_reads_its_run_state_from_the_pane_title(title: str, want: object) -> None:
    """Codex sets its run state in the pane title, also while a reply streams and the screen
    looks idle (a working Codex was read as idle for 19 s without it)."""
    assert get("codex").title_activity(title) is want


@pytest.mark.parametrize(("title", "want"), [
    ("◇  Ready (shop)", Activity.IDLE), ("✦  Working… (shop)", Activity.ACTIVE),
    ("✋  Action Required (shop)", Activity.WAITING_INPUT), ("gemini", None)])
def test_gemini_reads_its_run_state_from_the_pane_title(title: str, want: object) -> None:
    assert get("gemini").title_activity(title) is want


def test_enter_goes_into_a_running_turn_only_where_it_queues() -> None:
    """Measured: Codex steers the running turn with Enter, aider buffers the keys into its
    next question (a shell command approved by nobody); Claude Code and Gemini CLI queue it."""
    assert {n: get(n).enter_while_busy for n in ("codex", "aider", "claude-code", "gemini")} \
        == {"codex": False, "aider": False, "claude-code": True, "gemini": True}


def test_each_agent_is_interrupted_and_cleared_with_its_own_keys() -> None:
    """A turn in flight stops on Escape (Claude Code, Codex, Gemini CLI) but on C-c in aider,
    where Escape does nothing; Claude Code clears a draft with Escape twice (C-u clears one
    line), Gemini CLI too, Codex and aider with C-c (only with a draft: on an empty input
    C-c exits)."""
    stop = {n: get(n).stop_keys for n in ("claude-code", "codex", "gemini", "aider")}
    assert stop == {"claude-code": ("Escape",), "codex": ("Escape",), "gemini": ("Escape",),
                    "aider": ("C-c",)}
    clear = {n: get(n).clear_keys for n in ("claude-code", "codex", "gemini", "aider")}
    assert clear == {"claude-code": ("Escape", "Escape"), "codex": ("C-c",),
                     "gemini": ("Escape", "Escape"), "aider": ("C-c",)}


RULE = "─" * 60


def test_claude_code_is_working_while_its_status_line_says_esc_to_interrupt() -> None:
    """The status line ends `esc to interrupt` while a turn runs; with a task list drawn
    between the spinner and the box, the status line is all that tells (the screen texts of
    docs in the reference, 2.1.329)."""
    working = "\n".join([
        "● Update(notes.md)", "✽ Topsy-turvying… (12s · ↓ 310 tokens)",
        "  ⎿  ☐ write the tests", "     ☐ run them", "", RULE, "❯ ", RULE,
        "  ⏵⏵ auto mode on · esc to interrupt"])
    idle = working.replace(" · esc to interrupt", " (shift+tab to cycle)").replace(
        "✽ Topsy-turvying… (12s · ↓ 310 tokens)", "✻ Worked for 12s · done 5:04 AM")
    cc = get("claude-code")
    assert cc.activity(working) is Activity.ACTIVE
    assert cc.activity(idle) is Activity.IDLE
    assert not cc.settled(working)


ACT, IDL, WAI = Activity.ACTIVE, Activity.IDLE, Activity.WAITING_INPUT


@pytest.mark.parametrize(("seen", "hook", "hook_at", "hooks", "changed", "now", "settled",
                          "want"), [
    (WAI, ACT, 10.0, True, 5.0, 20.0, False, WAI),    # a prompt on screen always waits
    (None, ACT, 10.0, True, 12.0, 100.0, False, ACT),  # hooks speak first
    (IDL, ACT, 10.0, True, 9.0, 100.0, False, ACT),   # a screen older than the hook: the hook
    (IDL, ACT, 10.0, True, 12.0, 14.0, False, ACT),   # changed after it, still for 2 s: the hook
    (IDL, ACT, 10.0, True, 12.0, 17.0, False, IDL),   # still for 5 s: the screen
    (IDL, ACT, 10.0, True, 12.0, 12.5, True, IDL),    # the screen says the turn ended: at once
    (IDL, WAI, 10.0, True, 12.0, 12.5, False, IDL),   # a prompt answered or dismissed: at once
    (ACT, ACT, 10.0, True, 12.0, 100.0, False, ACT),  # the same state
    (IDL, ACT, None, True, 12.0, 17.0, False, IDL),   # a hook with no time
    (ACT, None, None, True, 12.0, 100.0, False, ACT),  # hooks, none yet: the screen
    (ACT, IDL, 10.0, False, 12.0, 100.0, False, ACT),  # no hooks: the screen
    (None, None, None, False, 12.0, 16.9, False, ACT),  # nothing known, changed 4.9 s ago
    (None, None, None, False, 12.0, 17.0, False, IDL),  # still for 5 s: idle
])
def test_activity_is_inferred_from_hooks_screen_and_time(
        seen: Activity | None, hook: Activity | None, hook_at: float | None, hooks: bool,
        changed: float, now: float, settled: bool, want: Activity) -> None:
    from ao.decide.activity import infer

    assert infer(seen, hook, hook_at, hooks, changed, now, settled) is want
