"""The docs name every configuration key the code accepts, so they cannot drift apart."""

from __future__ import annotations

from ao import config, config_settings, host_config

from .helpers import REPO


def test_configuration_doc_names_every_key() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    keys = [*config._TOP_KEYS, *(f"tmux.{k}" for k in config._TMUX_KEYS),
            *config._PROJECT_KEYS, *config_settings._REACTION_KEYS, *config.REACTION_NAMES,
            *config.ENV_VARS, *(f"notify.{k}" for k in config._NOTIFY_KEYS),
            *(f"cleanup.{k}" for k in config._CLEANUP_KEYS),
            *(f"llm.{k}" for k in config._LLM_KEYS),
            *(f"hosts.<name>.{k}" for k in host_config.HOST_KEYS)]
    missing = [k for k in keys if f"`{k}`" not in doc]
    assert missing == []


def _commands() -> list[tuple[str, str | None]]:
    """Every command path of the CLI with its help text."""
    import typer.main

    from ao.cli.main import app

    root = typer.main.get_command(app)
    out: list[tuple[str, str | None]] = []

    def walk(cmd: object, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            out.append((" ".join(["ao", *path]), getattr(cmd, "help", None)))

    walk(root, [])
    return out


def test_every_command_has_help_and_is_documented() -> None:
    docs = "\n".join(p.read_text() for p in [REPO / "README.md",
                                               *sorted((REPO / "docs").glob("*.md"))])
    commands = _commands()
    assert len(commands) > 30
    no_help = [c for c, h in commands if not (h or "").strip()]
    undocumented = [c for c, _ in commands if c not in docs]
    assert no_help == []
    assert undocumented == []
