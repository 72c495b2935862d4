"""The configuration as typed records (what `config.load` returns), and each effective
setting with where it came from (`ao config show`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ao import environment, paths
from ao import host_config as hostsmod
from ao.errors import NotFound

if TYPE_CHECKING:
    from ao.host_config import Host

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


# the reactions that count rounds before a human is asked (`retries` or `escalate_after: 3`),
# the one that waits a time (`escalate_after: 20m`), and the ones that send the agent a
# message, each with the placeholders its `message` template may use
COUNTED = ("ci-failed", "changes-requested", "merge-conflict", "approved-and-green")
TIMED = ("agent-stuck",)
MESSAGES = {"ci-failed": ("round", "rounds", "sha"), "changes-requested": ("round",),
            "merge-conflict": ("branch", "remote"), "agent-stuck": ("reason",)}


@dataclass(frozen=True)
class ReactionConfig:
    """One reaction's settings, each already in the type it is used as."""

    auto: bool = True
    rounds: int | None = None  # COUNTED: automatic rounds before escalating
    wait: float | None = None  # TIMED: seconds before it acts
    message: str | None = None  # MESSAGES: the template of the message's opening


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
    # a PR behind a base branch that must be up to date: ao updates it on the forge, asks
    # the agent to rebase, or waits
    behind: str = "update"
    env: tuple[tuple[str, str], ...] = ()  # passed to agents and CI (`${VAR}` from ao's env)
    hosts: tuple[str, ...] = ("local",)  # where its sessions may run (names under `hosts:`)
    disposable: tuple[str, ...] = ()  # ignored paths cleanup may delete, besides the defaults
    # GitHub logins whose reviews count (and reach agents) besides accounts with write access
    trusted_reviewers: tuple[str, ...] = ()
    # GitHub as the plan (pickup.py): open issues with this label, from accounts with write
    # access, are tasks; a label removed from a running task's issue: ask | kill
    pickup_label: str | None = None
    # two agents on the same files (overlap.py): wait (hold the later task while a running
    # one writes its files, up to overlap_wait seconds) | ignore
    overlap: str = "wait"
    overlap_wait: float = 1800.0
    pickup_on_unlabel: str = "ask"
    # one comment on each picked-up issue that ao keeps up to date (edited in place)
    pickup_status_comment: bool = True
    # what the project's agents may spend (agent_usage.py): reached, nothing new starts and
    # the running agents are told to wrap up
    budget_usd: float | None = None
    # main turned red by a merge (mainwatch.py): pause (merges and starts wait for a person)
    # | revert (ao opens a PR that reverts the culprit) | fix (an agent's fix task), redmain_act.py
    on_red_main: str = "pause"
    # direct | queue (the local forge's merge train: merged only after CI passed on the PR
    # merged onto main, forge/local_train.py)
    merge: str = "direct"


@dataclass(frozen=True)
class NotifyConfig:
    desktop: bool = True  # where a desktop can show them (notify.reaches)
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
    for h in cfg.hosts.values():
        pre = f"hosts.{h.name}"
        if not h.local:
            add(f"{pre}.ssh", h.ssh)
            add(f"{pre}.port", h.port)
            add(f"{pre}.identity", paths.display(h.identity) if h.identity else None)
            add(f"{pre}.workdir", h.workdir)
            add(f"{pre}.env", {k: environment.masked(k, v) for k, v in h.env})
            add(f"{pre}.ssh_options", list(h.options))
        add(f"{pre}.max_sessions", h.max_sessions)
        add(f"{pre}.min_free_mb", h.min_free_mb)
    for p in cfg.projects.values():
        pre = f"projects.{p.name}"
        add(f"{pre}.path", paths.display(p.path))
        add(f"{pre}.repo", p.repo)
        add(f"{pre}.default_branch", p.default_branch)
        add(f"{pre}.remote", p.remote)
        add(f"{pre}.forge", p.forge)
        add(f"{pre}.agent", p.agent.command or p.agent.name)
        add(f"{pre}.max_concurrent", p.max_concurrent)
        add(f"{pre}.hosts", list(p.hosts))
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
        add(f"{pre}.trusted_reviewers", list(p.trusted_reviewers))
        add(f"{pre}.pickup", {"label": p.pickup_label, "on_unlabel": p.pickup_on_unlabel,
                              "status_comment": p.pickup_status_comment}
            if p.pickup_label else None)
        add(f"{pre}.merge_method", p.merge_method)
        add(f"{pre}.budget_usd", p.budget_usd)
        add(f"{pre}.behind", p.behind)
        add(f"{pre}.overlap", p.overlap)
        add(f"{pre}.on_red_main", p.on_red_main)
        add(f"{pre}.merge", p.merge)
        add(f"{pre}.overlap_wait", f"{p.overlap_wait:g}s")
        add(f"{pre}.disposable", list(p.disposable))
        add(f"{pre}.env", {k: environment.masked(k, v) for k, v in (*p.env, *p.agent.env)})
        for name, r in sorted(p.reactions.items()):
            add(f"{pre}.reactions.{name}", {k: v for k, v in r.__dict__.items() if v is not None})
    return rows
