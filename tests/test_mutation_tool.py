"""The mutation pass's own mutants (benchmarks/mutation.py): each changes the module, and no
two are the same change (a `not` that changed nothing counted as a survivor before)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import mutation


def test_every_mutant_changes_its_module_and_none_twice() -> None:
    for module in ("attention", "compose", "waiting"):
        text = (mutation.DECIDE / f"{module}.py").read_text()
        same = ast.unparse(ast.parse(text))
        ms = mutation.mutants(module)
        sources = [m.source for m in ms]
        assert ms and same not in sources and len(set(sources)) == len(sources), module
        kinds = {m.what.split(":")[0] for m in ms}
        # compose's every `not` heads an `if`: dropping it is the negated `if`, counted once
        assert kinds >= {"cmp", "boolop", "return", *(("not",) if module != "compose" else ())}


def test_a_dropped_not_keeps_the_operands_own_truth() -> None:
    tree = ast.parse("y = not x")
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.UnaryOp))
    mutation._apply(node, "not:dropped")
    assert ast.unparse(tree) == "y = not not x"
    for x in (0, 1, "", "a", None):
        scope: dict[str, object] = {"x": x}
        exec(compile(ast.fix_missing_locations(tree), "<m>", "exec"), scope)
        assert scope["y"] is bool(x)
