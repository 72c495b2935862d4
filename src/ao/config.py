"""Typed configuration: the global file, a repo's own file, and `AO_*` environment variables.

Later sources override earlier ones key by key: defaults < `AO_HOME/config.yaml` < the repo's
`agent-orchestrator.yaml` (found searching upward from the current directory) < environment.
Every effective value remembers where it came from, for `ao config show`. Unknown keys are
rejected with the file, the dotted key and the nearest valid key.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ao import host_config as hostsmod
from ao import paths
from ao.config_checks import check_keys, checked, mapping, optional, str_list, typed
from ao.config_checks import parse_duration as parse_duration
from ao.config_files import REGISTRY_NAME as REGISTRY_NAME

# the records and the files, asked of as config.X everywhere
from ao.config_files import REPO_CONFIG_NAME as REPO_CONFIG_NAME
from ao.config_files import Merged
from ao.config_files import _read_yaml as _read_yaml
from ao.config_files import _read_yaml_any as _read_yaml_any
from ao.config_files import config_sources as config_sources
from ao.config_files import content_digest as content_digest
from ao.config_files import find_repo_config as find_repo_config
from ao.config_files import register_repo as register_repo
from ao.config_files import registered_repos as registered_repos
from ao.config_files import registry_file as registry_file
from ao.config_model import REACTION_NAMES as REACTION_NAMES
from ao.config_model import AgentSpec as AgentSpec
from ao.config_model import Config as Config
from ao.config_model import LlmConfig as LlmConfig
from ao.config_model import NotifyConfig as NotifyConfig
from ao.config_model import ProjectConfig as ProjectConfig
from ao.config_model import ReactionConfig as ReactionConfig
from ao.config_model import WebConfig as WebConfig
from ao.config_model import effective as effective
from ao.config_settings import EXTRA_MERGE_STATES as EXTRA_MERGE_STATES
from ao.config_settings import MERGE_METHODS as MERGE_METHODS
from ao.config_settings import (
    _agent,
    _budget,
    _ci,
    _env,
    _forge,
    _merging,
    _one_of,
    _pickup,
    _reactions,
)
from ao.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


BEHIND = ("update", "rebase", "wait")  # a PR behind a base that must be up to date
RED_MAIN = ("pause", "revert", "fix")  # main turned red by a merge (redmain_act.py)
MERGE_WAYS = ("direct", "queue")  # the local forge's merge train (forge/local_train.py)


# ---- reading -------------------------------------------------------------------------------

_TOP_KEYS = ("tmux", "poll_interval", "projects", "notify", "cleanup", "llm", "web", "hosts")
_WEB_KEYS = ("port", "host")
_LLM_KEYS = ("model", "max_tokens", "budget_usd", "condense_ci_logs", "timeout")
_NOTIFY_KEYS = ("desktop", "webhook", "command")
_CLEANUP_KEYS = ("grace", "nightly_at")
_TMUX_KEYS = ("socket",)
_PROJECT_KEYS = (
    "path", "repo", "default_branch", "remote", "forge", "agent", "max_concurrent", "plan", "ci",
    "session_prefix", "sandboxed", "auto_merge", "reactions", "post_create", "symlinks",
    "require_review", "require_checks", "merge_states", "merge_method", "env", "disposable",
    "trusted_reviewers", "behind", "pickup", "overlap", "overlap_wait", "budget_usd",
    "hosts", "on_red_main", "merge",
)
# environment variables for the global scalars; `AO_HOME` is not config (it locates config)
ENV_VARS = {"AO_TMUX_SOCKET": "tmux.socket", "AO_POLL_INTERVAL": "poll_interval",
            "PORT": "web.port"}


def _project(name: str, raw: Mapping[str, Any], m: Merged, base: Path) -> ProjectConfig:
    where = f"projects.{name}"
    if not _NAME.match(name):
        raise ConfigError(f"project name {name!r} is not usable as a folder name",
                          "use letters, digits, '-', '_' and '.'")
    check_keys(raw, _PROJECT_KEYS, where, m)
    if "path" not in raw:
        raise ConfigError(f"{paths.display(m.source_of(where))}: `{where}.path` is missing",
                          "set it to the project's local clone")
    path = Path(str(typed(raw["path"], str, f"{where}.path", m))).expanduser()
    if not path.is_absolute():
        path = (base / path).resolve()

    repo, forge = _forge(raw, where)
    max_concurrent = typed(raw.get("max_concurrent", 5), int, f"{where}.max_concurrent", m)
    if max_concurrent < 1:
        raise ConfigError(f"`{where}.max_concurrent` must be at least 1", "the default is 5")
    ci_command, ci_timeout = _ci(raw.get("ci"), where, m)
    merge_method, merge_states = _merging(raw, where, m)
    label, on_unlabel, status_comment = _pickup(raw.get("pickup"), f"{where}.pickup", m)
    if label and forge != "github":
        raise ConfigError(f"`{where}.pickup` takes issues from GitHub; this project's forge is "
                          f"{forge}", "set forge: github and repo: owner/name, or remove it")
    overlap = _one_of(raw, "overlap", ("wait", "ignore"), where, m,
                      "wait: a task that shares files with a running one waits for it")
    behind = _one_of(raw, "behind", BEHIND, where, m, "update: ao updates the branch on the forge")
    on_red_main = _one_of(raw, "on_red_main", RED_MAIN, where, m,
                          "pause: merges and starts wait; revert: ao reverts the culprit; "
                          "fix: an agent fixes main")
    merge = _one_of(raw, "merge", MERGE_WAYS, where, m,
                    "queue: a PR merges only after CI passed on it merged onto main")
    if merge == "queue" and (forge != "local" or not ci_command):
        raise ConfigError(f"`{where}.merge: queue` is the local forge's merge train and needs "
                          "its `ci:` command", "on GitHub, the branch's rules turn its own merge "
                          "queue on, and ao uses it")
    prefix = str(raw.get("session_prefix") or re.sub(r"[^a-z0-9]", "", name.lower())[:3] or "ses")
    if not re.match(r"^[a-z0-9][a-z0-9_]*$", prefix):
        raise ConfigError(f"`{where}.session_prefix` {prefix!r} is not a safe tmux name",
                          "use lower-case letters and digits")
    return ProjectConfig(
        name=name,
        path=path,
        repo=repo,
        default_branch=str(typed(raw.get("default_branch", "main"), str,
                                 f"{where}.default_branch", m)),
        remote=str(typed(raw.get("remote", "origin"), str, f"{where}.remote", m)),
        forge=forge,
        agent=_agent(raw.get("agent"), f"{where}.agent", m),
        max_concurrent=max_concurrent,
        plan=optional(raw, "plan", str, where, m),
        ci_command=ci_command,
        ci_timeout=ci_timeout,
        session_prefix=prefix,
        sandboxed=bool(typed(raw.get("sandboxed", False), bool, f"{where}.sandboxed", m)),
        auto_merge=bool(typed(raw.get("auto_merge", False), bool, f"{where}.auto_merge", m)),
        reactions=_reactions(raw.get("reactions"), f"{where}.reactions", m),
        post_create=str_list(raw.get("post_create"), f"{where}.post_create", m),
        symlinks=str_list(raw.get("symlinks"), f"{where}.symlinks", m),
        hosts=str_list(raw.get("hosts"), f"{where}.hosts", m) or ("local",),
        require_review=bool(typed(raw.get("require_review", True), bool,
                                  f"{where}.require_review", m)),
        require_checks=bool(typed(raw.get("require_checks", True), bool,
                                  f"{where}.require_checks", m)),
        merge_states=merge_states,
        merge_method=merge_method,
        env=_env(raw.get("env"), f"{where}.env", m),
        disposable=str_list(raw.get("disposable"), f"{where}.disposable", m),
        trusted_reviewers=tuple(x.lower() for x in str_list(
            raw.get("trusted_reviewers"), f"{where}.trusted_reviewers", m)),
        behind=behind,
        overlap=overlap,
        overlap_wait=parse_duration(raw.get("overlap_wait", "30m"), f"{where}.overlap_wait"),
        pickup_label=label,
        pickup_on_unlabel=on_unlabel,
        budget_usd=_budget(raw.get("budget_usd"), f"{where}.budget_usd", m),
        on_red_main=on_red_main,
        merge=merge,
        pickup_status_comment=status_comment,
    )


def load(cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    m, files, bases = _sources(cwd, os.environ if env is None else env)
    data = m.data
    check_keys(data, _TOP_KEYS, "", m)
    tmux = checked(data.get("tmux"), "tmux", _TMUX_KEYS, m)
    projects: dict[str, ProjectConfig] = {}
    for name, raw in mapping(data.get("projects"), "projects", m).items():
        n = str(name)
        projects[n] = _in_file(files, bases.get(n), m, n, functools.partial(
            _project, n, mapping(raw, f"projects.{n}", m), m, bases.get(n, Path.cwd())))
    _check_projects(projects, m)
    notify = checked(data.get("notify"), "notify", _NOTIFY_KEYS, m)
    cleanup = checked(data.get("cleanup"), "cleanup", _CLEANUP_KEYS, m)
    nightly = cleanup.get("nightly_at")
    if nightly is not None and not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", str(nightly)):
        raise ConfigError(f"`cleanup.nightly_at` must be HH:MM, got {nightly!r}", "e.g. 03:00")
    # in the order the sections were always checked: with two mistakes, the same one first
    web = _web(checked(data.get("web"), "web", _WEB_KEYS, m), m)
    llm = _llm(checked(data.get("llm"), "llm", _LLM_KEYS, m), m)
    pool = hostsmod.parse(data.get("hosts"), "config")
    for p in projects.values():
        unknown = [h for h in p.hosts if h not in pool]
        if unknown:
            raise ConfigError(f"`projects.{p.name}.hosts` names {unknown[0]!r}, which is not "
                              "under `hosts:`", f"hosts: {', '.join(pool)}")
    return Config(
        llm=llm,
        tmux_socket=str(tmux.get("socket", "ao")),
        web=web,
        poll_interval=parse_duration(data.get("poll_interval", 30), "poll_interval"),
        cleanup_grace=parse_duration(cleanup.get("grace", 300), "cleanup.grace"),
        nightly_at=None if nightly is None else str(nightly),
        notify=NotifyConfig(
            desktop=bool(typed(notify.get("desktop", True), bool, "notify.desktop", m)),
            webhook=optional(notify, "webhook", str, "notify", m),
            command=optional(notify, "command", str, "notify", m)),
        projects=projects,
        hosts=pool,
        origins=dict(m.origins),
        files=tuple(files),
    )


def _in_file(files: list[Path], base: Path | None, m: Merged, name: str,
             make: Callable[[], ProjectConfig]) -> ProjectConfig:
    """A project made from its file, a mistake in it named with that file and the way out:
    one bad value in a registered repository's config broke every command, from anywhere,
    with no word of where it was. Only a project every value of which came from that one
    file is blamed on it (the global config or an AO_* variable may have set the bad one)."""
    try:
        return make()
    except ConfigError as e:
        f = next((x for x in reversed(files) if base is not None and x.parent == base), None)
        sources = {src for key, src in m.origins.items() if key.startswith(f"projects.{name}.")}
        if f is None or f.parent == paths.ao_home() or sources != {str(f)}:
            raise
        out = f"{e.hint + '; ' if e.hint else ''}fix it there"
        if f.parent in registered_repos():  # read from anywhere: the way to stop that too
            out += f", or `ao init --forget` in {paths.display(f.parent)} to stop reading it"
        named = e.message.startswith(paths.display(f)) or e.message.startswith(str(f))
        raise ConfigError(e.message if named else f"{paths.display(f)}: {e.message}",
                          out) from None


def _sources(cwd: Path | None, env: Mapping[str, str]) -> tuple[Merged, list[Path],
                                                                dict[str, Path]]:
    """The config files (global, then the repository's) and the AO_* variables merged, the
    files read, and the folder each project's relative path is relative to."""
    m = Merged()
    files: list[Path] = []
    bases: dict[str, Path] = {}
    for f in config_sources(cwd):
        if f is not None and f.is_file():
            raw = _read_yaml(f)
            m.merge(raw, str(f))
            files.append(f)
            for name in mapping(raw.get("projects"), "projects", m):
                bases[str(name)] = f.parent
    for var, dotted in ENV_VARS.items():
        if var in env:
            section, _, key = dotted.rpartition(".")
            m.merge({section: {key: env[var]}} if section else {key: env[var]}, f"env {var}")
    return m, files, bases


def _check_projects(projects: dict[str, ProjectConfig], m: Merged) -> None:
    """No two projects share a session prefix; each path is a git work tree (checked last:
    the other mistakes in a file are named first)."""
    prefixes: dict[str, str] = {}
    for p in projects.values():
        if p.session_prefix in prefixes:
            raise ConfigError(
                f"projects {prefixes[p.session_prefix]} and {p.name} share the session prefix "
                f"{p.session_prefix!r}",
                "set `session_prefix` on one of them",
            )
        prefixes[p.session_prefix] = p.name
    for p in projects.values():
        if not p.path.is_dir() or not (p.path / ".git").exists():
            what = "does not exist" if not p.path.exists() else "is not a folder" \
                if not p.path.is_dir() else "is not a git work tree"
            where = f"projects.{p.name}"
            raise ConfigError(f"{paths.display(m.source_of(where))}: `{where}.path` "
                              f"{paths.display(p.path)} {what}",
                              "point it at the project's local clone (`git clone ...` first)")


def _web(web: Mapping[str, Any], m: Merged) -> WebConfig:
    port = web.get("port")
    if port is not None:
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        typed(port, int, "web.port", m)
        if not 0 < port < 65536:
            raise ConfigError(f"`web.port` must be a port number, got {port}", "e.g. 3001")
    return WebConfig(port=port, host=str(typed(web.get("host", "127.0.0.1"), str,
                                               "web.host", m)))


def _llm(llm: Mapping[str, Any], m: Merged) -> LlmConfig:
    budget = optional(llm, "budget_usd", (int, float), "llm", m)
    return LlmConfig(
        model=str(llm.get("model", "claude-sonnet-5-5")),
        max_tokens=int(typed(llm.get("max_tokens", 8000), int, "llm.max_tokens", m)),
        budget_usd=None if budget is None else float(budget),
        condense_ci_logs=bool(typed(llm.get("condense_ci_logs", False), bool,
                                    "llm.condense_ci_logs", m)),
        timeout=parse_duration(llm.get("timeout", 120), "llm.timeout"))
