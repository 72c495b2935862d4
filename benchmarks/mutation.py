"""A mutation pass over the pure decisions (`src/ao/decide/`) and the agent profiles: does the
suite fail when their behaviour breaks? Run on demand (it takes a while), never in CI.

Each mutant is one small change to one module, made in a copy of `src/`: a comparison turned
(`<` to `<=`, `==` to `!=`, `in` to `not in`), `and` to `or`, a `not` dropped, a number moved
by one, `True` and `False` swapped, an `if`'s condition negated, a returned value replaced by
None. The module's tests run against the copy (the test files listed for it below, `-x`): a
failing test kills the mutant; one that passes everything survives and is reported with its
line, so a test can be written for it.

Beside the generated mutants, the profile quirks (each a piece of measured agent behaviour,
docs/agents.md) are reverted one at a time by hand-written patches (QUIRKS below), each with
the test meant to catch it: the report says whether it did.

Run: python benchmarks/mutation.py [--modules activity,gate] [--per-module 8] [--seed 1]
       [--quirks-only] [--report docs/mutation.md] [--again LOG]
(`--again LOG`: LOG is an earlier run's printed lines; its survivors run again, the rest of
its outcomes are kept: the check that the tests written for the survivors kill them.)
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DECIDE = REPO / "src" / "ao" / "decide"

# the test files that exercise each decision module's behaviour (its own, and the ones that
# drive it through the loop); the agent CLIs are taken off PATH, so their real-CLI tests skip
TESTS: dict[str, list[str]] = {
    "activity": ["test_agent_profiles.py", "test_decisions.py", "test_waiting.py"],
    "attention": ["test_decisions.py", "test_waiting.py", "test_board.py"],
    "compose": ["test_decisions.py", "test_github_gate.py", "test_review_findings.py"],
    "gate": ["test_decisions.py", "test_github_gate.py", "test_review_findings.py",
             "test_steps.py"],
    "limits": ["test_decisions.py", "test_quota.py", "test_lifecycle.py"],
    "overlap": ["test_decisions.py", "test_overlap.py"],
    "pickup": ["test_decisions.py", "test_pickup.py"],
    "placement": ["test_decisions.py", "test_hosts.py", "test_memory.py"],
    "plan": ["test_decisions.py", "test_plan.py", "test_plan_import.py"],
    "plan_graph": ["test_decisions.py", "test_plan.py", "test_layers.py"],
    "plan_import": ["test_decisions.py", "test_plan_import.py"],
    "prices": ["test_decisions.py", "test_quota.py", "test_planner.py"],
    "prompts": ["test_decisions.py", "test_plan.py", "test_steps.py"],
    "reactions": ["test_decisions.py", "test_github_gate.py", "test_review_findings.py",
                  "test_quota.py", "test_lifecycle.py"],
    "reaction_types": ["test_decisions.py", "test_github_gate.py", "test_review_findings.py",
                       "test_lifecycle.py"],
    "redmain": ["test_decisions.py", "test_redmain.py"],
    "scheduler": ["test_decisions.py", "test_plan.py", "test_lifecycle.py"],
    "steps": ["test_decisions.py", "test_steps.py"],
    "waiting": ["test_decisions.py", "test_waiting.py", "test_pickup.py"],
}


@dataclass(frozen=True)
class Quirk:
    """A measured agent behaviour reverted by hand: `old` replaced by `new` in `path`."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


PROFILES = "src/ao/world/agents/profiles.py"
CLAUDE = "src/ao/world/agents/claude_code.py"
QUIRKS = (
    Quirk("aider: one Enter a message, confirmed by the screen (line_oriented)", PROFILES,
          "    line_oriented: ClassVar[bool] = True\n    enter_while_busy: ClassVar[bool] = "
          "False\n    # C-u clears", "    line_oriented: ClassVar[bool] = False\n    "
          "enter_while_busy: ClassVar[bool] = False\n    # C-u clears",
          ("test_agent_profiles.py",)),
    Quirk("aider: never Enter into a running turn (enter_while_busy)", PROFILES,
          "    line_oriented: ClassVar[bool] = True\n    enter_while_busy: ClassVar[bool] = "
          "False", "    line_oriented: ClassVar[bool] = True\n    enter_while_busy: "
          "ClassVar[bool] = True", ("test_agent_profiles.py",)),
    Quirk("codex: its pane title says working or ready (title_activity)", PROFILES,
          "        t = title.strip()\n", "        return None\n", ("test_agent_profiles.py",)),
    Quirk("gemini: its pane title says working, ready or action required", PROFILES,
          "        t = re.sub(r\"\\s*\\([^)]*\\)\\s*$\", \"\", title).strip()",
          "        return None", ("test_agent_profiles.py",)),
    Quirk("codex: C-c clears only a draft (clear_only_drafts)", PROFILES,
          "    clear_keys: ClassVar[tuple[str, ...]] = (\"C-c\",)\n    clear_only_drafts: "
          "ClassVar[bool] = True\n    enter_while_busy: ClassVar[bool] = False  # Enter steers",
          "    clear_keys: ClassVar[tuple[str, ...]] = (\"C-c\",)\n    clear_only_drafts: "
          "ClassVar[bool] = False\n    enter_while_busy: ClassVar[bool] = False  # Enter steers",
          ("test_agent_profiles.py",)),
    Quirk("aider: a question is waiting only while it is the last line", PROFILES,
          "        if \"(Y)es/(N)o\" in last and last.endswith(\"]:\"):",
          "        if \"(Y)es/(N)o\" in screen:", ("test_agent_profiles.py",)),
    Quirk("aider: interrupted with C-c (stop_keys)", PROFILES,
          "    stop_keys: ClassVar[tuple[str, ...]] = (\"C-c\",)  # one C-c interrupts",
          "    stop_keys: ClassVar[tuple[str, ...]] = (\"Escape\",)  # one C-c interrupts",
          ("test_agent_profiles.py",)),
    Quirk("claude code: Escape twice clears the input (clear_keys)", CLAUDE,
          "    clear_keys: ClassVar[tuple[str, ...]] = (\"Escape\", \"Escape\")",
          "    clear_keys: ClassVar[tuple[str, ...]] = (\"C-u\",)", ("test_agent_profiles.py",)),
    Quirk("claude code: a turn runs while the status line says `esc to interrupt`", CLAUDE,
          "        if \"esc to interrupt\" in screen:\n", "        if False:\n",
          ("test_agent_profiles.py",)),
)


@dataclass
class Mutant:
    module: str
    line: int
    what: str
    source: str
    outcome: str = ""  # killed | survived | timeout | error
    seconds: float = 0.0


_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot,
    ast.IsNot: ast.Is}


def _sites(tree: ast.Module) -> Iterator[tuple[ast.AST, str]]:
    """Every place a mutation applies, with what it would do."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _SWAP:
                    yield node, f"cmp:{i}:{type(op).__name__}->{_SWAP[type(op)].__name__}"
        elif isinstance(node, ast.BoolOp):
            yield node, "boolop:" + ("and->or" if isinstance(node.op, ast.And) else "or->and")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, "not:dropped"
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            yield node, f"const:{node.value}->{not node.value}"
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float) and \
                not isinstance(node.value, bool):
            yield node, f"const:{node.value}->{node.value + 1}"
        elif isinstance(node, ast.If):
            yield node, "if:negated"
        elif isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            yield node, "return:None"


def _apply(node: ast.AST, what: str) -> None:
    kind = what.split(":")[0]
    if kind == "cmp":
        assert isinstance(node, ast.Compare)
        i = int(what.split(":")[1])
        node.ops[i] = _SWAP[type(node.ops[i])]()
    elif kind == "boolop":
        assert isinstance(node, ast.BoolOp)
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif kind == "const":
        assert isinstance(node, ast.Constant)
        node.value = (not node.value) if type(node.value) is bool else node.value + 1
    elif kind == "if":
        assert isinstance(node, ast.If)
        node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
    elif kind == "not":  # `not x` becomes `not not x`: x's own truth, the `not` gone
        assert isinstance(node, ast.UnaryOp)
        node.operand = ast.UnaryOp(op=ast.Not(), operand=node.operand)
    elif kind == "return":
        assert isinstance(node, ast.Return)
        node.value = ast.Constant(value=None)


def _docstring_nodes(tree: ast.Module) -> set[int]:
    """Docstrings, annotations and the type checker's imports (`if TYPE_CHECKING:`) are
    not behaviour: no mutant there."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and \
                node.test.id == "TYPE_CHECKING":
            skip |= {id(n) for n in ast.walk(node)}
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))
        for ann in (getattr(node, "annotation", None), getattr(node, "returns", None)):
            if ann is not None:
                skip |= {id(n) for n in ast.walk(ann)}
    return skip


def mutants(module: str) -> list[Mutant]:
    path = DECIDE / f"{module}.py"
    text = path.read_text()
    out = []
    base = ast.parse(text)
    seen = {ast.unparse(base)}
    skip = _docstring_nodes(base)
    sites = [(i, what, getattr(n, "lineno", 0)) for i, (n, what) in enumerate(_sites(base))
             if id(n) not in skip]
    for i, what, line in sites:
        tree = ast.parse(text)
        node = [n for n, _ in _sites(tree)][i]
        _apply(node, what)
        try:
            source = ast.unparse(ast.fix_missing_locations(tree))
        except (ValueError, TypeError, AssertionError):
            continue
        if source not in seen:  # no change is no mutant; two ways to one change, one
            seen.add(source)
            out.append(Mutant(module, line, what, source))
    return out


def _env(src: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    # the real agent CLIs off PATH: their tests skip (minutes each); the decisions' own stay
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if "ao-ci" not in p)
    return env


def run_tests(src: Path, tests: list[str], timeout: float) -> tuple[str, float]:
    t0 = time.monotonic()
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-n0", "-p",
                            "no:cacheprovider", "-p", "no:warnings", "-o", "addopts=",
                            *[str(REPO / "tests" / t) for t in tests]],
                           cwd=REPO, env=_env(src), capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - t0
    outcome = {0: "survived", 1: "killed"}.get(r.returncode, "error")
    return outcome, time.monotonic() - t0


def _copy_src(tmp: Path) -> Path:
    src = tmp / "src"
    shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    return src


FIRST = "test_decisions.py"  # the pure decisions' exact tests: a second; most mutants die here


def try_mutant(m: Mutant, timeout: float) -> Mutant:
    with tempfile.TemporaryDirectory(prefix="ao-mutant-") as tmp:
        src = _copy_src(Path(tmp))
        (src / "ao" / "decide" / f"{m.module}.py").write_text(m.source)
        tests = TESTS[m.module]
        m.outcome, m.seconds = run_tests(src, [FIRST], timeout) if FIRST in tests else ("", 0)
        rest = [t for t in tests if t != FIRST]
        if m.outcome in ("", "survived") and rest:  # the module's other tests, the slow ones
            first = m.seconds
            m.outcome, m.seconds = run_tests(src, rest, timeout)
            m.seconds += first
    return m


def try_quirk(q: Quirk, timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="ao-quirk-") as tmp:
        src = _copy_src(Path(tmp))
        target = Path(tmp) / q.path
        text = target.read_text()
        if q.old not in text:
            return "stale (the quirk's code moved: update QUIRKS)"
        target.write_text(text.replace(q.old, q.new, 1))
        return run_tests(src, list(q.tests), timeout)[0]


def report(results: list[Mutant], quirks: list[tuple[Quirk, str]], path: Path,
           seconds: float, sample: str) -> None:
    lines = ["# Mutation report", "",
             "Written by `python benchmarks/mutation.py` (run on demand; not in CI). A mutant is "
             "one small change to a decision module; the module's tests (benchmarks/mutation.py "
             "`TESTS`) ran against it with the agent CLIs off PATH.", "",
             f"Run: {time.strftime('%Y-%m-%d')}, {sample}, {seconds / 60:.0f} minutes.", "",
             "| module | mutants | killed | survived | timeout/error | killed % |",
             "|---|---|---|---|---|---|"]
    by: dict[str, list[Mutant]] = {}
    for m in results:
        by.setdefault(m.module, []).append(m)
    total = killed = 0
    for mod, ms in sorted(by.items()):
        k = sum(m.outcome in ("killed", "timeout") for m in ms)
        s = sum(m.outcome == "survived" for m in ms)
        e = sum(m.outcome in ("timeout", "error") for m in ms)
        total, killed = total + len(ms), killed + k
        lines.append(f"| {mod} | {len(ms)} | {k} | {s} | {e} | {100 * k / len(ms):.0f}% |")
    if total:
        lines.append(f"| **all** | {total} | {killed} | {total - killed} | | "
                     f"**{100 * killed / total:.0f}%** |")
    lines += ["", "A timeout counts as killed (the mutant hung the tests).", "",
              "## Surviving mutants", ""]
    lines += [f"- `decide/{m.module}.py:{m.line}` {m.what}" for m in results
              if m.outcome == "survived"] or ["none"]
    lines += ["", "## Profile quirks reverted", "", "| quirk | caught by | outcome |",
              "|---|---|---|"]
    lines += [f"| {q.name} | {', '.join(q.tests)} | {o} |" for q, o in quirks]
    path.write_text("\n".join(lines) + "\n")


def line_of(m: Mutant, note: str = "") -> str:
    """A mutant's printed line: its outcome, time and place (what `earlier` reads back)."""
    return f"{m.outcome:9} {m.seconds:5.0f} s  decide/{m.module}.py:{m.line} {m.what}{note}"


def earlier(log: Path, modules: list[str]) -> tuple[list[Mutant], list[Mutant]]:
    """An earlier run's outcomes from its printed lines, matched to the mutants the modules
    make now (by line, kind and order among their like): those it killed, kept, and those
    to run again (it saw them survive or fail). Its mutants only: a sample stays the sample."""
    seen: dict[tuple[str, int, str], list[str]] = {}
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0] in ("killed", "survived", "timeout", "error") and \
                parts[3].startswith("decide/"):
            mod, at = parts[3].removeprefix("decide/").split(".py:")
            seen.setdefault((mod, int(at), parts[4]), []).append(parts[0])
    kept: list[Mutant] = []
    again: list[Mutant] = []
    for mod in modules:
        for m in mutants(mod):
            outcomes = seen.get((mod, m.line, m.what), [])
            if not outcomes:
                continue  # not in that run (a sample): the same mutants, no others
            m.outcome = outcomes.pop(0)
            (kept if m.outcome in ("killed", "timeout") else again).append(m)
    return kept, again


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modules", default=",".join(TESTS))
    ap.add_argument("--per-module", type=int, default=0, help="a sample of each (0: all)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--quirks-only", action="store_true")
    ap.add_argument("--report", default=str(REPO / "docs" / "mutation.md"))
    ap.add_argument("--again", metavar="LOG", help="a run's printed lines: its outcomes kept, "
                    "its survivors run again (after tests were written for them)")
    ap.add_argument("--again-what", default="a sample", help="what that run was, for the report")
    a = ap.parse_args()
    t0 = time.monotonic()
    rng = random.Random(a.seed)
    todo: list[Mutant] = []
    kept: list[Mutant] = []
    if a.again:
        kept, todo = earlier(Path(a.again), a.modules.split(","))
    elif not a.quirks_only:
        for mod in a.modules.split(","):
            ms = mutants(mod)
            if a.per_module and len(ms) > a.per_module:
                ms = rng.sample(ms, a.per_module)
            todo += ms
    with ThreadPoolExecutor(a.jobs) as pool:
        quirk_runs = [(q, pool.submit(try_quirk, q, a.timeout)) for q in QUIRKS]
        done = list(kept)
        for m in kept:  # the printed lines stay a whole record, for the next `--again`
            print(line_of(m, " (earlier)"))
        for m in pool.map(lambda m: try_mutant(m, a.timeout), todo):
            done.append(m)
            print(line_of(m), flush=True)
        quirks = [(q, f.result()) for q, f in quirk_runs]
    for q, o in quirks:
        print(f"quirk {o:9} {q.name}")
    sample = f"{a.per_module} mutants a module, seed {a.seed}" if a.per_module \
        else "every mutant"
    if a.again:
        sample = (f"an earlier run's {len(kept) + len(todo)} mutants ({a.again_what}): "
                  f"{len(kept)} killed there ({100 * len(kept) / (len(kept) + len(todo)):.0f}%), "
                  f"its {len(todo)} survivors run again here, after tests were written for "
                  "them")
    report(done, quirks, Path(a.report), time.monotonic() - t0, sample)
    killed = sum(m.outcome in ("killed", "timeout") for m in done)
    print(f"{killed} of {len(done)} mutants killed"
          + (f" ({100 * killed / len(done):.0f}%; target >= 90%)" if done else "")
          + f"; quirks caught: {sum(o == 'killed' for _, o in quirks)} of {len(quirks)}")


if __name__ == "__main__":
    main()
