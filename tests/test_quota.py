"""A usage limit is the whole fleet's: one session at its agent's limit parks every other
session of that agent on the machine (a turn in flight interrupted, messages held), and at the
reset each one that was cut off is told to continue. Real demo agents in real tmux."""

from __future__ import annotations

import json
import time
from datetime import UTC

import pytest

from ao import config, paths
from ao.config import load as config_load
from ao.loop.daemon import Daemon
from ao.record.state import RUNNING, Activity, State
from ao.record.store import Store
from ao.world import tmux

from .fleet_helpers import Env
from .helpers import retry_until, run_ao
from .test_daemon import demo


def events(kind: str) -> list[dict[str, object]]:
    return [e for e in map(json.loads, paths.events_log().read_text().splitlines())
            if e["type"] == kind]


def running(env: Env, tasks: dict[str, object], now: list[float] | None = None,
            **config: object) -> tuple[Store, Daemon]:
    """The plan of `tasks` run on the project with `config`, and a daemon over it (on the
    clock `now[0]`, when given) that has ticked once: the sessions started."""
    env.plan_file.write_text(json.dumps({"tasks": tasks}))
    env.write_config(**config)
    store = Store()
    assert run_ao("plan", "run", str(env.plan_file), "-p", "shop").code == 0
    d = Daemon(config_load(), store, env.server(),
               **({"clock": lambda: now[0]} if now is not None else {}))
    d.tick()
    return store, d


def test_one_limit_parks_the_agents_others_and_the_reset_resumes_them(env: Env) -> None:
    cont = "\n```demo-on continue\nsleep 1\n```"
    now = [time.time()]
    store, d = running(env, {
        "A-1": {"title": "a", "body": demo("sleep 3\nlimit 30") + cont},  # hits the wall
        "B-1": {"title": "b", "body": demo("sleep 30") + cont},  # a turn in flight
        "C-1": {"title": "c", "body": demo("sh true")}}, now, max_concurrent=3)  # idle
    a, b, c = (store.sessions("shop", task=k)[0] for k in ("A-1", "B-1", "C-1"))

    def limited() -> bool:
        d.tick()
        return store.session(a.id).activity is Activity.LIMITED

    retry_until(limited, timeout=40, interval=0.3, message="A-1 at its limit")
    until = store.session(a.id).limited_until
    assert until and until - time.time() > 25 * 60
    # the same tick parked the other two at the same reset
    assert store.session(b.id).limited_until == until == store.session(c.id).limited_until
    parked = {e["session"]: e["data"] for e in events("session.parked")}
    assert parked.keys() == {b.id, c.id}
    assert parked[b.id]["interrupted"] is True and parked[c.id]["interrupted"] is False
    assert len(events("agent.limit_parked")) == 1
    # B's turn was cut off (Escape reached it), not left running into the wall
    retry_until(lambda: "Interrupted" in tmux.capture(env.server(), b.id), timeout=10,
                message="B-1 interrupted")
    d.tick()
    assert len(events("session.parked")) == 2  # parked once, not at every tick
    assert not events("attention.limited")[1:], "one notice for the wall, not one a session"
    # a message for a parked agent waits for the reset (it would only hit the wall)
    r = run_ao("send", b.id, "also update the docs")
    assert r.code == 3 and "usage limit" in r.out, (r.out, r.err)  # 3: queued
    assert [m["body"] for m in store.messages(b.id, "queued")] == ["also update the docs"]

    now[0] = until + 1  # the reset: the limited one and the cut-off one carry on
    d.tick()
    said = {s: [m["body"] for m in store.messages(s) if m["source"] == "limit-reset"]
            for s in (a.id, b.id, c.id)}
    assert said == {a.id: ["continue"], b.id: ["continue"], c.id: []}, said
    assert store.session(b.id).state in (State.WORKING, State.PR_OPEN)


def test_a_plans_budget_holds_its_tasks_and_not_the_projects_others(env: Env) -> None:
    """A plan's `budget_usd`, spent by its tasks' agents (their own records): the plan's
    queued tasks wait (`ao status` says why), its running agents are told once to wrap up, a
    person is told once; another plan of the project goes on. Raised in the plan's file,
    the plan goes on at the next tick."""
    spent = {"budget_usd": 0.5, "tasks": {"A-1": {"title": "a", "body": "x"},
                                           "B-1": {"title": "b", "body": "y"}}}
    other = env.plan_file.with_name("other.yaml")
    other.write_text(json.dumps({"tasks": {"O-1": {"title": "o", "body": "z"}}}))
    env.plan_file.write_text(json.dumps(spent))
    env.write_config(max_concurrent=1)
    store = Store()
    assert run_ao("plan", "run", str(env.plan_file), "-p", "shop").code == 0
    d = Daemon(config.load(), store, env.server())
    d.tick()
    a = store.sessions("shop", task="A-1")[0]
    store.set_agent_usage(a.id, model="claude-sonnet-5-5", cost_usd=0.75)
    env.write_config(max_concurrent=3)
    d.reload_config()
    assert run_ao("plan", "run", str(other), "-p", "shop").code == 0
    for _ in range(2):
        d.tick()
    assert [s.state for s in store.sessions("shop", task="B-1")] == [State.QUEUED]
    # the other plan's task started (a quick demo agent may already have opened its PR)
    assert store.sessions("shop", task="O-1")[0].state in RUNNING - {State.NEEDS_HUMAN}
    told = [m["body"] for m in store.messages(a.id) if m["source"] == "budget"]
    assert len(told) == 1 and "the plan's budget is spent ($0.75 of $0.50)" in told[0]
    reached = events("budget.reached")
    assert len(reached) == 1 and reached[0]["data"]["plan"] == str(env.plan_file.resolve())
    out = run_ao("status").out
    assert "the plan's budget is spent" in out, out
    bad = env.plan_file.read_text().replace('"budget_usd": 0.5', '"budget_usd": "lots"')
    env.plan_file.write_text(bad)
    r = run_ao("plan", "show", str(env.plan_file))
    assert r.code == 2 and "budget_usd must be a positive number" in r.err, (r.out, r.err)
    env.plan_file.with_name("ok.yaml").write_text(json.dumps({**spent, "budget_usd": 5}))
    shown = run_ao("plan", "show", str(env.plan_file.with_name("ok.yaml")))
    assert shown.code == 0 and "budget: $5.00" in shown.out, shown.out
    assert json.loads(run_ao("plan", "show", str(env.plan_file.with_name("ok.yaml")),
                             "--json").out)["budget_usd"] == 5
    env.plan_file.write_text(json.dumps({**spent, "budget_usd": 5}))  # raised
    d.tick()
    assert store.sessions("shop", task="B-1")[0].state in (State.WORKING, State.SPAWNING)


def test_usage_says_what_each_plan_merged_task_and_fix_round_cost(env: Env) -> None:
    """`ao usage`: per plan, its tasks' cost, per merged task and in fix rounds (what the
    agent spent from the first round on: each round records what it had spent then)."""
    env.plan_file.write_text(json.dumps({"tasks": {"A-1": {"title": "a", "body": "x"},
                                                   "B-1": {"title": "b", "body": "y"}}}))
    store = Store()
    assert run_ao("plan", "run", str(env.plan_file), "-p", "shop").code == 0
    a, b = (store.sessions("shop", task=k)[0] for k in ("A-1", "B-1"))
    store.set_agent_usage(a.id, model="claude-sonnet-5-5", cost_usd=1.0, input_tokens=9)
    store.set_agent_usage(b.id, model="gpt-5", cost_usd=3.0, output_tokens=9)
    # B-1's two rounds: sent when its agent had spent $1.20, then $2.00
    store.record_and_queue(b.id, [("fix-ci", "ci:1")], "fix", "ci-failed", {"usd_at": 1.2})
    store.record_and_queue(b.id, [("review-round", "review-round:1")], "fix",
                           "changes-requested", {"usd_at": 2.0})
    for s in (a, b):
        store.set_state(s.id, State.SPAWNING)
        store.set_state(s.id, State.WORKING)
        store.set_state(s.id, State.MERGED)
    r = run_ao("usage", "--json")
    d = json.loads(r.out)
    assert (d["fix_rounds"], d["usd_per_fix_round"], d["usd_per_merged_task"]) == (2, 0.9, 2.0)
    [plan] = d["plans"]
    assert plan["plan"] == str(env.plan_file.resolve())
    assert (plan["tasks"], plan["merged"], plan["usd"], plan["fix_rounds_usd"]) == \
        (2, 2, 4.0, 1.8)
    text = run_ao("usage").out
    assert "$0.9000 per fix round (2)" in text and "1.8000 (2)" in text, text
    status = run_ao("status").out
    assert "agents spent: $4.00 (`ao usage`)" in status, status
    [row] = json.loads(run_ao("stats", "--json").out)
    assert (row["usd"], row["usd_per_merged"]) == (4.0, 2.0), row


@pytest.mark.parametrize(("screen", "reset"), [
    # Claude Code 2.1.329 on a subscription: the line, and its own wait under it
    ("❯ say hello\n  ⎿  \xa0You've hit your 5-hour limit · resets 10:43pm (UTC)\n"
     "● Usage limit reached · continuing automatically at 10:43pm · esc to cancel",
     "2026-12-06 22:43"),
    ("  ⎿  You've hit your weekly limit · resets Dec 8, 10pm (UTC)\n▔▔▔▔\n  What do you want "
     "to do?", "2026-12-08 22:00"),
    # Codex 0.169.0: wrapped over two lines, the time on the second; a date a day or more out
    ("› say hello\n■ You’ve hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/"
     "pro), visit https://chatgpt.com/settings/\nusage to purchase more credits or try again "
     "at 10:54 PM.\n› Ask Codex to do anything", "2026-12-06 22:54"),
    ("■ You’ve hit your usage limit. Visit https://chatgpt.com/settings/usage to purchase more "
     "credits or try again at Dec 9th, 2026 10:54 PM.", "2026-12-09 22:54"),
    ("Claude usage limit reached. Your limit will reset at 9am (America/Chicago).",
     "2026-12-07 15:00"),
])
def test_the_real_limit_screens_give_their_reset(screen: str, reset: str) -> None:
    from datetime import datetime

    from ao.decide import limits

    now = datetime(2026, 12, 6, 22, 20, tzinfo=UTC)
    line = limits.limit_line(screen)
    assert line is not None
    at = datetime.fromtimestamp(limits.reset_at(line, now), UTC)
    assert at.strftime("%Y-%m-%d %H:%M") == reset, line


def test_no_limit_on_a_screen_that_only_mentions_limits() -> None:
    from ao.decide import limits

    assert limits.limit_line("● I raised the rate limit in config.py\n❯ ") is None


def test_a_reset_beyond_a_week_or_one_already_waited_out_parks_nothing() -> None:
    """Text on the screen is not always the agent's: a "limit" that resets in 2099 is not
    one; nor is the line a session already waited out, read again after its reset (a time
    without a date would be the same time tomorrow)."""
    from ao.decide.limits import believable

    now = 1_800_000_000.0
    assert believable(now + 3600, now, None)
    assert not believable(now + 9 * 86400, now, None)
    assert not believable(now - 30 + 86400, now, now - 30)  # the same line, tomorrow
    assert believable(now + 5 * 3600, now, now - 30)  # a new limit


def test_sessions_at_their_own_limits_are_not_parked_by_each_other(env: Env) -> None:
    """Two sessions each at a limit of their own (different resets): each keeps its own,
    nothing is parked, and no notice repeats at every tick."""
    store, d = running(env, {"A-1": {"title": "a", "body": demo("limit 30")},
                             "C-1": {"title": "c", "body": demo("limit 90")}},
                       max_concurrent=2)
    a, c = (store.sessions("shop", task=k)[0] for k in ("A-1", "C-1"))

    def both() -> bool:
        d.tick()
        return all(store.session(x.id).activity is Activity.LIMITED for x in (a, c))

    retry_until(both, timeout=40, interval=0.3, message="both at their limits")
    for _ in range(3):
        d.tick()
    ua, uc = store.session(a.id).limited_until, store.session(c.id).limited_until
    assert ua and uc and 50 * 60 < uc - ua < 70 * 60, (ua, uc)
    assert events("session.parked") == [] and events("agent.limit_parked") == []


def test_the_prompt_ao_cut_off_put_back_in_the_input_is_cleared_for_the_continue(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Claude Code puts a turn's prompt back in its input when Escape cuts it off: when ao
    itself cut it off (parking it at a usage limit), that text is ao's own; at the reset the
    continue clears it and goes in, where a person's draft would be waited for (the demo
    agent made to keep drafts as the real agents do: ao clears only its own)."""
    from ao.world.agents.profiles import DemoAgent

    monkeypatch.setattr(DemoAgent, "clear_only_drafts", True)
    now = [time.time()]
    store, d = running(env, {"A-1": {"title": "a", "body": demo("sleep 3\nlimit 30")},
                             "B-1": {"title": "b", "body": demo("sleep 30")}}, now,
                       max_concurrent=2)
    a, b = (store.sessions("shop", task=k)[0] for k in ("A-1", "B-1"))

    def limited() -> bool:
        d.tick()
        return store.session(a.id).activity is Activity.LIMITED

    retry_until(limited, timeout=40, interval=0.3, message="A-1 at its limit")
    until = store.session(b.id).limited_until
    assert until and events("session.parked")[0]["data"]["interrupted"] is True
    retry_until(lambda: "Interrupted" in tmux.capture(env.server(), b.id), timeout=10,
                message="B-1 interrupted")
    # as Claude Code does: the cut-off prompt back in the input (its first words)
    prompt = store.messages(b.id, "delivered")[-1]["body"]
    tmux.send_keys(env.server(), b.id, "-l", prompt.splitlines()[0])
    # the reset, on the daemon's clock and (for the delivery) the world's
    now[0] = until + 1
    store.update_session(b.id, limited_until=time.time() - 1)
    d.tick()  # B-1 told to continue, handed to the deliveries beside the tick
    inbox = paths.session_dir("shop", b.id) / "demo-inbox.jsonl"

    def continued() -> bool:
        d.tick()
        return json.loads(inbox.read_text().splitlines()[-1])["text"] == "continue"

    try:
        retry_until(continued, timeout=30, interval=0.5, message="B-1's continue delivered")
    except AssertionError:
        raise AssertionError((store.messages(b.id), tmux.capture(env.server(), b.id))) \
            from None
