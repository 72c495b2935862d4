"""Typed configuration: the global file, a repo's own file, and `AO_*` environment variables.

Later sources override earlier ones key by key: defaults < `AO_HOME/config.yaml` < the repo's
`agent-orchestrator.yaml` (found searching upward from the current directory) < environment.
Every effective value remembers where it came from, for `ao config show`. Unknown keys are
rejected with the file, the dotted key and the nearest valid key.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import environment, paths, yamlio
from . import hosts as hostsmod
from .errors import ConfigError, NotFound
from .hosts import Host

REPO_CONFIG_NAME = "agent-orchestrator.yaml"
REACTION_NAMES = (
    "ci-failed",
    "changes-requested",
    "merge-conflict",
    "approved-and-green",
    "agent-stuck",
    "agent-needs-input",
    "agent-exited",
    "merged",
    "all-complete",
)
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


@dataclass(frozen=True)
class ReactionConfig:
    auto: bool = True
    retries: int | None = None
    escalate_after: str | None = None  # a count ("3") or a duration ("30m")
    message: str | None = None


@dataclass(frozen=True)
class AgentSpec:
    """A named profile (`claude-code`) or a custom command template."""

    name: str = "claude-code"
    command: str | None = None
    permission_mode: str | None = None
    env: tuple[tuple[str, str], ...] = ()  # passed to this agent (`${VAR}` from ao's env)
    ready: str | None = None  # a regex: a command agent is ready when its screen shows it
    fallback: str | None = None  # the agent new sessions use while this one is limited

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True)
class ProjectConfig:
    name: str
    path: Path
    repo: str | None = None
    default_branch: str = "main"
    remote: str = "origin"
    forge: str = "local"
    agent: AgentSpec = field(default_factory=AgentSpec)
    max_concurrent: int = 5
    plan: str | None = None
    ci_command: str | None = None
    ci_timeout: float = 600.0
    session_prefix: str = ""
    sandboxed: bool = False
    auto_merge: bool = False
    reactions: dict[str, ReactionConfig] = field(default_factory=dict)
    post_create: tuple[str, ...] = ()
    symlinks: tuple[str, ...] = ()
    require_review: bool = True
    require_checks: bool = True
    merge_states: tuple[str, ...] = ()
    merge_method: str = "merge"
    env: tuple[tuple[str, str], ...] = ()  # passed to agents and CI (`${VAR}` from ao's env)
    hosts: tuple[str, ...] = ("local",)  # where its sessions may run (names under `hosts:`)
    disposable: tuple[str, ...] = ()  # ignored paths cleanup may delete, besides the defaults


MERGE_METHODS = ("merge", "squash", "rebase", "auto")
EXTRA_MERGE_STATES = ("has_hooks", "unstable")


@dataclass(frozen=True)
class NotifyConfig:
    desktop: bool = False
    webhook: str | None = None
    command: str | None = None


@dataclass(frozen=True)
class LlmConfig:
    model: str = "claude-sonnet-5-5"
    max_tokens: int = 8000
    budget_usd: float | None = None
    condense_ci_logs: bool = False
    timeout: float = 120.0


@dataclass(frozen=True)
class WebConfig:
    port: int | None = None  # the daemon serves the board, the API and metrics when set
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Config:
    tmux_socket: str = "ao"
    poll_interval: float = 30.0
    cleanup_grace: float = 300.0
    nightly_at: str | None = None
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    web: WebConfig = field(default_factory=WebConfig)
    projects: dict[str, ProjectConfig] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=lambda: hostsmod.parse(None))
    origins: dict[str, str] = field(default_factory=dict)
    files: tuple[Path, ...] = ()

    def project(self, name: str) -> ProjectConfig:
        try:
            return self.projects[name]
        except KeyError:
            known = ", ".join(sorted(self.projects)) or "none"
            raise NotFound(
                f"no project {name!r}; projects: {known}",
                "add it under `projects:` in config.yaml or run `ao init` in its repo",
            ) from None


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


class _Merged:
    """Raw mappings merged key by key, remembering which source set each leaf."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.origins: dict[str, str] = {}

    def merge(self, raw: Mapping[str, Any], source: str) -> None:
        self._merge(self.data, raw, source, "")

    def _merge(self, into: dict[str, Any], raw: Mapping[str, Any], source: str,
               prefix: str) -> None:
        for key, value in raw.items():
            dotted = f"{prefix}{key}"
            # `agent`, `ci` and reaction entries are replaced whole by a later source when they
            # change form (string <-> mapping), otherwise merged
            if isinstance(value, Mapping) and isinstance(into.get(key), dict):
                self._merge(into[key], value, source, dotted + ".")
            else:
                into[key] = _plain(value)
                self._mark(value, source, dotted)

    def _mark(self, value: Any, source: str, dotted: str) -> None:
        for k in [k for k in self.origins if k == dotted or k.startswith(dotted + ".")]:
            del self.origins[k]
        if isinstance(value, Mapping) and value:
            for k, v in value.items():
                self._mark(v, source, f"{dotted}.{k}")
        else:
            self.origins[dotted] = source

    def source_of(self, dotted: str) -> str:
        for key, src in self.origins.items():
            if key == dotted or key.startswith(dotted + "."):
                return src
        return "config"


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _check_keys(raw: Mapping[str, Any], allowed: tuple[str, ...], where: str, m: _Merged) -> None:
    for key in raw:
        if key not in allowed:
            dotted = f"{where}.{key}" if where else str(key)
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean `{near[0]}`?" if near else f"valid keys: {', '.join(allowed)}"
            raise ConfigError(f"{paths.display(m.source_of(dotted))}: unknown key `{dotted}`", hint)


def _mapping(value: Any, where: str, m: _Merged) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        src = paths.display(m.source_of(where))
        raise ConfigError(f"{src}: `{where}` must be a mapping", "see docs/configuration.md")
    return value


def _typed(value: Any, kind: type | tuple[type, ...], where: str, m: _Merged) -> Any:
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is int)
    if not ok:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        src = paths.display(m.source_of(where))
        raise ConfigError(f"{src}: `{where}` must be {names}, got {value!r}",
                          "see docs/configuration.md")
    return value


def _opt_str(value: Any, where: str, m: _Merged) -> str | None:
    return None if value is None else str(_typed(value, str, where, m))


def _str_list(value: Any, where: str, m: _Merged) -> tuple[str, ...]:
    if value is None:
        return ()
    items = _typed(value, list, where, m)
    return tuple(str(_typed(v, str, where, m)) for v in items)


def _agent(value: Any, where: str, m: _Merged) -> AgentSpec:
    if value is None:
        return AgentSpec()
    if isinstance(value, str):
        return AgentSpec(name=value)
    raw = _mapping(value, where, m)
    _check_keys(raw, _AGENT_KEYS, where, m)
    command = raw.get("command")
    if command is not None:
        _typed(command, str, f"{where}.command", m)
    mode = raw.get("permission_mode")
    if mode is not None:
        _typed(mode, str, f"{where}.permission_mode", m)
        if not re.match(r"^[A-Za-z]+$", mode):
            raise ConfigError(f"`{where}.permission_mode` {mode!r} is not a mode name",
                              "e.g. acceptEdits, plan, default")
    name = _typed(raw.get("name", "command" if command else "claude-code"), str,
                  f"{where}.name", m)
    ready = raw.get("ready")
    if ready is not None:
        _typed(ready, str, f"{where}.ready", m)
        try:
            re.compile(ready)
        except re.error as e:
            raise ConfigError(f"`{where}.ready` is not a regular expression: {e}",
                              "e.g. ready: '^> '") from None
    return AgentSpec(name=name, command=command, permission_mode=mode,
                     env=_env(raw.get("env"), f"{where}.env", m), ready=ready,
                     fallback=_opt_str(raw.get("fallback"), f"{where}.fallback", m))


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env(value: Any, where: str, m: _Merged) -> tuple[tuple[str, str], ...]:
    out = []
    for k, v in _mapping(value, where, m).items():
        if not _ENV_NAME.match(str(k)):
            raise ConfigError(f"`{where}`: {k!r} is not a variable name", "e.g. NODE_ENV")
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise ConfigError(f"`{where}.{k}` must be a string, got {v!r}",
                              'quote it, or pass one through: "${NAME}"')
        out.append((str(k), str(v)))
    return tuple(out)


def _reactions(value: Any, where: str, m: _Merged) -> dict[str, ReactionConfig]:
    out: dict[str, ReactionConfig] = {}
    raw = _mapping(value, where, m)
    _check_keys(raw, REACTION_NAMES, where, m)
    for name, spec in raw.items():
        w = f"{where}.{name}"
        r = _mapping(spec, w, m)
        _check_keys(r, _REACTION_KEYS, w, m)
        retries = r.get("retries")
        if retries is not None:
            _typed(retries, int, f"{w}.retries", m)
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


def _project(name: str, raw: Mapping[str, Any], m: _Merged, base: Path) -> ProjectConfig:
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
    max_concurrent = _typed(raw.get("max_concurrent", 5), int, f"{where}.max_concurrent", m)
    if max_concurrent < 1:
        raise ConfigError(f"`{where}.max_concurrent` must be at least 1", "the default is 5")
    ci = raw.get("ci")
    ci_command: str | None = None
    ci_timeout = 600.0
    if isinstance(ci, str):
        ci_command = ci
    elif ci is not None:
        ci_raw = _mapping(ci, f"{where}.ci", m)
        _check_keys(ci_raw, _CI_KEYS, f"{where}.ci", m)
        ci_command = _opt_str(ci_raw.get("command"), f"{where}.ci.command", m)
        ci_timeout = parse_duration(ci_raw.get("timeout", 600), f"{where}.ci.timeout")
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


def _read_yaml_any(path: Path) -> Any:
    try:
        return yamlio.load(path.read_bytes())[0]
    except OSError as e:
        raise ConfigError(f"{paths.display(path)}: cannot read it ({e.strerror})",
                          "check the file's permissions") from None
    except yamlio.YamlRefused as e:
        raise ConfigError(f"{paths.display(path)}: {e}", "see docs/configuration.md") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{paths.display(path)}{line}: not valid YAML",
                          "fix the syntax or move the file away") from None


def _read_yaml(path: Path) -> Mapping[str, Any]:
    data = _read_yaml_any(path)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{paths.display(path)}: expected a mapping at the top",
                          "see docs/configuration.md")
    return data


def find_repo_config(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        candidate = d / REPO_CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


REGISTRY_NAME = "repos.yaml"
_REGISTRY_HEAD = ("# Repositories registered by `ao init`: every `ao` command and the daemon read\n"
                  "# each one's agent-orchestrator.yaml. `ao init --forget` removes one.\n")


def registry_file() -> Path:
    return paths.ao_home() / REGISTRY_NAME


def registered_repos() -> list[Path]:
    """Repository roots registered by `ao init`, in the order they were registered."""
    f = registry_file()
    if not f.is_file():
        return []
    raw = _read_yaml_any(f)
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ConfigError(f"{paths.display(f)}: expected a list of repository paths",
                          "fix the file, or delete it and run `ao init` in each repository")
    return [Path(x) for x in raw]


def register_repo(root: Path, forget: bool = False) -> bool:
    """Add (or with `forget`, remove) a repository root; True if the registry changed."""
    root = root.resolve()
    with paths.locked(registry_file().with_name(REGISTRY_NAME + ".lock")):
        repos = registered_repos()
        if forget:
            if root not in repos:
                return False
            repos.remove(root)
        else:
            if root in repos:
                return False
            repos.append(root)
        body = "".join(f"- {json.dumps(str(r))}\n" for r in repos)
        paths.write_atomic(registry_file(), _REGISTRY_HEAD + body)
    return True


def config_sources(cwd: Path | None = None) -> list[Path]:
    """The files a load reads, in order: global, each registered repo's, then the one found
    from the current directory (if it is not registered)."""
    out: list[Path] = [paths.config_file()]
    for root in registered_repos():
        out.append(root / REPO_CONFIG_NAME)
    here = find_repo_config(cwd)
    if here is not None and here.resolve() not in {f.resolve() for f in out[1:]}:
        out.append(here)
    return out


def content_digest(files: list[Path]) -> str:
    """A hash of what the config files hold (a missing file counts as empty): the daemon
    reloads only when this changes, never because a file was opened or touched."""
    h = hashlib.sha256()
    for f in [registry_file(), *files]:
        h.update(str(f).encode() + b"\0")
        try:
            h.update(f.read_bytes())
        except OSError:
            h.update(b"\1missing")
        h.update(b"\0")
    return h.hexdigest()


def load(cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    m = _Merged()
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

    data = m.data
    _check_keys(data, _TOP_KEYS, "", m)
    tmux = _mapping(data.get("tmux"), "tmux", m)
    _check_keys(tmux, _TMUX_KEYS, "tmux", m)
    projects = {
        str(name): _project(str(name), _mapping(raw, f"projects.{name}", m), m,
                            bases.get(str(name), Path.cwd()))
        for name, raw in _mapping(data.get("projects"), "projects", m).items()
    }
    prefixes: dict[str, str] = {}
    for p in projects.values():
        if p.session_prefix in prefixes:
            raise ConfigError(
                f"projects {prefixes[p.session_prefix]} and {p.name} share the session prefix "
                f"{p.session_prefix!r}",
                "set `session_prefix` on one of them",
            )
        prefixes[p.session_prefix] = p.name
    for p in projects.values():  # last: the other mistakes in a file are named first
        if not p.path.is_dir() or not (p.path / ".git").exists():
            what = "does not exist" if not p.path.exists() else "is not a folder" \
                if not p.path.is_dir() else "is not a git work tree"
            where = f"projects.{p.name}"
            raise ConfigError(f"{paths.display(m.source_of(where))}: `{where}.path` "
                              f"{paths.display(p.path)} {what}",
                              "point it at the project's local clone (`git clone ...` first)")
    notify = _mapping(data.get("notify"), "notify", m)
    _check_keys(notify, _NOTIFY_KEYS, "notify", m)
    cleanup = _mapping(data.get("cleanup"), "cleanup", m)
    _check_keys(cleanup, _CLEANUP_KEYS, "cleanup", m)
    nightly = cleanup.get("nightly_at")
    if nightly is not None and not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", str(nightly)):
        raise ConfigError(f"`cleanup.nightly_at` must be HH:MM, got {nightly!r}", "e.g. 03:00")
    web = _mapping(data.get("web"), "web", m)
    _check_keys(web, _WEB_KEYS, "web", m)
    port = web.get("port")
    if port is not None:
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        _typed(port, int, "web.port", m)
        if not 0 < port < 65536:
            raise ConfigError(f"`web.port` must be a port number, got {port}", "e.g. 3001")
    host = str(_typed(web.get("host", "127.0.0.1"), str, "web.host", m))
    llm = _mapping(data.get("llm"), "llm", m)
    _check_keys(llm, _LLM_KEYS, "llm", m)
    budget = llm.get("budget_usd")
    if budget is not None:
        _typed(budget, (int, float), "llm.budget_usd", m)
    pool = hostsmod.parse(data.get("hosts"), "config")
    for p in projects.values():
        unknown = [h for h in p.hosts if h not in pool]
        if unknown:
            raise ConfigError(f"`projects.{p.name}.hosts` names {unknown[0]!r}, which is not "
                              "under `hosts:`", f"hosts: {', '.join(pool)}")
    return Config(
        llm=LlmConfig(
            model=str(llm.get("model", "claude-sonnet-5-5")),
            max_tokens=int(_typed(llm.get("max_tokens", 8000), int, "llm.max_tokens", m)),
            budget_usd=None if budget is None else float(budget),
            condense_ci_logs=bool(_typed(llm.get("condense_ci_logs", False), bool,
                                         "llm.condense_ci_logs", m)),
            timeout=parse_duration(llm.get("timeout", 120), "llm.timeout")),
        tmux_socket=str(tmux.get("socket", "ao")),
        web=WebConfig(port=port, host=host),
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


def effective(cfg: Config) -> list[tuple[str, object, str]]:
    """(dotted key, value, source) for every effective setting, defaults included."""
    rows: list[tuple[str, object, str]] = []

    def add(key: str, value: object) -> None:
        src = cfg.origins.get(key)
        if src is None:
            src = next((s for k, s in cfg.origins.items() if k.startswith(key + ".")), "default")
        rows.append((key, value, src if src.startswith("env ") or src == "default"
                     else paths.display(src)))

    add("tmux.socket", cfg.tmux_socket)
    add("poll_interval", f"{cfg.poll_interval:g}s")
    add("cleanup.grace", f"{cfg.cleanup_grace:g}s")
    add("cleanup.nightly_at", cfg.nightly_at)
    add("notify.desktop", cfg.notify.desktop)
    add("notify.webhook", "(set)" if cfg.notify.webhook else None)
    add("notify.command", cfg.notify.command)
    add("llm.model", cfg.llm.model)
    add("llm.max_tokens", cfg.llm.max_tokens)
    add("llm.budget_usd", cfg.llm.budget_usd)
    add("llm.condense_ci_logs", cfg.llm.condense_ci_logs)
    add("llm.timeout", f"{cfg.llm.timeout:g}s")
    add("web.port", cfg.web.port)
    add("web.host", cfg.web.host)
    for p in cfg.projects.values():
        pre = f"projects.{p.name}"
        add(f"{pre}.path", paths.display(p.path))
        add(f"{pre}.repo", p.repo)
        add(f"{pre}.default_branch", p.default_branch)
        add(f"{pre}.remote", p.remote)
        add(f"{pre}.forge", p.forge)
        add(f"{pre}.agent", p.agent.command or p.agent.name)
        add(f"{pre}.max_concurrent", p.max_concurrent)
        add(f"{pre}.plan", p.plan)
        add(f"{pre}.ci", p.ci_command)
        add(f"{pre}.session_prefix", p.session_prefix)
        add(f"{pre}.sandboxed", p.sandboxed)
        add(f"{pre}.auto_merge", p.auto_merge)
        add(f"{pre}.post_create", list(p.post_create))
        add(f"{pre}.symlinks", list(p.symlinks))
        add(f"{pre}.require_review", p.require_review)
        add(f"{pre}.require_checks", p.require_checks)
        add(f"{pre}.merge_states", list(p.merge_states))
        add(f"{pre}.merge_method", p.merge_method)
        add(f"{pre}.disposable", list(p.disposable))
        add(f"{pre}.env", {k: environment.masked(k, v) for k, v in (*p.env, *p.agent.env)})
        for name, r in sorted(p.reactions.items()):
            add(f"{pre}.reactions.{name}", r.__dict__)
    return rows

