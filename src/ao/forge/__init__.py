"""Forges by kind: `local` (the embedded default) and `github`."""

from __future__ import annotations

from ..config import ProjectConfig
from ..plan import Plan
from ..store import Store
from .base import Forge


def for_project(project: ProjectConfig, store: Store, plan: Plan | None = None) -> Forge:
    if project.forge == "github":
        from .github import GitHubForge

        return GitHubForge.from_env(project, store)
    from .local import LocalForge

    return LocalForge(project, store, plan)
