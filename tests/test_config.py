from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ao import config
from ao.errors import ConfigError

from .helpers import git, run_ao


def write_global(home: Path, text: str) -> Path:
    d = home / ".agent-orchestrator"
    d.mkdir(exist_ok=True)
    f = d / "config.yaml"
    f.write_text(text)
    return f


def git_init(path: Path) -> None:
    """Project paths must be git work trees."""
    subprocess.run(["git", "init", "-q", str(path)], check=True)


def test_defaults_and_prefix(isolated_home: Path, tmp_path: Path) -> None:
    git_init(tmp_path)
    write_global(isolated_home, f"projects:\n  workflow:\n    path: {tmp_path}\n")
    cfg = config.load()
    p = cfg.project("workflow")
    assert p.session_prefix == "wor"
    assert p.max_concurrent == 5
    assert p.forge == "local"
    assert p.agent.name == "claude-code"
    assert cfg.poll_interval == 30.0
    assert cfg.tmux_socket == "ao"


def test_unknown_key_names_file_key_and_nearest(isolated_home: Path, tmp_path: Path) -> None:
    f = write_global(isolated_home,
                     f"projects:\n  workflow:\n    path: {tmp_path}\n    max_concurent: 3\n")
    with pytest.raises(ConfigError) as e:
        config.load()
    assert "unknown key `projects.workflow.max_concurent`" in e.value.message
    assert "config.yaml" in e.value.message and str(f).startswith(str(isolated_home))
    assert e.value.hint == "did you mean `max_concurrent`?"


def test_unknown_top_level_key(isolated_home: Path) -> None:
    write_global(isolated_home, "pol_interval: 5s\n")
    with pytest.raises(ConfigError, match="unknown key `pol_interval`") as e:
        config.load()
    assert "poll_interval" in e.value.hint


@pytest.mark.parametrize(("text", "match"), [
    ("projects:\n  w:\n    path: /x\n    max_concurrent: many\n", "must be int"),
    ("projects:\n  w:\n    path: /x\n    max_concurrent: 0\n", "at least 1"),
    ("projects:\n  w:\n    path: /x\n    forge: gitlab\n", "github or local"),
    ("projects:\n  w:\n    path: /x\n    forge: github\n", "`repo` is not set"),
    ("projects:\n  w:\n    path: /x\n    repo: not a slug\n", "owner/name"),
    ("projects:\n  w: {}\n", "path` is missing"),
    ("poll_interval: soon\n", "not a duration"),
    ("projects:\n  w:\n    path: /x\n    reactions: {ci-fail: {retries: 3}}\n",
     "unknown key `projects.w.reactions.ci-fail`"),
    ("projects:\n  w:\n    path: /x\n    reactions: {ci-failed: {escalate_after: 30m}}\n",
     "`projects.w.reactions.ci-failed.escalate_after` counts rounds here, got '30m'"),
    ("projects:\n  w:\n    path: /x\n    reactions: {ci-failed: {retries: 2, "
     "escalate_after: 3}}\n", "and `retries` say the same thing"),
    ("projects:\n  w:\n    path: /x\n    reactions: {agent-stuck: {escalate_after: soon}}\n",
     "not a duration"),
    ("projects:\n  w:\n    path: /x\n    reactions: {agent-stuck: {retries: 2}}\n",
     "has no effect on agent-stuck"),
    ("projects:\n  w:\n    path: /x\n    reactions: {merged: {escalate_after: 3}}\n",
     "`projects.w.reactions.merged.escalate_after` has no effect on merged"),
    ("projects:\n  w:\n    path: /x\n    reactions: {merged: {message: hi}}\n",
     "`projects.w.reactions.merged.message` has no effect"),
    ("projects:\n  w:\n    path: /x\n    reactions: {ci-failed: {message: 'fix {branch}'}}\n",
     r"unknown placeholder \{branch\}"),
    ("projects:\n  w:\n    path: /x\n    reactions: {ci-failed: {message: 'fix {'}}\n",
     "is not a template"),
    ("projects:\n  work:\n    path: /x\n  workshop:\n    path: /y\n", "share the session prefix"),
    ("projects: [\n", "not valid YAML"),
    ("projects:\n  w:\n    path: /x\n    on_red_main: panic\n",
     "`projects.w.on_red_main` must be one of pause, revert, fix, got 'panic'"),
    ("projects:\n  w:\n    path: /x\n    merge: queue\n", "needs its `ci:` command"),
    ("projects:\n  w:\n    path: /x\n    repo: a/b\n    ci: make\n    merge: queue\n",
     "is the local forge's merge train"),
])
def test_bad_config(isolated_home: Path, text: str, match: str) -> None:
    write_global(isolated_home, text)
    with pytest.raises(ConfigError, match=match):
        config.load()


def test_repo_file_overrides_global_and_env_overrides_both(
        isolated_home: Path, tmp_path: Path) -> None:
    git_init(tmp_path)
    write_global(isolated_home, "poll_interval: 45s\ntmux: {socket: mine}\n"
                 f"projects:\n  workflow:\n    path: {tmp_path}\n    max_concurrent: 3\n")
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "agent-orchestrator.yaml").write_text(
        "projects:\n  workflow:\n    max_concurrent: 8\n"
        "    agent: {command: 'run {prompt_file}'}\n")
    cfg = config.load(cwd=repo / "sub", env={"AO_POLL_INTERVAL": "2m"})
    p = cfg.project("workflow")
    assert p.max_concurrent == 8
    assert p.path == tmp_path  # kept from the global file
    assert p.agent.command == "run {prompt_file}"
    assert cfg.poll_interval == 120.0
    rows = {k: (v, s) for k, v, s in config.effective(cfg)}
    assert rows["poll_interval"] == ("120s", "env AO_POLL_INTERVAL")
    assert rows["tmux.socket"][1].endswith("config.yaml")
    assert rows["projects.workflow.max_concurrent"][1].endswith("repo/agent-orchestrator.yaml")
    assert rows["projects.workflow.default_branch"] == ("main", "default")


def test_reaction_settings_are_read_as_what_they_mean(isolated_home: Path,
                                                      tmp_path: Path) -> None:
    from ao.decide.reactions import DEFAULT_REVIEW_ROUNDS, Policy

    git_init(tmp_path)
    write_global(isolated_home, f"projects:\n  w:\n    path: {tmp_path}\n    reactions:\n"
                 "      ci-failed: {escalate_after: 5}\n"
                 "      merge-conflict: {retries: 1}\n"
                 "      agent-stuck: {escalate_after: 20m, message: 'Still there? ({reason})'}\n")
    policy = Policy.for_project(config.load().project("w"))
    assert (policy.ci_retries, policy.rebase_retries) == (5, 1)
    assert policy.review_rounds == DEFAULT_REVIEW_ROUNDS
    assert policy.stuck_after == 1200
    assert policy.messages == {"agent-stuck": "Still there? ({reason})"}


def test_durations() -> None:
    assert config.parse_duration("30s") == 30
    assert config.parse_duration("5m") == 300
    assert config.parse_duration("2h") == 7200
    assert config.parse_duration("7d") == 7 * 86400
    assert config.parse_duration(12) == 12
    with pytest.raises(ConfigError):
        config.parse_duration("later")


def test_cli_bad_config_is_one_line_exit_2(isolated_home: Path) -> None:
    write_global(isolated_home, "projects:\n  w:\n    path: /x\n    agnet: codex\n")
    r = run_ao("config", "show")
    assert r.code == 2
    assert r.err.strip().count("\n") == 0
    assert "unknown key `projects.w.agnet`" in r.err and "did you mean `agent`?" in r.err
    assert "Traceback" not in r.err


def test_config_show_json(isolated_home: Path, tmp_path: Path) -> None:
    git_init(tmp_path)
    write_global(isolated_home, f"projects:\n  workflow:\n    path: {tmp_path}\n")
    r = run_ao("config", "show", "--json")
    assert r.code == 0, r.err
    rows = {row["key"]: row for row in json.loads(r.out)}
    assert rows["projects.workflow.session_prefix"]["value"] == "wor"
    assert rows["projects.workflow.path"]["source"] == "~/.agent-orchestrator/config.yaml"


def test_init_detects_origin_and_branch(repo: Path) -> None:
    git(repo, "remote", "set-url", "origin", "git@github.com:acme/work-flow.git")
    r = run_ao("init", cwd=repo, env={"PATH": "/usr/bin:/bin"})  # no `claude` on it
    assert r.code == 0, r.err
    # the template names claude-code: where it is not installed, init says so
    import shutil

    said = "claude-code (the `claude` CLI), is not installed" in r.err
    assert said == (shutil.which("claude", path="/usr/bin:/bin") is None), r.err
    text = (repo / "agent-orchestrator.yaml").read_text()
    assert "repo: acme/work-flow" in text and "default_branch: main" in text
    cfg = config.load(cwd=repo)
    p = cfg.project("work")
    assert p.forge == "github" and p.repo == "acme/work-flow" and p.path == repo
    again = run_ao("init", cwd=repo)
    assert again.code == 0 and "already exists" in again.out and "--force" in again.out
    assert config.registered_repos() == [repo.resolve()]


def test_init_without_github_uses_local_forge(repo: Path) -> None:
    r = run_ao("init", "--name", "shop", cwd=repo)
    assert r.code == 0, r.err
    p = config.load(cwd=repo).project("shop")
    assert p.forge == "local" and p.repo is None and p.session_prefix == "sho"


def test_init_outside_a_repo(tmp_path: Path) -> None:
    r = run_ao("init", cwd=tmp_path)
    assert r.code == 2 and "not inside a git repository" in r.err


def test_config_show_lists_hosts_with_secrets_masked(isolated_home: Path, tmp_path: Path) -> None:
    git_init(tmp_path)
    write_global(isolated_home, f"hosts:\n  local: {{max_sessions: 2}}\n  build-1:\n"
                 "    ssh: ci@build-1\n    port: 2222\n    max_sessions: 6\n"
                 "    env: {GITHUB_TOKEN: ghp_0123456789abcdef}\n"
                 "    ssh_options: [StrictHostKeyChecking=accept-new]\n"
                 f"projects:\n  workflow:\n    path: {tmp_path}\n    hosts: [local, build-1]\n")
    r = run_ao("config", "show", "--json")
    assert r.code == 0, r.err
    rows = {row["key"]: row for row in json.loads(r.out)}
    assert rows["hosts.build-1.ssh"]["value"] == "ci@build-1"
    assert rows["hosts.build-1.port"]["value"] == 2222
    assert rows["hosts.build-1.max_sessions"]["value"] == 6
    assert rows["hosts.local.max_sessions"]["value"] == 2
    assert rows["hosts.build-1.ssh"]["source"] == "~/.agent-orchestrator/config.yaml"
    assert rows["projects.workflow.hosts"]["value"] == ["local", "build-1"]
    assert rows["hosts.build-1.ssh_options"] == {
        "key": "hosts.build-1.ssh_options", "value": ["StrictHostKeyChecking=accept-new"],
        "source": "~/.agent-orchestrator/config.yaml"}
    assert "ghp_0123456789abcdef" not in r.out
