"""The pure decisions, each answer checked exactly: what the mutation pass over `decide/`
(benchmarks/mutation.py, docs/mutation.md) found no test would notice when it changed."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ao.decide import compose, limits, placement, plan_import, prices, redmain, scheduler, steps
from ao.decide import plan as planmod
from ao.errors import AoError
from ao.record.forge import FailureDetail

SHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"


def test_a_ci_fix_names_the_head_and_the_round_and_what_failed() -> None:
    msg = compose.ci_fix(2, 3, SHA, [FailureDetail("tests", "1 failed", (), "")])
    assert msg.startswith("CI failed on a1b2c3d4e5 (fix round 2 of 3). Please fix it")
    assert "## Failing check: tests" in msg and "could not fetch" not in msg
    bare = compose.ci_fix(1, 3, SHA, [])
    assert "(ao could not fetch the failing checks' details; run the test suite.)" in bare


def test_a_failed_check_step_is_reported_with_its_exit_and_round() -> None:
    msg = compose.check_failed("make lint", 2, "E501 line too long", 1, 3)
    assert msg.startswith("The check `make lint` failed (exit 2) on your latest push - "
                          "round 1 of 3.")
    assert "E501 line too long" in msg


def test_an_empty_or_listed_tasks_key_is_refused() -> None:
    for text in ("tasks: {}\n", "tasks: [A-1]\n"):
        with pytest.raises(AoError, match="`tasks` must map task keys to tasks"):
            planmod.parse(text)


def test_layers_put_each_task_one_past_its_deepest_dependency() -> None:
    p = planmod.parse("tasks:\n  A: {title: a}\n  B: {title: b, deps: [A]}\n"
                      "  C: {title: c}\n  D: {title: d, deps: [B, C]}\n")
    assert planmod.layers(p) == [["A", "C"], ["B"], ["D"]]


def test_a_document_without_a_mermaid_graph_is_refused_and_labels_become_titles() -> None:
    with pytest.raises(AoError, match="no mermaid"):
        plan_import.import_markdown("# Plan\n\nno diagram here\n")
    p = plan_import.import_markdown('```mermaid\ngraph TD\n  AUTH-1["Add login"] --> '
                                    'DOC-2[Docs]\n```\n')
    assert (p.tasks["AUTH-1"].title, p.tasks["DOC-2"].title, p.tasks["DOC-2"].deps) == \
        ("Add login", "Docs", ("AUTH-1",))


def test_prices_are_the_published_ones_per_million_tokens() -> None:
    million = {"input_tokens": 1_000_000, "output_tokens": 1_000_000,
               "cache_creation_input_tokens": 1_000_000, "cache_read_input_tokens": 1_000_000}
    assert prices.cost("claude-opus-5-5", million) == pytest.approx(15 + 75 + 18.75 + 1.5)
    assert prices.cost("gemini-2.5-flash", million) == pytest.approx(0.30 + 2.50 + 0.075)
    assert prices.cost("gpt-5", million) == pytest.approx(1.25 + 10 + 0.125)
    assert prices.cost("no-such-model", million) == prices.cost(prices.DEFAULT_MODEL, million)


def test_the_first_prompt_holds_the_body_and_its_file_is_private(tmp_path: Path) -> None:
    from ao import config
    from ao.decide import prompts

    task = planmod.Task("A-1", "Add login", body="Use the session table.")
    project = config.ProjectConfig(name="shop", path=tmp_path)
    text = prompts.first_prompt(project, task, None, "ao/a-1")
    assert text.startswith("# A-1: Add login\n\nUse the session table.\n")
    out = tmp_path / "prompt.md"
    prompts.write(out, text)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_a_red_main_says_the_failing_head_and_the_culprit() -> None:
    assert redmain.red_reason({}) is None
    why = redmain.red_reason({"red": SHA, "since": 0, "culprit_pr": 7,
                              "culprit_branch": "ao/x-1"})
    assert why is not None and "(CI failing at a1b2c3d4e5)" in why
    assert why.endswith("turned red by PR #7 (ao/x-1)")


def test_a_failed_start_is_retried_after_a_doubling_backoff() -> None:
    p = planmod.parse("tasks:\n  A: {title: a}\n")
    once = {"A": scheduler.TaskStatus(failures=(1000.0,))}
    assert scheduler.to_queue(p, once, set(), now=1029.0) == []
    assert scheduler.to_queue(p, once, set(), now=1030.0) == ["A"]
    twice = {"A": scheduler.TaskStatus(failures=(1000.0, 1100.0))}
    assert scheduler.to_queue(p, twice, set(), now=1159.0) == []
    assert scheduler.to_queue(p, twice, set(), now=1160.0) == ["A"]
    thrice = {"A": scheduler.TaskStatus(failures=(1.0, 2.0, 3.0))}
    assert scheduler.to_queue(p, thrice, set(), now=1e9) == []  # a human is asked


def test_steps_options_must_be_a_mapping_and_round_trip() -> None:
    with pytest.raises(AoError, match="options must be a mapping"):
        steps.parse([{"review": 3}], "plan")
    parsed = steps.parse(["implement", {"review": {"agent": "codex"}}, "approve"], "plan")
    assert steps.raw(parsed) == ["implement", {"review": {"agent": "codex"}}, "approve"]
    assert steps.raw(steps.parse(["implement", "review"], "plan")) == ["implement", "review"]


def test_a_limit_without_a_readable_reset_is_looked_at_again_in_an_hour() -> None:
    now = datetime(2026, 12, 6, 22, 20, 30, tzinfo=UTC)
    assert limits.reset_at("You've hit your usage limit.", now) == now.timestamp() + 3600
    # a reset read from the screen is on the minute
    at = limits.reset_at("You've hit your 5-hour limit · resets 10:43pm (UTC)", now)
    assert datetime.fromtimestamp(at, UTC) == \
        datetime(2026, 12, 6, 22, 43, tzinfo=UTC)


def test_a_host_is_short_of_memory_only_below_its_floor() -> None:
    room = placement.Room("h", 0, None, free_mb=2512, floor_mb=512, needs_mb=2000)
    assert not room.short_of_memory and room.free
    tight = placement.Room("h", 0, None, free_mb=2511, floor_mb=512, needs_mb=2000)
    assert tight.short_of_memory and not tight.free
    assert placement.Room("h", 0, None).free  # nothing measured: no floor of its own
