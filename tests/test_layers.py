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


DEEPEST = 12  # modules in the longest import chain (26, then 17, before the pieces met at the top)


def test_the_import_chain_gets_no_deeper() -> None:
    """The longest chain of run-time imports (`ao.__main__ -> ao.cli.main -> ... ->
    ao.world.channel`), a package's `__init__` counted where one of its modules is imported:
    a piece that imports the one below it at run time instead of meeting it in the class
    that composes them (Store, GitHubForge, Fleet), or being handed it, makes it deeper."""
    import functools

    import pytest

    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("ao", exclude_type_checking_imports=True)

    def imported(m: str) -> set[str]:
        # importing a.b.c runs a.b's __init__ first: a package's own imports count too
        out = {d for d in graph.find_modules_directly_imported_by(m) if d.startswith("ao")}
        return {p for d in out for p in (".".join(d.split(".")[:k]) for k in
                                         range(2, d.count(".") + 2))
                if p != m and not m.startswith(p + ".")}

    @functools.cache
    def chain(m: str) -> tuple[str, ...]:
        return (m, *max((chain(d) for d in imported(m)), key=len, default=()))

    deepest = max((chain(m) for m in graph.modules if m.startswith("ao")), key=len)
    assert len(deepest) <= DEEPEST, " -> ".join(deepest)


def test_every_module_imports() -> None:
    """Every module imports, in a fresh interpreter (a name moved to the type checker's
    imports, or a circle, fails here before it fails a user)."""
    import subprocess
    import sys

    names = [m.name for m in pkgutil.walk_packages(ao.__path__, "ao.")
             if not m.name.endswith("demo_agent")]  # a program: it takes over the terminal
    script = ("import importlib, sys\nbad = []\nfor n in sys.argv[1:]:\n"
              "    try:\n        importlib.import_module(n)\n"
              "    except Exception as e:\n        bad.append(f'{n}: {e!r}')\n"
              "print('\\n'.join(bad))\n")
    r = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr
