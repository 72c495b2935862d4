from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ao.decide import plan as planmod
from ao.decide.plan import Plan, Task
from ao.errors import PlanError

from .helpers import REPO, run_ao

WORKFLOW = REPO / "plans" / "workflow.yaml"


def test_workflow_plan_figures() -> None:
    p = planmod.load(WORKFLOW)
    assert len(p.tasks) == 24
    assert p.graph_problems() == []
    s = planmod.summary(p, 5)
    assert len(s["layers"]) == 7
    assert s["layers"][-1] == ["BOT-004"]
    assert s["critical_path"] == {
        "tasks": ["DB-001", "AUTH-001", "TASKS-001", "NOTIFY-001", "BOT-001", "BOT-002",
                  "BOT-004"],
        "length": 27.0,
    }
    assert s["total_work"] == 94.0
    assert s["makespan"]["dependency_driven"] == 27.0
    # the user's phases as barriers cost 20 days over starting each task on its own deps
    assert s["makespan"]["waves_as_barriers"] == 47.0


def test_workflow_waves_contradict_graph_in_eight_places() -> None:
    p = planmod.load(WORKFLOW)
    waves = [x for x in p.problems if x.kind == "wave"]
    assert sorted(x.task for x in waves) == sorted([
        "AUTH-001", "USERS-001", "SCHEDULE-001", "NOTIFY-001", "BOT-002", "BOT-003", "BOT-004",
        "DEPLOY-001"])
    assert "AUTH-001: in wave 1, the same wave as DB-001 (wave 1)" in waves[0].message
    # ao ignores waves: warnings by default, so `ao plan check && ao plan run` goes on
    r = run_ao("plan", "check", str(WORKFLOW))
    assert r.code == 0 and "8 warning(s)" in r.out and "warning: AUTH-001" in r.out, r.out
    r = run_ao("plan", "check", str(WORKFLOW), "--strict")
    assert r.code == 2 and "8 problem(s)" in r.err, r.err


def parse(text: str) -> Plan:
    return planmod.parse(text)


def kinds(p: Plan) -> list[tuple[str, str]]:
    return [(x.kind, x.task) for x in p.problems]


def test_unknown_and_self_dependency() -> None:
    p = parse("tasks:\n  A: {title: a, deps: [B, A]}\n")
    assert kinds(p) == [("unknown-dep", "A"), ("self-dep", "A")]


def test_duplicate_key_is_reported_not_silently_overwritten() -> None:
    p = parse("tasks:\n  A: {title: a}\n  B: {title: b}\n  A: {title: again}\n")
    assert ("duplicate-key", "A") in kinds(p)


def test_cycle_is_printed_in_order() -> None:
    p = parse("tasks:\n  A: {title: a, deps: [C]}\n  B: {title: b, deps: [A]}\n"
              "  C: {title: c, deps: [B]}\n  D: {title: d, deps: [A]}\n")
    cycles = [x.message for x in p.problems if x.kind == "cycle"]
    assert cycles == ["cycle: A -> B -> C -> A"]
    with pytest.raises(PlanError, match="cycle"):
        planmod.layers(p)


@pytest.mark.parametrize("key", ["../x", "../../etc", "a b", "tab\there", "bell\x07", ".hidden",
                                 "x.lock", "a..b"])
def test_unsafe_keys_are_refused(key: str) -> None:
    import json

    p = parse("tasks:\n  " + json.dumps(key) + ": {title: t}\n")
    assert ("unsafe-key", key) in kinds(p)


def test_numbers_and_hash_numbers_name_the_same_issue() -> None:
    p = parse("tasks:\n  123: {title: a}\n  '#124': {title: b, deps: ['#123']}\n")
    assert list(p.tasks) == ["123", "124"]
    assert p.tasks["124"].deps == ("123",)
    assert p.problems == ()


@pytest.mark.parametrize(("estimate", "days"), [
    ("3-4d", 4.0), ("2d", 2.0), ("6h", 0.75), ("1w", 5.0), ("2-3 days", 3.0), ("1.5d", 1.5),
    (None, 1.0)])
def test_estimates(estimate: str | None, days: float) -> None:
    assert planmod.estimate_days(estimate) == days


def test_bad_estimate_names_the_task() -> None:
    with pytest.raises(PlanError, match=r"task A.*soon"):
        parse("tasks:\n  A: {title: a, estimate: soon}\n")


@pytest.mark.parametrize(("text", "match"), [
    ("- a\n", "mapping with a `tasks:`"),
    ("tasks:\n  A: {title: a}\nextra: 1\n", "unknown key `extra`"),
    ("tasks:\n  A: {deps: []}\n", "task A has no title"),
    ("tasks:\n  A: {title: a, dep: [B]}\n", "unknown key `dep`"),
    ("tasks: [\n", "not valid YAML"),
])
def test_structural_errors(text: str, match: str) -> None:
    with pytest.raises(PlanError, match=match):
        parse(text)


def test_explicit_wave_problems() -> None:
    p = parse("tasks:\n  A: {title: a}\n  B: {title: b, deps: [A]}\n  C: {title: c}\n"
              "waves:\n  - [B]\n  - [A, Z]\n")
    msgs = [x.message for x in p.problems]
    assert "wave 2: unknown task Z" in msgs
    assert "C: in no wave" in msgs
    assert "B: in wave 1, an earlier wave than A (wave 2), which it depends on" in msgs


def test_yaml_round_trip_keeps_everything(tmp_path: Path) -> None:
    p = planmod.load(WORKFLOW)
    again = planmod.parse(planmod.to_yaml(p))
    assert again.tasks == p.tasks
    assert again.waves == p.waves
    body = parse("tasks:\n  A:\n    title: 'a: tricky, title'\n    body: |\n      line 1\n"
                 "      line 2\n")
    assert planmod.parse(planmod.to_yaml(body)).tasks == body.tasks


# ---- properties --------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> Plan:
    n = draw(st.integers(min_value=1, max_value=25))
    tasks = {}
    for i in range(n):
        deps = draw(st.lists(st.integers(min_value=0, max_value=max(i - 1, 0)), max_size=4)) \
            if i else []
        est = draw(st.integers(min_value=1, max_value=9))
        tasks[f"T-{i}"] = Task(key=f"T-{i}", title=f"t{i}",
                               deps=tuple(dict.fromkeys(f"T-{d}" for d in deps)),
                               estimate=f"{est}d")
    return Plan(tasks=tasks)


@settings(max_examples=150, deadline=None)
@given(dags(), st.integers(min_value=1, max_value=8))
def test_layers_respect_every_edge_and_makespan_bounds(p: Plan, n: int) -> None:
    layer_of = {k: i for i, layer in enumerate(planmod.layers(p)) for k in layer}
    assert set(layer_of) == set(p.tasks)
    for t in p.tasks.values():
        for d in t.deps:
            assert layer_of[d] < layer_of[t.key]
    _, cp = planmod.critical_path(p)
    work = planmod.total_work(p)
    makespan = planmod.simulate(p, n)
    assert makespan >= cp - 1e-9
    assert makespan >= work / n - 1e-9
    assert makespan <= work + 1e-9
    assert planmod.simulate(p, 1) == pytest.approx(work)


@settings(max_examples=100, deadline=None)
@given(dags(), st.integers(min_value=1, max_value=8))
def test_waves_as_barriers_respect_the_same_bounds(p: Plan, n: int) -> None:
    # greedy list scheduling is not optimal, so "barriers are never faster" is not a theorem;
    # these bounds are
    waves = tuple(tuple(layer) for layer in planmod.layers(p))
    barriers = planmod.simulate_waves(Plan(tasks=p.tasks, waves=waves), n)
    assert barriers is not None
    assert barriers >= planmod.critical_path(p)[1] - 1e-9
    assert barriers >= planmod.total_work(p) / n - 1e-9
    assert planmod.simulate_waves(Plan(tasks=p.tasks, waves=waves), 1) == pytest.approx(
        planmod.total_work(p))


def test_plan_show_estimates_the_cost_from_what_merged_tasks_spent(isolated_home: Path) -> None:
    """`ao plan show` prices a plan from its agents' own records: the mean of what the last
    merged tasks' agents spent, times the plan's tasks; nothing said before anything merged
    with a known cost."""
    import json as jsonlib

    from ao.record.state import State
    from ao.record.store import Store

    from .helpers import REPO, run_ao

    plan = REPO / "plans" / "workflow.yaml"
    first = run_ao("plan", "show", str(plan))
    assert first.code == 0 and "estimated cost" not in first.out
    store = Store()
    store.ensure_project("shop", "/x", None)
    for i, cost in enumerate((1.5, 2.5)):
        s = store.create_session("shop", "sho", f"T-{i}", state=State.WORKING)
        store.update_session(s.id, pr_state="merged")
        store.set_state(s.id, State.MERGED)
        store.set_agent_usage(s.id, cost_usd=cost, input_tokens=10)
    out = run_ao("plan", "show", str(plan))
    assert "estimated cost: $48.00 (24 tasks at $2.00" in out.out, out.out
    js = jsonlib.loads(run_ao("plan", "show", str(plan), "--json").out)
    assert js["estimated_cost"] == {"usd": 48.0, "per_task": 2.0, "from": 2}
