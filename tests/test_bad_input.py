"""Bad input, table-driven: one line on stderr naming the problem and the way out, exit 2, no
traceback, and nothing written (no state.db row, no tmux.conf, no worktree)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ao import paths

from .helpers import run_ao

BOMB = ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n")

PLANS = {
    "non-scalar key": ("tasks:\n  ? [a, b]\n  : {title: x}\n", "a key must be a plain value"),
    "alias bomb in a body": ("x: &x aaaaaaaa\ntasks:\n  A-1: {title: t, body: *x}\n",
                             "aliases"),
    "alias bomb": (BOMB + "tasks:\n  A-1: {title: t}\n", "aliases"),
    "1 and #1": ("tasks:\n  '1': {title: a}\n  '#1': {title: b}\n", "the same task as 1"),
    "case twins": ("tasks:\n  X-1: {title: a}\n  x-1: {title: b}\n", "the same task as X-1"),
    "too big": ("tasks:\n" + "".join(f"  T-{i}: {{title: t}}\n" for i in range(1001)),
                "at most 1000"),
    "not utf-8": (b"tasks:\n  A-1: {title: \xff\xfe}\n", "not a readable plan"),
}


@pytest.mark.parametrize("case", sorted(PLANS))
def test_bad_plans(case: str, tmp_path: Path) -> None:
    text, needle = PLANS[case]
    f = tmp_path / "p.yaml"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    for argv in (["plan", "check", str(f)], ["plan", "show", str(f)]):
        r = run_ao(*argv)
        assert r.code == 2, (case, argv, r.out, r.err)
        lines = [ln for ln in (r.err + r.out).splitlines() if ln.strip()]
        assert any(needle in ln for ln in lines), (case, r.err, r.out)
        assert "Traceback" not in r.err and len(r.err) < 2000
    assert not (paths.ao_home() / "state.db").exists()


CONFIGS = {
    "ci.command: 5": ({"ci": {"command": 5}}, "ci.command` must be str"),
    "default_branch list": ({"default_branch": ["main"]}, "default_branch` must be str"),
    "remote mapping": ({"remote": {"x": 1}}, "remote` must be str"),
    "plan list": ({"plan": ["a"]}, "plan` must be str"),
    "permission_mode list": ({"agent": {"permission_mode": ["x"]}},
                             "permission_mode` must be str"),
    "reaction message": ({"reactions": {"ci-failed": {"message": 5}}}, "message` must be str"),
    "path missing": ({"path": "/nonexistent/place"}, "does not exist"),
    "path not git": ({"path": "/tmp"}, "is not a git work tree"),
    "env not a string": ({"env": {"X": ["a"]}}, "must be a string"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_bad_configs(case: str, repo: Path) -> None:
    extra, needle = CONFIGS[case]
    spec = {"path": str(repo), **extra}
    paths.home()
    paths.config_file().write_text(json.dumps({"projects": {"shop": spec}}))
    for argv in (["config", "show"], ["batch-spawn", "shop", "A-1"], ["status"]):
        r = run_ao(*argv)
        assert r.code == 2, (case, argv, r.out, r.err)
        assert needle in r.err and r.err.count("\n") == 1, (case, r.err)
    assert not (paths.ao_home() / "tmux.conf").exists()
    assert not (paths.ao_home() / "state.db").exists()


def test_config_that_is_not_utf8_or_a_bomb(repo: Path) -> None:
    paths.home()
    for raw, needle in ((b"projects: {shop: {path: \xff}}\n", "not UTF-8"),
                        (BOMB.encode() + b"projects: {}\n", "aliases")):
        paths.config_file().write_bytes(raw)
        r = run_ao("config", "show")
        assert r.code == 2 and needle in r.err and r.err.count("\n") == 1, r.err


def test_commands_with_bad_arguments(repo: Path) -> None:
    for argv, needle in ((["events", "-n", "0"], "--limit"), (["spawn"], "Missing argument"),
                         (["nosuch"], "No such command"), (["send", "NOPE-1", "x"], "no session")):
        r = run_ao(*argv)
        assert r.code == 2 and needle in r.err and r.err.count("\n") == 1, (argv, r.err)

