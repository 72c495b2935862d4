"""The settings of a project, each read and checked on its own (config.py assembles them):
its agent, environment, reactions and their message templates, forge, CI, merging, pickup
label and budget. Every error names the file's dotted key and the way out."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ao.config_checks import (
    checked,
    mapping,
    optional,
    parse_duration,
    refused,
    str_list,
    typed,
)
from ao.config_model import COUNTED, MESSAGES, REACTION_NAMES, TIMED, AgentSpec, ReactionConfig
from ao.errors import ConfigError

if TYPE_CHECKING:
    from ao.config_files import Merged

MERGE_METHODS = ("merge", "squash", "rebase", "auto")
EXTRA_MERGE_STATES = ("has_hooks", "unstable")
_AGENT_KEYS = ("name", "command", "permission_mode", "env", "ready", "fallback")
_CI_KEYS = ("command", "timeout")
_REACTION_KEYS = ("auto", "retries", "escalate_after", "message")


def _agent(value: Any, where: str, m: Merged) -> AgentSpec:
    if value is None:
        return AgentSpec()
    if isinstance(value, str):
        return AgentSpec(name=value)
    raw = checked(value, where, _AGENT_KEYS, m)
    command = optional(raw, "command", str, where, m)
    mode = optional(raw, "permission_mode", str, where, m)
    if mode is not None and not re.match(r"^[A-Za-z]+$", mode):
        raise ConfigError(f"`{where}.permission_mode` {mode!r} is not a mode name",
                          "e.g. acceptEdits, plan, default")
    name = typed(raw.get("name", "command" if command else "claude-code"), str,
                 f"{where}.name", m)
    ready = optional(raw, "ready", str, where, m)
    if ready is not None:
        try:
            re.compile(ready)
        except re.error as e:
            raise ConfigError(f"`{where}.ready` is not a regular expression: {e}",
                              "e.g. ready: '^> '") from None
    return AgentSpec(name=name, command=command, permission_mode=mode,
                     env=_env(raw.get("env"), f"{where}.env", m), ready=ready,
                     fallback=optional(raw, "fallback", str, where, m))


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env(value: Any, where: str, m: Merged) -> tuple[tuple[str, str], ...]:
    out = []
    for k, v in mapping(value, where, m).items():
        if not _ENV_NAME.match(str(k)):
            raise ConfigError(f"`{where}`: {k!r} is not a variable name", "e.g. NODE_ENV")
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise ConfigError(f"`{where}.{k}` must be a string, got {v!r}",
                              'quote it, or pass one through: "${NAME}"')
        out.append((str(k), str(v)))
    return tuple(out)


def _reactions(value: Any, where: str, m: Merged) -> dict[str, ReactionConfig]:
    return {str(name): _reaction(str(name), checked(spec, f"{where}.{name}", _REACTION_KEYS, m),
                                 f"{where}.{name}", m)
            for name, spec in checked(value, where, REACTION_NAMES, m).items()}


def _reaction(name: str, r: Mapping[str, Any], w: str, m: Merged) -> ReactionConfig:
    """Each key read as what it means for this reaction; a key it has no use for is an error,
    not a setting silently ignored."""
    def refuse(key: str, why: str, hint: str) -> ConfigError:
        return refused(m, f"{w}.{key}", why, hint)

    rounds = optional(r, "retries", int, w, m)
    esc, wait = r.get("escalate_after"), None
    if (rounds is not None or esc is not None) and name not in (*COUNTED, *TIMED):
        key = "retries" if rounds is not None else "escalate_after"
        raise refuse(key, f"has no effect on {name}",
                     f"it applies to {', '.join(COUNTED)} (a count) and agent-stuck (a time)")
    if name in TIMED and rounds is not None:
        raise refuse("retries", "has no effect on agent-stuck (one nudge, then a human)",
                     "set how long it waits: escalate_after: 20m")
    if esc is not None and name in TIMED:
        wait = parse_duration(esc, f"{w}.escalate_after")
    elif esc is not None:
        if rounds is not None:
            raise refuse("escalate_after", "and `retries` say the same thing", "keep one")
        if isinstance(esc, bool) or not str(esc).isdigit():
            raise refuse("escalate_after", f"counts rounds here, got {esc!r}",
                         "write a whole number, e.g. escalate_after: 3")
        rounds = int(esc)
    message = optional(r, "message", str, w, m)
    if message is not None:
        _template(message, MESSAGES.get(name), f"{w}.message", m)
    return ReactionConfig(auto=bool(typed(r.get("auto", True), bool, f"{w}.auto", m)),
                          rounds=rounds, wait=wait, message=message)


def _template(text: str, names: tuple[str, ...] | None, where: str, m: Merged) -> None:
    """A `message` template whose placeholders are all ones its reaction fills in."""
    if names is None:
        raise refused(m, where, "has no effect: this reaction sends the agent nothing",
                      f"messages are sent on {', '.join(MESSAGES)}")
    try:
        used = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as e:
        raise refused(m, where, f"is not a template ({e})",
                      "write a literal brace twice: {{ }}") from None
    for f in used:
        if f not in names:
            raise refused(m, where, f"has an unknown placeholder {{{f}}}",
                          f"placeholders: {', '.join('{' + n + '}' for n in names)}")


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
    ci_raw = checked(ci, f"{where}.ci", _CI_KEYS, m)
    return (optional(ci_raw, "command", str, f"{where}.ci", m),
            parse_duration(ci_raw.get("timeout", 600), f"{where}.ci.timeout"))


def _merging(raw: Mapping[str, Any], where: str, m: Merged) -> tuple[str, tuple[str, ...]]:
    """The merge method and the merge states accepted besides clean."""
    merge_method = str(typed(raw.get("merge_method", "merge"), str, f"{where}.merge_method", m))
    if merge_method not in MERGE_METHODS:
        raise ConfigError(f"`{where}.merge_method` must be one of {', '.join(MERGE_METHODS)}, "
                          f"got {merge_method!r}", "auto: the first method the repo allows")
    merge_states = tuple(x.lower() for x in str_list(raw.get("merge_states"),
                                                     f"{where}.merge_states", m))
    for st in merge_states:
        if st not in EXTRA_MERGE_STATES:
            raise ConfigError(f"`{where}.merge_states` may hold {', '.join(EXTRA_MERGE_STATES)}"
                              f", not {st!r}", "clean is always accepted")
    return merge_method, merge_states


def _one_of(raw: Mapping[str, Any], key: str, options: Sequence[str], where: str, m: Merged,
            hint: str) -> str:
    """A setting that takes one of a few words; the first is its default."""
    value = str(typed(raw.get(key, options[0]), str, f"{where}.{key}", m))
    if value not in options:
        raise ConfigError(f"`{where}.{key}` must be one of {', '.join(options)}, got "
                          f"{value!r}", hint)
    return value


def _budget(raw: Any, where: str, m: Merged) -> float | None:
    """`budget_usd: 50`: what the project's agents may spend, in dollars (agent_usage.py)."""
    if raw is None:
        return None
    value = typed(raw, (int, float), where, m)
    if isinstance(value, bool) or float(value) <= 0:
        raise ConfigError(f"`{where}` must be a positive amount of dollars, got {raw!r}",
                          "e.g. budget_usd: 50")
    return float(value)


def _pickup(raw: Any, where: str, m: Merged) -> tuple[str | None, str, bool]:
    """`pickup: {label: ai-implement, on_unlabel: ask | kill, status_comment: true}` (or just
    the label)."""
    if raw is None:
        return None, "ask", True
    if isinstance(raw, str):
        raw = {"label": raw}
    spec = checked(raw, where, ("label", "on_unlabel", "status_comment"), m)
    label = str(typed(spec.get("label", ""), str, f"{where}.label", m)).strip()
    if not label or "," in label:
        raise ConfigError(f"`{where}.label` must name one GitHub label", "e.g. ai-implement")
    on_unlabel = str(typed(spec.get("on_unlabel", "ask"), str, f"{where}.on_unlabel", m))
    if on_unlabel not in ("ask", "kill"):
        raise ConfigError(f"`{where}.on_unlabel` must be ask or kill, got {on_unlabel!r}",
                          "ask: you are told; kill: the session is killed")
    status = bool(typed(spec.get("status_comment", True), bool, f"{where}.status_comment", m))
    return label, on_unlabel, status
