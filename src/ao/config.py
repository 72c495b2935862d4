"""Typed configuration: the global file, a repo's own file, and `AO_*` environment variables.

Later sources override earlier ones key by key: defaults < `AO_HOME/config.yaml` < the repo's
`agent-orchestrator.yaml` (found searching upward from the current directory) < environment.
Every effective value remembers where it came from, for `ao config show`. Unknown keys are
rejected with the file, the dotted key and the nearest valid key.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import hosts as hostsmod
from . import paths
from .config_files import REGISTRY_NAME as REGISTRY_NAME

# the records and the files, asked of as config.X everywhere
from .config_files import REPO_CONFIG_NAME as REPO_CONFIG_NAME
from .config_files import Merged
from .config_files import _read_yaml as _read_yaml
from .config_files import _read_yaml_any as _read_yaml_any
from .config_files import config_sources as config_sources
from .config_files import content_digest as content_digest
from .config_files import find_repo_config as find_repo_config
from .config_files import register_repo as register_repo
from .config_files import registered_repos as registered_repos
from .config_files import registry_file as registry_file
from .config_model import REACTION_NAMES as REACTION_NAMES
from .config_model import AgentSpec as AgentSpec
from .config_model import Config as Config
from .config_model import LlmConfig as LlmConfig
from .config_model import NotifyConfig as NotifyConfig
from .config_model import ProjectConfig as ProjectConfig
from .config_model import ReactionConfig as ReactionConfig
from .config_model import WebConfig as WebConfig
from .config_model import effective as effective
from .errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_duration(value: object, where: str = "duration") -> float:
    """Seconds from `30s`, `5m`, `2h`, `7d`, `250ms` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration, got {value!r}", "write e.g. 30s, 5m, 2h")
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ConfigError(f"{where}: {value!r} is not a duration", "write e.g. 30s, 5m, 2h, 7d")
    return float(m.group(1)) * _UNITS[m.group(2)]


MERGE_METHODS = ("merge", "squash", "rebase", "auto")
EXTRA_MERGE_STATES = ("has_hooks", "unstable")


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
    "hosts",
)
_AGENT_KEYS = ("name", "command", "permission_mode", "env", "ready", "fallback")
_CI_KEYS = ("command", "timeout")
_REACTION_KEYS = ("auto", "retries", "escalate_after", "message")
# environment variables for the global scalars; `AO_HOME` is not config (it locates config)
ENV_VARS = {"AO_TMUX_SOCKET": "tmux.socket", "AO_POLL_INTERVAL": "poll_interval",
            "PORT": "web.port"}


def _check_keys(raw: Mapping[str, Any], allowed: tuple[str, ...], where: str, m: Merged) -> None:
    for key in raw:
        if key not in allowed:
            dotted = f"{where}.{key}" if where else str(key)
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean `{near[0]}`?" if near else f"valid keys: {', '.join(allowed)}"
            raise ConfigError(f"{paths.display(m.source_of(dotted))}: unknown key `{dotted}`", hint)


def _mapping(value: Any, where: str, m: Merged) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        src = paths.display(m.source_of(where))
        raise ConfigError(f"{src}: `{where}` must be a mapping", "see docs/configuration.md")
    return value


def _checked(value: Any, where: str, keys: tuple[str, ...], m: Merged) -> Mapping[str, Any]:
    """A mapping (or nothing, read as empty) whose keys are all known ones."""
    raw = _mapping(value, where, m)
    _check_keys(raw, keys, where, m)
    return raw


def _optional(raw: Mapping[str, Any], key: str, kind: Any, where: str, m: Merged) -> Any:
    """`raw[key]` when set, of type `kind`; None when not set."""
    value = raw.get(key)
    if value is not None:
        _typed(value, kind, f"{where}.{key}", m)
    return value


def _typed(value: Any, kind: type | tuple[type, ...], where: str, m: Merged) -> Any:
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is int)
    if not ok:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        src = paths.display(m.source_of(where))
        raise ConfigError(f"{src}: `{where}` must be {names}, got {value!r}",
                          "see docs/configuration.md")
    return value


def _opt_str(value: Any, where: str, m: Merged) -> str | None:
    return None if value is None else str(_typed(value, str, where, m))


def _str_list(value: Any, where: str, m: Merged) -> tuple[str, ...]:
    if value is None:
        return ()
    items = _typed(value, list, where, m)
    return tuple(str(_typed(v, str, where, m)) for v in items)


def _agent(value: Any, where: str, m: Merged) -> AgentSpec:
    if value is None:
        return AgentSpec()
    if isinstance(value, str):
        return AgentSpec(name=value)
    raw = _checked(value, where, _AGENT_KEYS, m)
    command = _optional(raw, "command", str, where, m)
    mode = _optional(raw, "permission_mode", str, where, m)
    if mode is not None and not re.match(r"^[A-Za-z]+$", mode):
        raise ConfigError(f"`{where}.permission_mode` {mode!r} is not a mode name",
                          "e.g. acceptEdits, plan, default")
    name = _typed(raw.get("name", "command" if command else "claude-code"), str,
                  f"{where}.name", m)
    ready = _optional(raw, "ready", str, where, m)
    if ready is not None:
        try:
            re.compile(ready)
        except re.error as e:
            raise ConfigError(f"`{where}.ready` is not a regular expression: {e}",
                              "e.g. ready: '^> '") from None
    return AgentSpec(name=name, command=command, permission_mode=mode,
                     env=_env(raw.get("env"), f"{where}.env", m), ready=ready,
                     fallback=_opt_str(raw.get("fallback"), f"{where}.fallback", m))


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env(value: Any, where: str, m: Merged) -> tuple[tuple[str, str], ...]:
    out = []
    for k, v in _mapping(value, where, m).items():
        if not _ENV_NAME.match(str(k)):
            raise ConfigError(f"`{where}`: {k!r} is not a variable name", "e.g. NODE_ENV")
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise ConfigError(f"`{where}.{k}` must be a string, got {v!r}",
                              'quote it, or pass one through: "${NAME}"')
        out.append((str(k), str(v)))
    return tuple(out)


def _reactions(value: Any, where: str, m: Merged) -> dict[str, ReactionConfig]:
    out: dict[str, ReactionConfig] = {}
    for name, spec in _checked(value, where, REACTION_NAMES, m).items():
        w = f"{where}.{name}"
        r = _checked(spec, w, _REACTION_KEYS, m)
        retries = _optional(r, "retries", int, w, m)
        esc = r.get("escalate_after")
        if esc is not None and not str(esc).isdigit():
            parse_duration(esc, f"{w}.escalate_after")
        out[str(name)] = ReactionConfig(
            auto=bool(_typed(r.get("auto", True), bool, f"{w}.auto", m)),
            retries=retries,
            escalate_after=None if esc is None else str(esc),
            message=_opt_str(r.get("message"), f"{w}.message", m),
        )
    return out


def _forge(raw: Mapping[str, Any], where: str) -> tuple[str | None, str]:
    """The project's `repo` (owner/name) and its forge: github with a repo, else local."""
    repo = raw.get("repo")
    if repo is not None and not re.match(r"^[\w.-]+/[\w.-]+$", str(repo)):
        raise ConfigError(f"`{where}.repo` must be owner/name, got {repo!r}", "e.g. acme/workflow")
    forge = str(raw.get("forge", "github" if repo else "local"))
    if forge not in ("github", "local"):
        raise ConfigError(f"`{where}.forge` must be github or local, got {forge!r}",
                          "local needs no account; github needs `repo`")
    if forge == "github" and not repo:
        raise ConfigError(f"`{where}.forge` is github but `repo` is not set",
                          "set repo: owner/name, or forge: local")
    return (str(repo) if repo is not None else None), forge


def _ci(ci: Any, where: str, m: Merged) -> tuple[str | None, float]:
    """The local forge's CI: a command (a string, or `{command, timeout}`) and its timeout."""
    if ci is None:
        return None, 600.0
    if isinstance(ci, str):
        return ci, 600.0
    ci_raw = _checked(ci, f"{where}.ci", _CI_KEYS, m)
    return (_opt_str(ci_raw.get("command"), f"{where}.ci.command", m),
            parse_duration(ci_raw.get("timeout", 600), f"{where}.ci.timeout"))


def _merging(raw: Mapping[str, Any], where: str, m: Merged) -> tuple[str, tuple[str, ...]]:
    """The merge method and the merge states accepted besides clean."""
    merge_method = str(_typed(raw.get("merge_method", "merge"), str, f"{where}.merge_method", m))
    if merge_method not in MERGE_METHODS:
        raise ConfigError(f"`{where}.merge_method` must be one of {', '.join(MERGE_METHODS)}, "
                          f"got {merge_method!r}", "auto: the first method the repo allows")
    merge_states = tuple(x.lower() for x in _str_list(raw.get("merge_states"),
                                                        f"{where}.merge_states", m))
    for st in merge_states:
        if st not in EXTRA_MERGE_STATES:
            raise ConfigError(f"`{where}.merge_states` may hold {', '.join(EXTRA_MERGE_STATES)}"
                              f", not {st!r}", "clean is always accepted")
    return merge_method, merge_states


def _project(name: str, raw: Mapping[str, Any], m: Merged, base: Path) -> ProjectConfig:
    where = f"projects.{name}"
    if not _NAME.match(name):
        raise ConfigError(f"project name {name!r} is not usable as a folder name",
                          "use letters, digits, '-', '_' and '.'")
    _check_keys(raw, _PROJECT_KEYS, where, m)
    if "path" not in raw:
        raise ConfigError(f"{paths.display(m.source_of(where))}: `{where}.path` is missing",
                          "set it to the project's local clone")
    path = Path(str(_typed(raw["path"], str, f"{where}.path", m))).expanduser()
    if not path.is_absolute():
        path = (base / path).resolve()

    repo, forge = _forge(raw, where)
    max_concurrent = _typed(raw.get("max_concurrent", 5), int, f"{where}.max_concurrent", m)
    if max_concurrent < 1:
        raise ConfigError(f"`{where}.max_concurrent` must be at least 1", "the default is 5")
    ci_command, ci_timeout = _ci(raw.get("ci"), where, m)
    merge_method, merge_states = _merging(raw, where, m)
    prefix = str(raw.get("session_prefix") or re.sub(r"[^a-z0-9]", "", name.lower())[:3] or "ses")
    if not re.match(r"^[a-z0-9][a-z0-9_]*$", prefix):
        raise ConfigError(f"`{where}.session_prefix` {prefix!r} is not a safe tmux name",
                          "use lower-case letters and digits")
    return ProjectConfig(
        name=name,
        path=path,
        repo=repo,
        default_branch=str(_typed(raw.get("default_branch", "main"), str,
                                  f"{where}.default_branch", m)),
        remote=str(_typed(raw.get("remote", "origin"), str, f"{where}.remote", m)),
        forge=forge,
        agent=_agent(raw.get("agent"), f"{where}.agent", m),
        max_concurrent=max_concurrent,
        plan=_opt_str(raw.get("plan"), f"{where}.plan", m),
        ci_command=ci_command,
        ci_timeout=ci_timeout,
        session_prefix=prefix,
        sandboxed=bool(_typed(raw.get("sandboxed", False), bool, f"{where}.sandboxed", m)),
        auto_merge=bool(_typed(raw.get("auto_merge", False), bool, f"{where}.auto_merge", m)),
        reactions=_reactions(raw.get("reactions"), f"{where}.reactions", m),
        post_create=_str_list(raw.get("post_create"), f"{where}.post_create", m),
        symlinks=_str_list(raw.get("symlinks"), f"{where}.symlinks", m),
        hosts=_str_list(raw.get("hosts"), f"{where}.hosts", m) or ("local",),
        require_review=bool(_typed(raw.get("require_review", True), bool,
                                   f"{where}.require_review", m)),
        require_checks=bool(_typed(raw.get("require_checks", True), bool,
                                   f"{where}.require_checks", m)),
        merge_states=merge_states,
        merge_method=merge_method,
        env=_env(raw.get("env"), f"{where}.env", m),
        disposable=_str_list(raw.get("disposable"), f"{where}.disposable", m),
    )


def load(cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    m, files, bases = _sources(cwd, os.environ if env is None else env)
    data = m.data
    _check_keys(data, _TOP_KEYS, "", m)
    tmux = _checked(data.get("tmux"), "tmux", _TMUX_KEYS, m)
    projects = {
        str(name): _project(str(name), _mapping(raw, f"projects.{name}", m), m,
                            bases.get(str(name), Path.cwd()))
        for name, raw in _mapping(data.get("projects"), "projects", m).items()
    }
    _check_projects(projects, m)
    notify = _checked(data.get("notify"), "notify", _NOTIFY_KEYS, m)
    cleanup = _checked(data.get("cleanup"), "cleanup", _CLEANUP_KEYS, m)
    nightly = cleanup.get("nightly_at")
    if nightly is not None and not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", str(nightly)):
        raise ConfigError(f"`cleanup.nightly_at` must be HH:MM, got {nightly!r}", "e.g. 03:00")
    pool = hostsmod.parse(data.get("hosts"), "config")
    for p in projects.values():
        unknown = [h for h in p.hosts if h not in pool]
        if unknown:
            raise ConfigError(f"`projects.{p.name}.hosts` names {unknown[0]!r}, which is not "
                              "under `hosts:`", f"hosts: {', '.join(pool)}")
    return Config(
        llm=_llm(_checked(data.get("llm"), "llm", _LLM_KEYS, m), m),
        tmux_socket=str(tmux.get("socket", "ao")),
        web=_web(_checked(data.get("web"), "web", _WEB_KEYS, m), m),
        poll_interval=parse_duration(data.get("poll_interval", 30), "poll_interval"),
        cleanup_grace=parse_duration(cleanup.get("grace", 300), "cleanup.grace"),
        nightly_at=None if nightly is None else str(nightly),
        notify=NotifyConfig(
            desktop=bool(_typed(notify.get("desktop", False), bool, "notify.desktop", m)),
            webhook=_opt_str(notify.get("webhook"), "notify.webhook", m),
            command=_opt_str(notify.get("command"), "notify.command", m)),
        projects=projects,
        hosts=pool,
        origins=dict(m.origins),
        files=tuple(files),
    )


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
            for name in _mapping(raw.get("projects"), "projects", m):
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
        _typed(port, int, "web.port", m)
        if not 0 < port < 65536:
            raise ConfigError(f"`web.port` must be a port number, got {port}", "e.g. 3001")
    return WebConfig(port=port, host=str(_typed(web.get("host", "127.0.0.1"), str,
                                                "web.host", m)))


def _llm(llm: Mapping[str, Any], m: Merged) -> LlmConfig:
    budget = _optional(llm, "budget_usd", (int, float), "llm", m)
    return LlmConfig(
        model=str(llm.get("model", "claude-sonnet-5-5")),
        max_tokens=int(_typed(llm.get("max_tokens", 8000), int, "llm.max_tokens", m)),
        budget_usd=None if budget is None else float(budget),
        condense_ci_logs=bool(_typed(llm.get("condense_ci_logs", False), bool,
                                     "llm.condense_ci_logs", m)),
        timeout=parse_duration(llm.get("timeout", 120), "llm.timeout"))
