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
