"""Never silent: why a session waits, and on whom (waiting.py), as plain data and as a
newcomer meets it: the first green PR on the local forge waits for a review, and `ao status`
says so (it sat in `working` with nothing said anywhere)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

from ao import config, paths
from ao.decide import waiting
from ao.loop.daemon import Daemon
from ao.record.state import Activity, State
from ao.record.store import Session, Store

from . import records
from .fleet_helpers import Env
from .helpers import retry_until, run_ao
from .test_daemon import PLAN

NOW = records.NOW
BASE = records.SESSION


def why(s: Session, **ctx: object) -> waiting.Wait | None:
    return waiting.why(s, waiting.Context(**ctx), NOW)  # type: ignore[arg-type]


def test_each_wait_names_its_reason_and_who_acts() -> None:
    w = why(BASE)
    assert w is not None and w.who == "reviewer" and w.needs_person
    assert "review needed on PR #45: `ao review wor-3 --approve`" in w.reason
    w = why(BASE, forge="github")
    assert w is not None and "write access approves it on GitHub" in w.reason
    cases = {
        "permission": replace(BASE, activity=Activity.WAITING_INPUT),
        "exited": replace(BASE, activity=Activity.EXITED),
        "ci_failing": replace(BASE, pr_checks="failing"),
        "ci_pending": replace(BASE, pr_checks="pending"),
        "changes": replace(BASE, pr_review="changes_requested"),
        "conflict": replace(BASE, pr_mergeable="conflicting"),
        "approve": replace(BASE, step="approve"),
        "behind": replace(BASE, pr_review="approved", pr_merge_state="behind"),
        "blocked": replace(BASE, pr_review="approved", pr_merge_state="blocked"),
        "ready": replace(BASE, pr_review="approved", pr_gate_ok=1),
        "limited": replace(BASE, limited_until=NOW + 3600),
        "stuck": replace(BASE, pr_number=None, pr_state=None, screen_changed_at=NOW - 900),
        "needs_human": replace(BASE, state=State.NEEDS_HUMAN, note="CI failed 3 times"),
        "host": replace(BASE, activity=Activity.UNREACHABLE, host="build-a"),
    }
    for kind, s in cases.items():
        w = why(s)
        assert w is not None and w.kind == kind, (kind, w)
        assert w.reason and w.who, kind
    assert why(replace(BASE, pr_review="approved", pr_gate_ok=1), auto_merge=True).who == "ao"
    assert why(replace(BASE, pr_number=None, pr_state=None, activity=Activity.ACTIVE)) is None
    assert why(replace(BASE, state=State.MERGED)) is None
    paused = why(replace(BASE, pr_number=None, pr_state=None), paused=True)
    assert paused is not None and paused.kind == "paused"


def test_a_newcomers_first_pr_says_it_needs_a_review(env: Env) -> None:
    """require_review is the default: the first green PR waits for `ao review`. `ao status`
    and `ao session ls` say so within a poll, `ao logs` has it, and a person is told once."""
    plan = {"tasks": {"A-1": PLAN["tasks"]["A-1"]}}
    env.plan_file.write_text(json.dumps(plan))
    told = paths.home() / "told.jsonl"
    env.write_config(auto_merge=True, ci={"command": f"{sys.executable} -m unittest -q"})
    cfg = json.loads(paths.config_file().read_text())
    cfg["notify"] = {"command": f"cat >> {told}; echo >> {told}", "desktop": False}
    paths.config_file().write_text(json.dumps(cfg))
    assert run_ao("plan", "run", str(env.plan_file), "-p", "shop").code == 0
    store = Store()
    d = Daemon(config.load(), store, env.server())

    def waits_for_review() -> bool:
        d.tick()
        return "review needed" in run_ao("status").out

    retry_until(waits_for_review, timeout=60, interval=0.5, message="the review reason")
    out = run_ao("status").out
    sid = store.sessions("shop", task="A-1")[-1].id
    assert f"{sid} A-1: review needed on PR #1: `ao review {sid} --approve`" in out, out
    assert "[reviewer]" in out
    rows = json.loads(run_ao("session", "ls", "--json").out)
    assert rows[0]["waiting_on"] == "reviewer" and "review needed" in rows[0]["waiting"]
    assert "review needed" in run_ao("session", "ls").out
    for _ in range(3):
        d.tick()
    retry_until(lambda: told.exists() and "review needed" in told.read_text(), timeout=20,
                message="the notification")
    time.sleep(0.5)
    assert told.read_text().count("waits for you") == 1  # once, not every poll
    assert '"session.waiting"' in (paths.session_dir("shop", sid) / "events.log").read_text()



def test_a_push_that_fails_is_named_in_status(env: Env, monkeypatch: object) -> None:
    """Every push of the agent failed (here: a push URL that names nothing); ao said
    working/idle and only `ao logs` had git's error. Within a poll of the agent going idle,
    `ao status` says the commits are not on the remote, with git's own line, and a person
    is told."""
    import pytest

    from ao.loop import telling

    from .helpers import git

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(telling, "PUSH_GRACE", 0.0)
    env.plan_file.write_text(json.dumps({"tasks": {"A-1": PLAN["tasks"]["A-1"]}}))
    env.write_config(ci={"command": f"{sys.executable} -m unittest -q"})
    git(env.repo, "config", "remote.origin.pushurl", str(env.repo.parent / "gone.git"))
    assert run_ao("plan", "run", str(env.plan_file), "-p", "shop").code == 0
    d = Daemon(config.load(), Store(), env.server())

    def says_push_failing() -> bool:
        d.tick()
        return "push failing" in run_ao("status").out

    retry_until(says_push_failing, timeout=60, interval=0.5, message="the push reason")
    out = run_ao("status").out
    # git's own line, as the agent's terminal showed it
    assert "1 commit not on origin: Could not read from remote repository." in out, out
    assert "[person]" in out, out
    # fixed: the next push lands, and the reason goes
    git(env.repo, "config", "--unset", "remote.origin.pushurl")
    sid = Store().sessions("shop", task="A-1")[-1].id
    assert run_ao("send", sid, "push").code == 0

    def pushed() -> bool:
        d.tick()
        return "push failing" not in run_ao("status").out

    retry_until(pushed, timeout=60, interval=0.5, message="the reason gone")


def test_a_relative_remote_is_refused_before_anything_starts(env: Env) -> None:
    from .helpers import git

    git(env.repo, "remote", "set-url", "origin", "../remote.git")
    r = run_ao("spawn", "shop", "A-1")
    assert r.code == 2 and "is a relative path (../remote.git)" in r.err, r.err
    assert "remote set-url origin" in r.err
    assert Store().sessions("shop") == [] or all(
        s.state is State.FAILED for s in Store().sessions("shop"))
    assert not list(paths.worktrees_dir("shop").glob("*"))
