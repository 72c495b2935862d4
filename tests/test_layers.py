"""The layering contracts (pyproject.toml, run by `lint-imports` in .ci/run) cover every module:
a module added later cannot escape them by not being listed."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import ao

FACES = {"ao.cli", "ao.tui", "ao.web", "ao.__main__"}


def test_every_core_module_is_under_the_core_contract() -> None:
    data = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    contracts = data["tool"]["importlinter"]["contracts"]
    core = next(c for c in contracts if c["name"].startswith("The core never imports a face"))
    modules = {m.name for m in pkgutil.iter_modules(ao.__path__, "ao.")}
    assert modules - FACES - set(core["source_modules"]) == set()
    assert FACES & set(core["source_modules"]) == set()
    # the "only X" contracts take the whole package, with X's own import the one exception
    for c in contracts:
        if c["name"].startswith("Only "):
            assert c["source_modules"] == ["ao"], c["name"]


def test_only_workspace_runs_git() -> None:
    """git is run by workspace.py alone (the demo agent, which plays an agent's part, aside):
    a call whose argv starts with "git" anywhere else is a layering break."""
    import ast

    src = Path(ao.__file__).parent
    allowed = {src / "workspace.py", src / "agents" / "demo_agent.py"}
    found = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and node.args and \
                    isinstance(node.args[0], ast.List | ast.Tuple) and node.args[0].elts and \
                    isinstance(node.args[0].elts[0], ast.Constant) and \
                    node.args[0].elts[0].value == "git" and path not in allowed:
                found.append(f"{path.relative_to(src)}:{node.lineno}")
    assert found == []
