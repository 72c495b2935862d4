"""Does the suite notice when a profile quirk is reverted? Each quirk below is one line an
agent profile holds because the real CLI needs it (docs/agents.md). This script copies the
checkout, reverts each quirk in turn in the copy, runs the tests that should notice, and prints
which were caught. It exits 1 if any revert left the tests green.

    python tests/quirks.py              # every quirk
    python tests/quirks.py aider-enter  # those whose name starts with the words given

The real CLIs must be on PATH (`.ci/run` installs them); a quirk whose tests were all skipped
is reported as "not run", never as caught. Your checkout is never modified.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILES = "src/ao/world/agents/profiles.py"
CLAUDE = "src/ao/world/agents/claude_code.py"
CLIS = ["tests/test_agent_profiles.py", "tests/test_agent_clis.py"]
CLAUDE_TESTS = ["tests/test_claude_code.py"]


@dataclass(frozen=True)
class Quirk:
    name: str
    why: str  # what goes wrong live without it
    path: str
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]
    select: str  # pytest -k


def _q(name: str, why: str, path: str, old: str, new: str, select: str) -> Quirk:
    files = CLAUDE_TESTS if path == CLAUDE else CLIS
    return Quirk(name, why, path, old, new, tuple(files), select)


QUIRKS = [
    _q("aider-enter-while-busy", "an Enter typed while aider works answers its next question",
       PROFILES, "    line_oriented: ClassVar[bool] = True\n    enter_while_busy: ClassVar[bool]"
       " = False", "    line_oriented: ClassVar[bool] = True\n    enter_while_busy: "
       "ClassVar[bool] = True", "aider"),
    _q("aider-line-oriented", "a second Enter answers aider's next question 'Yes'",
       PROFILES, "confirmed by the screen.\n    line_oriented: ClassVar[bool] = True",
       "confirmed by the screen.\n    line_oriented: ClassVar[bool] = False", "aider"),
    _q("aider-clear-key", "C-u clears one line of a multi-line draft",
       PROFILES, 'only with a draft\n    clear_keys: ClassVar[tuple[str, ...]] = ("C-c",)\n'
       '    clear_only_drafts: ClassVar[bool] = True\n    excludes',
       'only with a draft\n    clear_keys: ClassVar[tuple[str, ...]] = ("C-u",)\n'
       '    clear_only_drafts: ClassVar[bool] = True\n    excludes', "aider"),
    _q("aider-clear-only-drafts", "C-c on an empty prompt starts aider's exit",
       PROFILES, '("C-c",)\n    clear_only_drafts: ClassVar[bool] = True\n    excludes',
       '("C-c",)\n    clear_only_drafts: ClassVar[bool] = False\n    excludes', "aider"),
    _q("aider-answered-question", "an answered question above the prompt reads as waiting",
       PROFILES, 'if "(Y)es/(N)o" in last and last.endswith("]:"):',
       'if "(Y)es/(N)o" in screen:', "aider"),
    _q("aider-pushes-for-it", "aider never pushes under --yes-always; its work stayed local",
       PROFILES, "    pushes_itself: ClassVar[bool] = False", "    pushes_itself: ClassVar[bool]"
       " = True", "aider and pushes_for"),
    _q("codex-no-daemon", "codex's background app-server outlives the session",
       PROFILES, 'flags = ["--no-daemon", "-c"', 'flags = ["-c"', "codex and kill or flags"),
    _q("codex-title", "codex's state is read from its pane title",
       PROFILES, '        t = title.strip()\n', '        t = title.strip()\n        return None\n',
       "codex"),
    _q("codex-clear-only-drafts", "C-c on an empty input exits codex",
       PROFILES, '("C-c",)\n    clear_only_drafts: ClassVar[bool] = True\n    enter_while_busy',
       '("C-c",)\n    clear_only_drafts: ClassVar[bool] = False\n    enter_while_busy', "codex"),
    _q("codex-enter-while-busy", "Enter steers codex's running turn",
       PROFILES, "    enter_while_busy: ClassVar[bool] = False  # Enter steers",
       "    enter_while_busy: ClassVar[bool] = True  # Enter steers", "codex"),
    _q("codex-trust", "codex stops at its trust dialog for the main repository root",
       PROFILES, "machine codex runs on.\"\"\"\n", "machine codex runs on.\"\"\"\n        return\n",
       "codex"),
    _q("codex-ready-footer", "the early input box takes a paste before startup ends",
       PROFILES, ' in screen and "default ·" in screen', " in screen", "codex"),
    _q("gemini-trust-env", "gemini stops at its folder-trust dialog",
       PROFILES, 'return {**super().env(ctx), "GEMINI_CLI_TRUST_WORKSPACE": "true"}',
       "return super().env(ctx)", "gemini"),
    _q("gemini-auth", "gemini asks how to authenticate",
       PROFILES, '        update_json(ctx.agent_home() / ".gemini"',
       '        return\n        update_json(ctx.agent_home() / ".gemini"', "gemini"),
    _q("gemini-clear-keys", "one Escape does not clear gemini's input",
       PROFILES, 'clear_keys: ClassVar[tuple[str, ...]] = ("Escape", "Escape")\n    clear_gap',
       'clear_keys: ClassVar[tuple[str, ...]] = ("Escape",)\n    clear_gap', "gemini"),
    _q("gemini-title", "gemini's state is read from its pane title",
       PROFILES, '        t = re.sub(', '        return None\n        t = re.sub(', "gemini"),
    _q("claude-clear-keys", "one Escape does not clear Claude Code's input",
       CLAUDE, 'clear_keys: ClassVar[tuple[str, ...]] = ("Escape", "Escape")',
       'clear_keys: ClassVar[tuple[str, ...]] = ("Escape",)', "draft or leftover"),
    _q("claude-onboarding", "Claude Code starts in its first-run dialogs",
       CLAUDE, '            data["hasCompletedOnboarding"] = True\n', "", "first_start"),
    _q("claude-trust", "Claude Code asks whether to trust the worktree",
       CLAUDE, '            project["hasTrustDialogAccepted"] = True\n', "", "first_start"),
    _q("claude-api-key", "Claude Code asks whether to use the API key",
       CLAUDE, "                    approved.append(key[-20:])\n", "                    pass\n",
       "first_start"),
    _q("claude-spinner", "a working Claude with a person's draft reads as idle",
       CLAUDE, "        return any(_SPINNER.match(ln) for ln in above[-2:])",
       "        return False", "draft"),
    _q("claude-settled", "an Escape interrupt (no Stop hook) leaves the agent 'working'",
       CLAUDE, '        return "What should Claude do instead" in screen or bool(box and '
       "box.strip())", "        return False", "escape or dismissed"),
    _q("claude-tool-matcher", "tool hooks without a matcher never fire",
       CLAUDE, '                    entry["matcher"] = "*"\n', "                    pass\n",
       "first_start or permission"),
]


def copy_checkout(dest: Path) -> None:
    """The tracked files as they are in the working tree (edits included)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)


def run(copy: Path, q: Quirk) -> tuple[str, str]:
    path = copy / q.path
    original = path.read_text()
    if original.count(q.old) != 1:
        return "stale", f"the quirk's line occurs {original.count(q.old)} times in {q.path}"
    path.write_text(original.replace(q.old, q.new))
    try:
        env = {**os.environ, "PYTHONPATH": str(copy / "src")}
        r = subprocess.run([sys.executable, "-m", "pytest", *q.tests, "-k", q.select, "-x",
                            "-n", "2", "-p", "no:cacheprovider", "-rfs"],
                           cwd=copy, env=env, capture_output=True, text=True, timeout=1200)
    finally:
        path.write_text(original)
    last = (r.stdout.strip().splitlines() or [""])[-1]
    if re.search(r"\d+ failed", last):  # (-x under xdist may exit 2 rather than 1)
        failed = re.findall(r"^FAILED (\S+)", r.stdout, re.M)
        return "caught", ", ".join(failed) or last
    if r.returncode == 0 and re.search(r"\d+ passed", last):
        return "MISSED", last
    return "not run", last


def main(argv: list[str]) -> int:
    chosen = [q for q in QUIRKS if not argv or any(q.name.startswith(a) for a in argv)]
    with tempfile.TemporaryDirectory(prefix="ao-quirks-") as tmp:
        copy = Path(tmp)
        copy_checkout(copy)
        results = []
        for q in chosen:
            t = time.monotonic()
            verdict, detail = run(copy, q)
            results.append((q, verdict))
            print(f"{verdict:8} {q.name:26} {time.monotonic() - t:5.0f}s  {detail}", flush=True)
    missed = [q for q, v in results if v != "caught"]
    print(f"\n{len(results) - len(missed)} of {len(results)} reverted quirks caught")
    for q in missed:
        print(f"  not caught: {q.name}: {q.why}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
