"""`ao config show` and `ao init`."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from ao import config as cfgmod
from ao import paths
from ao.cli.output import emit_json, note, table
from ao.world import workspace

app = typer.Typer(help="Show the effective configuration and where each value came from.",
                  no_args_is_help=True)


@app.command("show")
def show(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print every effective setting with its source (default, a file, or an env var)."""
    cfg = cfgmod.load()
    rows = cfgmod.effective(cfg)
    if json_out:
        emit_json([{"key": k, "value": v, "source": s} for k, v, s in rows])
        return
    typer.echo(table(["key", "value", "source"], [(k, _fmt(v), s) for k, v, s in rows]))
    if not cfg.projects:
        typer.echo("\nno projects configured: run `ao init` in a repository", err=True)


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


STARTER = """\
# ao configuration for this repository (docs/configuration.md lists every key).
# Settings here override ~/.agent-orchestrator/config.yaml; AO_* env vars override both.
# tmux: {{socket: ao}}            # ao's own tmux server (AO_TMUX_SOCKET overrides)
# poll_interval: 30s
projects:
  {name}:
    path: .                       # this clone
{repo_line}
    default_branch: {branch}
    forge: {forge}                 # github (PRs, checks, reviews) or local (no account needed)
    agent: claude-code            # codex | aider | gemini | demo | {{command: "x {{prompt_file}}"}}
    max_concurrent: 5             # sessions running at once; the rest wait, critical path first
    # session_prefix: {prefix}     # session ids: {prefix}-1, {prefix}-2, ...
    # plan: plans/{name}.yaml
    # ci: {{command: "pytest -q", timeout: 10m}}    # local forge: CI run on each pushed head
    # auto_merge: false             # true: ao merges a PR once it is green and approved
    # require_review: true         # the default: a PR waits for an approval before it merges;
                                   # on the local forge you give it with `ao review <session>
                                   # --approve` (or -r "what to change"); `ao status` says so
    # behind: update                # a PR behind its base: update | rebase | wait
    # post_create: ["pip install -e ."]           # run in each new worktree
    # symlinks: [.env]                             # linked from this clone into each worktree
    # reactions:
    #   ci-failed: {{retries: 3}}
    #   approved-and-green: {{auto: false}}
"""


def init(
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    name: str = typer.Option("", "--name", help="Project name (default: the folder's name)."),
    forget: bool = typer.Option(False, "--forget",
                                help="Unregister this repository (its file is left alone)."),
) -> None:
    """Write a starter agent-orchestrator.yaml for this repository and register the repository,
    so the daemon and every `ao` command, wherever they run, see its projects."""
    root = workspace.repo_root(Path.cwd())
    target = root / cfgmod.REPO_CONFIG_NAME
    if forget:
        changed = cfgmod.register_repo(root, forget=True)
        typer.echo(f"{paths.display(root)} " + ("unregistered" if changed else
                                                 "was not registered"))
        return
    if target.exists() and not force:
        cfgmod.load(cwd=root)  # refuse to register a file that does not load
        added = cfgmod.register_repo(root)
        typer.echo(f"{paths.display(target)} already exists; "
                   + ("registered it" if added else "it is registered")
                   + " (edit it, or pass --force to rewrite it)")
        return
    project = name or re.sub(r"[^A-Za-z0-9_.-]", "-", root.name)
    slug = workspace.github_slug(workspace.remote_url(root))
    prefix = re.sub(r"[^a-z0-9]", "", project.lower())[:3] or "ses"
    text = STARTER.format(
        name=project,
        repo_line=f"    repo: {slug}" if slug else "    # repo: owner/name        # forge: github",
        branch=workspace.default_branch(root),
        forge="github" if slug else "local",
        prefix=prefix,
    )
    paths.write_atomic(target, text)
    cfgmod.register_repo(root)
    typer.echo(f"wrote {paths.display(target)} (project {project}, forge "
               f"{'github ' + slug if slug else 'local'}) and registered the repository")
    from ao.world import agents

    if not agents.get("claude-code").installed():  # the template's agent: said, not found
        note("note: the agent it names, claude-code (the `claude` CLI), is not installed "
             "here: install it, or set `agent:` to codex, aider, gemini or demo (`ao agents`)")
