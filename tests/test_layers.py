"""The layering contracts (pyproject.toml, run by `lint-imports` in .ci/run) cover every module:
a module added later cannot escape them by not being listed."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import ao
from ao.decide.plan_graph import components

FACES = {"ao.cli", "ao.tui", "ao.web", "ao.__main__"}
LAYERS = ["ao.loop", "ao.services", "ao.world", "ao.decide", "ao.record"]


def test_every_core_module_is_under_the_core_contract() -> None:
    data = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    contracts = data["tool"]["importlinter"]["contracts"]
    core = next(c for c in contracts if c["name"].startswith("The core never imports a face"))
    modules = {m.name for m in pkgutil.iter_modules(ao.__path__, "ao.")}
    assert modules - FACES - set(core["source_modules"]) == set()
    assert FACES & set(core["source_modules"]) == set()
    # the folders are the layers, from the top, and the layers contract names them all
    layers = next(c for c in contracts if c["type"] == "layers")
    assert layers["layers"] == LAYERS
    folders = {m.name for m in pkgutil.iter_modules(ao.__path__, "ao.") if m.ispkg}
    assert folders == set(LAYERS) | {"ao.cli", "ao.tui", "ao.web"}
    # the "only X" contracts take the whole package, with X's own import the one exception
    for c in contracts:
        if c["name"].startswith("Only "):
            assert c["source_modules"] == ["ao"], c["name"]


def test_only_workspace_runs_git() -> None:
    """git is run by workspace.py alone (the demo agent, which plays an agent's part, aside):
    a call whose argv starts with "git" anywhere else is a layering break."""
    import ast

    src = Path(ao.__file__).parent
    allowed = {src / "world" / "workspace.py", src / "world" / "agents" / "demo_agent.py"}
    found = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(_parse(path.read_text(encoding="utf-8"))):  # type: ignore[arg-type]
            if isinstance(node, ast.Call) and node.args and \
                    isinstance(node.args[0], ast.List | ast.Tuple) and node.args[0].elts and \
                    isinstance(node.args[0].elts[0], ast.Constant) and \
                    node.args[0].elts[0].value == "git" and path not in allowed:
                found.append(f"{path.relative_to(src)}:{node.lineno}")
    assert found == []


def _parse(text: str) -> object:
    """ast.parse with the garbage collector held off: a finalizer run in the middle of it (an
    earlier test's asyncio transport, collected late) trips CPython 3.11.7's "AST constructor
    recursion depth mismatch" SystemError (python/cpython#106905, fixed in later releases)."""
    import ast
    import gc

    if gc.isenabled():
        gc.collect(0)  # the young generation, where an earlier test's leftovers wait
    gc.disable()
    try:
        return ast.parse(text)
    finally:
        gc.enable()


def test_the_import_graph_has_no_circle() -> None:
    """No module imports itself back through others (imports made for type checking aside):
    the layers contract checks between folders, this within them."""
    import pytest

    grimp = pytest.importorskip("grimp")  # import-linter's graph, installed beside it
    graph = grimp.build_graph("ao", exclude_type_checking_imports=True)
    mods = sorted(m for m in graph.modules if m.startswith("ao"))
    circles = components(mods, lambda m: sorted(
        d for d in graph.find_modules_directly_imported_by(m) if d.startswith("ao")))
    assert circles == []
