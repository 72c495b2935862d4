"""Where configuration comes from: the global file, a repository's own file (found upward
from a folder), the registry of repositories `ao init` made, and a digest of them all."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ao import paths, yamlio
from ao.errors import ConfigError

REPO_CONFIG_NAME = "agent-orchestrator.yaml"


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


class Merged:
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
