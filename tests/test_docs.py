"""The docs name every configuration key the code accepts, so they cannot drift apart."""

from __future__ import annotations

from ao import config

from .helpers import REPO


def test_configuration_doc_names_every_key() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    keys = [*config._TOP_KEYS, *(f"tmux.{k}" for k in config._TMUX_KEYS),
            *config._PROJECT_KEYS, *config._REACTION_KEYS, *config.REACTION_NAMES,
            *config.ENV_VARS, *(f"notify.{k}" for k in config._NOTIFY_KEYS),
            *(f"cleanup.{k}" for k in config._CLEANUP_KEYS)]
    missing = [k for k in keys if f"`{k}`" not in doc]
    assert missing == []
