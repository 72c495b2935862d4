"""What an agent's process and a CI run are given of the environment: least privilege.

An agent gets BASE_ENV (what any program needs to run as the user), the variables its profile
names (its API key and endpoint), ao's own session variables, and what the project's config
passes (`env:`, literal values or `${VAR}` from ao's environment). Nothing else: a GitHub token
or another agent's key in the user's shell never reaches it. The environment is computed at
each spawn from ao's environment as it is then, never inherited from the tmux server (which
keeps the environment of whoever started it first).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

BASE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_ALL",
            "LC_CTYPE", "LC_MESSAGES", "TERM", "COLORTERM", "TMPDIR", "TZ", "XDG_RUNTIME_DIR",
            "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME",
            "GIT_CONFIG_GLOBAL", "SSH_AUTH_SOCK", "AO_HOME", "VIRTUAL_ENV", "PYTHONPATH")
# a tmux client's: what it needs to find its socket and run; the client that starts ao's
# server gives it this as its global environment, which every pane can read
TMUX_CLIENT_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TERM",
                   "TMPDIR", "TMUX_TMPDIR", "TZ", "XDG_RUNTIME_DIR")
# the identity of commits, given to agents from the user's git config (Gemini CLI's shell
# sets GIT_CONFIG_GLOBAL=/dev/null, and its `git commit` failed: "Author identity unknown")
GIT_IDENTITY = ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL")
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.I)


def tmux_client() -> dict[str, str]:
    """The environment of ao's tmux clients: TMUX_CLIENT_ENV of ao's own, nothing else."""
    return {k: v for k, v in os.environ.items() if k in TMUX_CLIENT_ENV}


# a notifier's desktop (notify-send finds the session bus and the display by these)
DESKTOP_ENV = ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS")


def for_command(configured: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """What a `post_create` command, an event hook or the notifier gets: BASE_ENV, the desktop
    variables, and what the project's `env:` names; never the rest of ao's environment (its
    GitHub token, the agents' API keys)."""
    return build(os.environ, DESKTOP_ENV, configured=dict(configured))


def expand(values: Mapping[str, str], source: Mapping[str, str]) -> dict[str, str]:
    """`${VAR}` in a value is VAR from `source` (empty when unset)."""
    return {k: _REF.sub(lambda m: source.get(m.group(1), ""), v) for k, v in values.items()}


def build(source: Mapping[str, str], passthrough: Iterable[str] = (),
          extra: Mapping[str, str] | None = None,
          configured: Mapping[str, str] | None = None, elsewhere: bool = False
          ) -> dict[str, str]:
    """`elsewhere`: the agent runs on another machine (an SSH host), whose login gives it its
    own HOME and PATH (so none of BASE_ENV goes), and where a path of this one (CODEX_HOME,
    CLAUDE_CONFIG_DIR, NODE_EXTRA_CA_CERTS set here) means nothing: passed-through values that
    are paths stay here (the host's own `env:` sets them there)."""
    names = (*(() if elsewhere else BASE_ENV), *passthrough)
    prefixes = tuple(n[:-1] for n in names if n.endswith("*"))  # "AIDER_*": every AIDER_ var
    env = {k: v for k, v in source.items() if k in names or (prefixes and k.startswith(prefixes))}
    if elsewhere:
        env = {k: v for k, v in env.items() if not v.startswith(("/", "~"))}
    env.update(extra or {})
    env.update(expand(configured or {}, source))
    return env


def masked(name: str, value: str) -> str:
    """A value fit to show: secrets (by name, or pulled from a variable whose name says so)
    are masked."""
    if _SECRET.search(name) or any(_SECRET.search(m) for m in _REF.findall(value)):
        return "${…}" if _REF.search(value) else "****"
    return value
