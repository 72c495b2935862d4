"""Forges by kind: `local` (the embedded default) and `github`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a store is handed in: its type only
    from ao.config import ProjectConfig
    from ao.decide.plan import Plan
    from ao.record.forge import Forge
    from ao.record.store import Store



def for_project(project: ProjectConfig, store: Store, plan: Plan | None = None) -> Forge:
    if project.forge == "github":
        from ao.world.forge.github import GitHubForge

        return GitHubForge.from_env(project, store)
    from ao.world.forge.local import LocalForge

    return LocalForge(project, store, plan)
