"""The pure decisions, each answer checked exactly: what the mutation pass over `decide/`
(benchmarks/mutation.py, docs/mutation.md) found no test would notice when it changed."""

from __future__ import annotations

import stat
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ao.decide import (
    activity,
    attention,
    compose,
    gate,
    limits,
    overlap,
    pickup,
    placement,
    plan_graph,
    plan_import,
    prices,
    reactions,
    redmain,
    scheduler,
    steps,
    waiting,
)
from ao.decide import plan as planmod
from ao.errors import AoError
from ao.record.forge import (
    FAILING,
    PASSING,
    Annotation,
    CheckSummary,
    FailureDetail,
    PullRequest,
    ReviewComment,
)
from ao.record.state import Activity, State
from ao.record.store import Session

from . import records

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


# ---- each answer exactly, at its edges (the survivors of docs/mutation.md) ------------------

NOW = records.NOW
SESSION = records.SESSION


def _pr(**kw: object) -> PullRequest:
    base: dict[str, object] = dict(number=7, url="u", state="open", head_branch="ao/a-1",
                                   head_sha=SHA, mergeable="mergeable",
                                   review_decision="approved",
                                   checks=CheckSummary(PASSING, ()), merge_state="clean")
    return PullRequest(**(base | kw))  # type: ignore[arg-type]


def test_a_hook_is_overruled_only_by_a_screen_that_changed_after_it() -> None:
    A, Idle = Activity.ACTIVE, Activity.IDLE
    # the screen shows idle but has not changed since the hook said active: the hook holds
    assert activity.infer(Idle, A, 100.0, True, changed_at=90.0, now=200.0) is A
    # changed after the hook and still for IDLE_AFTER seconds: the screen wins
    assert activity.infer(Idle, A, 100.0, True, changed_at=110.0, now=115.0) is Idle
    assert activity.infer(Idle, A, 100.0, True, changed_at=110.0, now=114.9) is A
    # the same state on both sides moves nothing; a screen the profile cannot read neither
    assert activity.infer(A, A, 100.0, True, changed_at=110.0, now=200.0) is A
    assert activity.infer(None, A, 100.0, True, changed_at=110.0, now=200.0) is A
    # settled (an Escape that fires no hook): at once
    assert activity.infer(Idle, A, 100.0, True, changed_at=110.0, now=110.0, settled=True) is Idle
    # a screen that changed at the hook's own moment is not after it; a hook without a time
    # is overruled by any change
    assert activity.infer(Idle, A, 100.0, True, changed_at=100.0, now=200.0) is A
    assert activity.infer(Idle, A, None, True, changed_at=1.0, now=10.0) is Idle
    # a profile without hooks: a hook state on record (from another profile) counts for nothing
    assert activity.infer(None, A, 100.0, False, changed_at=100.0, now=200.0) is Idle
    # without hooks: the screen, else stillness
    assert activity.infer(None, None, None, False, changed_at=100.0, now=105.0) is Idle
    assert activity.infer(None, None, None, False, changed_at=100.0, now=104.9) is A


def test_a_pr_that_is_not_open_is_working_whatever_its_gate_said() -> None:
    s = replace(SESSION, pr_gate_ok=1)
    assert attention.zone(s, NOW) == "merge"
    assert attention.zone(replace(s, pr_state="closed"), NOW) == "working"
    assert attention.zone(replace(s, pr_number=None), NOW) == "working"


def test_only_a_green_pr_outside_its_review_step_waits_for_a_person_to_review() -> None:
    assert attention.zone(SESSION, NOW) == "respond"
    assert attention.zone(replace(SESSION, pr_checks="pending"), NOW) == "working"
    assert attention.zone(replace(SESSION, step="review"), NOW) == "working"
    assert attention.zone(replace(SESSION, pr_review="approved"), NOW) == "working"
    assert attention.zone(replace(SESSION, step="approve"), NOW) == "gate"


def test_what_the_agent_is_told_is_capped_at_each_limit_to_the_character() -> None:
    def fix(**kw: object) -> str:
        return compose.ci_fix(1, 3, SHA, [FailureDetail("tests", **kw)])  # type: ignore[arg-type]

    assert "[... cut" not in fix(output="x" * 1500)
    assert "x" * 1500 + "\n[... cut: 1 more characters]" in fix(output="x" * 1501)
    note = Annotation("src/a.py", 3, "m" * 301)
    assert "- src/a.py:3: " + "m" * 300 + "\n[... cut: 1 more characters]" in fix(
        annotations=(note,))
    assert "- src/b.py: m" in fix(annotations=(Annotation("src/b.py", None, "m"),))
    # a log's tail keeps its last 3000 characters
    tail = fix(log_tail="A" + "b" * 3000)
    assert "```\n" + "b" * 3000 + "\n```" in tail and "[... cut" not in tail
    assert "Log tail" not in fix(output="o") and fix(output="o").split("\n")[-1] == "o"
    check = compose.check_failed("lint", 1, "y" * 3001, 1, 3)
    assert "y" * 3000 + "\n[... cut: 1 more characters]" in check
    assert "[... cut" not in compose.check_failed("lint", 1, "y" * 3000, 1, 3)
    long = ReviewComment("r1", "ann", "z" * 1001, "src/a.py", 4, standing="MEMBER")
    said = compose.review([long], 2)
    assert "  > " + "z" * 1000 in said and "  > [... cut: 1 more characters]" in said
    assert "review by @ann (organisation member) on src/a.py:4:" in said
    assert "[... cut" not in compose.review([replace(long, body="z" * 1000)], 2)


def test_each_message_to_an_agent_says_what_to_do() -> None:
    assert compose.rebase("main", "origin") == (
        "Your branch conflicts with main. Please rebase it on origin/main (git fetch origin && "
        "git rebase origin/main), resolve the conflicts, run the tests, and push (git push "
        "--force-with-lease).")
    assert compose.rebase("main", "origin", "rebase {branch} from {remote}") == \
        "rebase main from origin"
    assert compose.budget_spent("the plan spent $5.00 of $5.00").startswith(
        "ao here: the plan spent $5.00 of $5.00. Wrap up:")
    assert compose.nudge("idle 10 min").startswith("ao here: you seem stuck (idle 10 min).")
    assert "git pull --no-rebase origin ao/a-1" in compose.branch_updated("main", "origin",
                                                                         "ao/a-1")
    back = compose.restarted("ao/a-1", "  # A-1: Add login\n")
    assert back.endswith("\n\nThe task, as first given:\n\n# A-1: Add login\n")
    assert "The task" not in compose.restarted("ao/a-1", "  \n")
    queued = compose.queue_failed(1, 3, SHA, [], "failed_checks")
    assert queued.startswith("CI failed on a1b2c3d4e5 (fix round 1 of 3).")
    assert "GitHub's merge queue removed this PR (failed_checks)" in queued
    assert compose.review([ReviewComment("r2", "x", "ok", standing="NONE")], 1).endswith(
        "- review by @x (no write access):\n  > ok")
    # a line without a file names nothing; a file without a line names the file
    assert compose.review([ReviewComment("r3", "x", "ok", line=5)], 1).endswith(
        "- review by @x (owner):\n  > ok")
    assert "review by @x (owner) on a.py:\n" in compose.review(
        [ReviewComment("r4", "x", "ok", path="a.py")], 1)
    # a reaction's own message gets the short sha, the rounds and the round
    assert compose.ci_fix(2, 3, SHA, [], "CI red at {sha}, round {round} of {rounds}").startswith(
        "CI red at a1b2c3d4e5, round 2 of 3")


def test_a_limit_message_takes_the_lines_it_wrapped_onto_and_no_more() -> None:
    screen = ("│ working\n■ You've hit your usage limit. Upgrade to Pro or\ntry again at Dec 9th, "
              "2026 10:54 PM.\n› next prompt\n")
    assert limits.limit_line(screen) == ("■ You've hit your usage limit. Upgrade to Pro or try "
                                         "again at Dec 9th, 2026 10:54 PM.")
    assert limits.limit_line("nothing here\n") is None


def test_a_reset_is_believed_up_to_eight_days_out_and_not_the_one_waited_out() -> None:
    day = 86400.0
    assert limits.believable(NOW + 8 * day, NOW, None) is True
    assert limits.believable(NOW + 8 * day + 1, NOW, None) is False
    # the same line read again after its reset: the same time tomorrow, not a new limit
    assert limits.believable(NOW + day - 60, NOW, NOW - 60) is False
    assert limits.believable(NOW + day - 60, NOW, NOW + 60) is True  # not yet waited out
    assert limits.believable(NOW + 3600, NOW, NOW - 60) is True


def test_a_word_that_is_no_month_leaves_the_time_alone() -> None:
    now = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
    at = limits.reset_at("You've hit your 5-hour limit · resets Xyz 5, 10pm (UTC)", now)
    assert datetime.fromtimestamp(at, UTC) == datetime(2026, 12, 6, 22, 0, tzinfo=UTC)


def test_a_date_already_past_this_year_is_next_years() -> None:
    now = datetime(2026, 12, 31, 20, 0, tzinfo=UTC)
    at = limits.reset_at("You've hit your weekly limit · resets Jan 2, 10pm (UTC)", now)
    assert datetime.fromtimestamp(at, UTC) == datetime(2027, 1, 2, 22, 0, tzinfo=UTC)


def test_an_idle_session_without_a_pr_is_stuck_from_exactly_its_time() -> None:
    idle = replace(SESSION, pr_number=None, pr_state=None, screen_changed_at=NOW - 600)
    assert attention.zone(idle, NOW, stuck_after=600) == "respond"
    assert attention.zone(idle, NOW - 1, stuck_after=600) == "working"
    assert attention.zone(replace(idle, activity=Activity.ACTIVE), NOW, 600) == "working"
    assert attention.zone(idle, NOW) == "respond"  # ten minutes by default
    assert attention.zone(idle, NOW - 1) == "working"


def test_a_draft_either_way_and_a_moved_head_are_named() -> None:
    policy = gate.GatePolicy()
    assert gate.merge_gate(_pr(draft=True), policy).reason == "the PR is a draft"
    assert gate.merge_gate(_pr(merge_state="draft"), policy).reason == "the PR is a draft"
    moved = gate.merge_gate(_pr(), policy, expected_sha="0" * 40)
    assert moved.reason == "the head moved to a1b2c3d4e5 since it was checked"
    assert gate.merge_gate(_pr(), policy, expected_sha=SHA).ok


def test_a_closed_or_merged_pr_never_passes_the_gate() -> None:
    for state in ("closed", "merged"):
        v = gate.merge_gate(_pr(state=state), gate.GatePolicy())
        assert (v.ok, v.reason) == (False, f"the PR is {state}")


def test_failing_checks_on_an_unstable_pr_pass_only_where_unstable_is_accepted() -> None:
    red = _pr(checks=CheckSummary(FAILING, ()), merge_state="unstable")
    accepting = gate.GatePolicy(accept_states=frozenset({"clean", "unstable"}))
    assert gate.checks_state(red, accepting) == PASSING
    assert gate.merge_gate(red, accepting).ok
    assert gate.checks_state(red, gate.GatePolicy()) == FAILING
    assert gate.merge_gate(red, gate.GatePolicy()).reason == "CI is failing"


def test_red_pending_or_conflicting_never_merges_and_the_verdicts_are_values() -> None:
    policy = gate.GatePolicy()
    for pr, why in ((_pr(checks=CheckSummary(FAILING, ())), "CI is failing"),
                    (_pr(checks=CheckSummary("pending", ())), "CI is pending"),
                    (_pr(mergeable="conflicting"), "conflicts with the base branch")):
        v = gate.merge_gate(pr, policy)
        assert (v.ok, v.reason, bool(v)) == (False, why, False)
    # policies and verdicts are shared between threads and used as keys: never changed
    import dataclasses

    for value in (policy, gate.merge_gate(_pr(), policy)):
        assert hash(value) == hash(dataclasses.replace(value))
        with pytest.raises(dataclasses.FrozenInstanceError):
            value.reason = "x"  # type: ignore[misc,union-attr]


def test_the_verdict_says_approved_only_for_an_approval_or_a_passed_review_step() -> None:
    loose = gate.GatePolicy(require_review=False)
    assert gate.merge_gate(_pr(), loose).reason == "approved and green"
    unreviewed = _pr(review_decision=None)
    assert gate.merge_gate(unreviewed, loose).reason == "not reviewed and green"
    assert gate.merge_gate(unreviewed, loose, required=frozenset({"review"}),
                           passed=frozenset({"review"})).reason == "approved and green"
    none = _pr(checks=CheckSummary("none", ()))
    assert gate.merge_gate(none, replace(loose, require_checks=False)).reason == \
        "approved and no checks"


def test_without_a_merge_state_mergeability_decides() -> None:
    policy = gate.GatePolicy()
    assert gate.merge_gate(_pr(merge_state=None), policy).ok
    unknown = gate.merge_gate(_pr(merge_state=None, mergeable="unknown"), policy)
    assert (unknown.ok, unknown.reason) == (False, "mergeability is not known yet")


def test_noon_and_midnight_and_the_morning_read_right() -> None:
    now = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)

    def at(text: str) -> datetime:
        line = f"You've hit your 5-hour limit · resets {text} (UTC)"
        return datetime.fromtimestamp(limits.reset_at(line, now), UTC)

    assert at("10am") == datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    assert at("12pm") == datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert at("12am") == datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
    assert at("1:30pm") == datetime(2026, 12, 6, 13, 30, tzinfo=UTC)


def test_a_task_with_files_is_held_behind_the_running_one_that_shares_them() -> None:
    running = {"A": ("wor-1", ["src/auth/login.py"])}
    files = {"B": ["src/auth/*"], "C": [], "D": ["docs/*"]}
    assert overlap.hold(["B", "C", "D"], files, running, set()) == {
        "B": "shares src/auth/login.py with A (wor-1)"}
    assert overlap.hold(["B"], files, running, {"B"}) == {}  # the critical path goes
    # of two ready tasks sharing files, the first in start order goes
    assert overlap.hold(["D", "E"], {"D": ["docs/*"], "E": ["docs/a.md"]}, {}, set()) == {
        "E": "shares docs/a.md with D (starting now)"}


def test_an_issue_waiting_outside_holds_the_whole_chain_behind_it() -> None:
    from ao.record.forge import PickedIssue

    picked = [PickedIssue(3, "c", "", (2,)), PickedIssue(2, "b", "", (99,)),
              PickedIssue(1, "a", "")]
    plan, held = pickup.plan_and_held(picked)
    assert list(plan.tasks) == ["1"] and sorted(held) == [2, 3]
    assert held[3] == ("#3 waits for #2, not ready for pickup here: it starts once that "
                       "is closed")


def test_a_plan_holds_at_most_max_tasks() -> None:
    def plan_of(n: int) -> str:
        return "tasks:\n" + "".join(f"  T-{i}: {{title: t}}\n" for i in range(n))

    assert len(planmod.parse(plan_of(planmod.MAX_TASKS)).tasks) == planmod.MAX_TASKS
    with pytest.raises(AoError, match="at most 1000"):
        planmod.parse(plan_of(planmod.MAX_TASKS + 1))


def test_a_plan_written_back_reads_back_the_same_long_lines_included() -> None:
    body = "word " * 2500  # 12,500 characters, over any line width
    p = planmod.Plan(tasks={"A-1": planmod.Task("A-1", "a", body=body.strip())})
    again = planmod.parse(planmod.to_yaml(p))
    assert again.tasks["A-1"].body == body.strip()


def test_waves_must_be_a_list_of_lists() -> None:
    base = "tasks:\n  A-1: {title: a}\n  B-1: {title: b}\n"
    assert planmod.parse(base + "waves: [[A-1], [B-1]]\n").waves == (("A-1",), ("B-1",))
    for bad in ("waves: A-1\n", "waves: [[A-1], B-1]\n"):
        with pytest.raises(AoError, match="`waves` must be a list of lists"):
            planmod.parse(base + bad)


def test_the_critical_path_and_its_length() -> None:
    p = planmod.parse("tasks:\n  A: {title: a, estimate: 1d}\n  B: {title: b, estimate: 3d, "
                      "deps: [A]}\n  C: {title: c, estimate: 1d, deps: [A]}\n"
                      "  D: {title: d, estimate: 2d}\n")
    assert plan_graph.critical_path(p) == (["A", "B"], 4.0)
    assert plan_graph.critical_path(planmod.Plan(tasks={})) == ([], 0.0)


def test_a_markdown_tables_rows_give_titles_and_estimates_and_its_header_is_no_task() -> None:
    text = ("| Key | Title | Estimate |\n|---|---|---|\n| AUTH-1 | Add login | 2 days |\n"
            "| DOC-2 | Docs | n/a |\n\n```mermaid\ngraph TD\n  AUTH-1 --> DOC-2\n```\n")
    p = plan_import.import_markdown(text)
    assert list(p.tasks) == ["AUTH-1", "DOC-2"]
    assert (p.tasks["AUTH-1"].title, p.tasks["AUTH-1"].estimate) == ("Add login", "2d")
    assert (p.tasks["DOC-2"].title, p.tasks["DOC-2"].estimate) == ("Docs", None)


def test_every_published_price_and_nothing_costs_nothing() -> None:
    million = {"input_tokens": 1_000_000, "output_tokens": 1_000_000,
               "cache_creation_input_tokens": 1_000_000, "cache_read_input_tokens": 1_000_000}
    published = {"claude-sonnet-5-5": 3 + 15 + 3.75 + 0.30, "claude-haiku-5-5": 1 + 5 + 1.25 + 0.10,
                 "gpt-5-codex": 1.25 + 10 + 0.125, "gemini-2.5-pro": 1.25 + 10 + 0.31}
    for model, usd in published.items():
        assert prices.cost(model, million) == pytest.approx(usd), model
    for model in prices.PRICES:
        assert prices.cost(model, {}) == 0
        assert prices.cost(model, {"output_tokens": 1_000_000}) == prices.PRICES[model][1]


def test_the_first_prompt_for_each_forge_and_only_context_inside_the_project(
        tmp_path: Path) -> None:
    from ao import config
    from ao.decide import prompts

    (tmp_path / "outside.md").write_text("SECRET")
    repo = tmp_path / "shop"
    repo.mkdir()
    (repo / "NOTES.md").write_text("the notes")
    plan = planmod.Plan(tasks={"A-1": planmod.Task("A-1", "a")},
                        context=("NOTES.md", "../outside.md"))
    task = planmod.Task("B-1", "Add login")
    local = prompts.first_prompt(config.ProjectConfig(name="shop", path=repo), task, plan, "b")
    # no body: nothing between the title and the context
    assert local.startswith("# B-1: Add login\n\nContext from NOTES.md:\n\nthe notes\n")
    assert "SECRET" not in local and "outside.md" not in local
    assert "Pushing the branch opens its pull request" in local and "gh pr create" not in local
    gh = prompts.first_prompt(config.ProjectConfig(name="shop", path=repo, forge="github"),
                              planmod.Task("12", "Fix it"), None, "b")
    assert "`Closes #12`" in gh and "Pushing the branch opens" not in gh


def test_an_exited_agent_that_runs_again_ends_its_escalation() -> None:
    hist = reactions.History(escalated_for="exited")
    policy = reactions.Policy()

    def obs(a: Activity) -> reactions.Observation:
        return reactions.Observation(State.NEEDS_HUMAN, a, 0.0, None)

    assert reactions.resolved(obs(Activity.IDLE), hist, policy) == "the agent runs again"
    assert reactions.resolved(obs(Activity.EXITED), hist, policy) is None
    assert reactions.resolved(obs(Activity.UNKNOWN), hist, policy) is None


def test_a_stuck_agent_is_nudged_then_escalated_at_twice_the_time() -> None:
    policy = reactions.Policy(stuck_after=100.0)
    nudged = reactions.History(done=frozenset({"nudge:nopr"}))

    def idle(for_: float, hist: reactions.History) -> list[reactions.Action]:
        return reactions.decide(reactions.Observation(State.WORKING, Activity.IDLE, for_, None),
                                hist, policy)

    assert [a.kind for a in idle(99.0, reactions.History())] == []
    assert [a.kind for a in idle(100.0, reactions.History())] == [reactions.ActionKind.NUDGE]
    assert [a.kind for a in idle(199.0, nudged)] == []
    assert [a.kind for a in idle(200.0, nudged)] == [reactions.ActionKind.ESCALATE]
    # a project that turned nudges off: nobody is nudged
    policy = replace(policy, auto=policy.auto - {"agent-stuck"})
    assert idle(100.0, reactions.History()) == []


def test_by_default_a_green_approved_pr_is_not_merged_but_its_steps_run() -> None:
    policy = reactions.Policy()
    assert policy.auto_merge is False and policy.run_steps and reactions.History().resumes == 0
    check = steps.parse(["implement", {"check": {"run": "make lint"}}], "plan")
    acts = reactions.decide(reactions.Observation(State.PR_OPEN, Activity.IDLE, 0.0, _pr(),
                                                  steps=check), reactions.History(), policy)
    assert [a.kind for a in acts] == [reactions.ActionKind.RUN_CHECK]
    assert acts[0].fingerprint.endswith(f":{SHA}:0")
    done = reactions.History(done=frozenset({acts[0].fingerprint}))
    assert reactions.decide(reactions.Observation(State.PR_OPEN, Activity.IDLE, 0.0, _pr(),
                                                  steps=check), done, policy) == []
    plain = reactions.decide(reactions.Observation(State.PR_OPEN, Activity.IDLE, 0.0, _pr()),
                             reactions.History(), policy)
    assert [a.kind for a in plain] == [reactions.ActionKind.NOTIFY]  # ready: a person merges
    auto = reactions.decide(reactions.Observation(State.PR_OPEN, Activity.IDLE, 0.0, _pr()),
                            reactions.History(), replace(policy, auto_merge=True))
    assert [a.kind for a in auto] == [reactions.ActionKind.MERGE]
    # no checks at all: the steps start only where checks are not required
    bare = _pr(checks=CheckSummary("none", ()))
    loose = replace(policy, gate=replace(policy.gate, require_checks=False))
    assert [a.kind for a in reactions.decide(reactions.Observation(
        State.PR_OPEN, Activity.IDLE, 0.0, bare, steps=check), reactions.History(), loose)] == \
        [reactions.ActionKind.RUN_CHECK]
    assert reactions.decide(reactions.Observation(State.PR_OPEN, Activity.IDLE, 0.0, bare,
                                                  steps=check), reactions.History(), policy) == []
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):  # shared by the daemon's threads
        policy.auto_merge = True  # type: ignore[misc]
    assert reactions.Policy().auto == frozenset({"ci-failed", "changes-requested",
                                                 "merge-conflict", "agent-stuck",
                                                 "agent-exited"})


def test_bisecting_a_red_main_uses_every_verdict_already_known() -> None:
    merges = ["a", "b", "c", "d"]
    assert redmain.bisect(merges, {}) == redmain.Step(run="b")
    assert redmain.bisect(merges, {"c": redmain.FAILING}) == redmain.Step(run="a")
    assert redmain.bisect(merges, {"b": redmain.PASSING}) == redmain.Step(run="c")
    assert redmain.bisect(merges, {"b": redmain.PASSING, "c": redmain.FAILING}) == \
        redmain.Step(culprit="c")
    assert redmain.bisect(merges, {"a": "pending"}) == redmain.Step(run="b")
    assert redmain.bisect(["a"], {}) == redmain.Step(culprit="a")


def test_the_next_tasks_start_unless_paused_and_only_into_free_room() -> None:
    p = planmod.parse("tasks:\n  A: {title: a}\n  B: {title: b}\n  C: {title: c}\n")
    queued = {k: scheduler.TaskStatus(states=frozenset({State.QUEUED})) for k in "ABC"}
    assert scheduler.next_to_start(p, queued, set(), 2) == ["A", "B"]
    assert scheduler.next_to_start(p, queued, set(), 2, paused=True) == []
    busy = queued | {"A": scheduler.TaskStatus(states=frozenset({State.WORKING}))}
    assert scheduler.next_to_start(p, busy, set(), 2) == ["B"]


def test_forge_trouble_a_gate_verdict_and_a_review_the_gate_no_longer_needs() -> None:
    def why(s: Session, **ctx: object) -> waiting.Wait | None:
        return waiting.why(s, waiting.Context(**ctx), NOW)  # type: ignore[arg-type]

    w = why(SESSION, forge="github", forge_trouble=("rate limited until 14:05", "github"))
    assert w == waiting.Wait("GitHub: rate limited until 14:05", "github", "forge")
    w = why(SESSION, forge_trouble=("502 from the forge", "ao"))
    assert w == waiting.Wait("the forge: 502 from the forge", "ao", "forge")
    gated = replace(SESSION, pr_review="not_reviewed", pr_gate_ok=1)
    assert (w := why(gated)) is not None and w.kind == "ready"
    held = replace(SESSION, pr_review="approved", pr_gate="checks are settling")
    assert why(held) == waiting.Wait("PR #45: checks are settling", waiting.AO, "gate")
    assert why(held, forge="github") == waiting.Wait("PR #45: checks are settling",
                                                     waiting.GITHUB, "gate")


def test_a_prompt_on_screen_is_waiting_whatever_the_hook_and_a_known_screen_wins_alone(
) -> None:
    W, A = Activity.WAITING_INPUT, Activity.ACTIVE
    assert activity.infer(W, A, 100.0, True, changed_at=50.0, now=60.0) is W
    assert activity.infer(A, None, None, False, changed_at=0.0, now=100.0) is A


def test_each_zone_and_its_rank() -> None:
    for state in (State.MERGED, State.CLEANED, State.KILLED, State.FAILED):
        assert attention.zone(replace(SESSION, state=state), NOW) == "done"
    assert attention.zone(replace(SESSION, state=State.QUEUED), NOW) == "queued"
    for fixing in (dict(pr_checks="failing"), dict(pr_review="changes_requested"),
                   dict(pr_mergeable="conflicting")):
        assert attention.zone(replace(SESSION, **fixing), NOW) == "fixing", fixing  # type: ignore[arg-type]
    assert attention.rank(SESSION, NOW) == 0  # respond: first
    assert attention.rank(replace(SESSION, state=State.MERGED), NOW) == len(attention.ZONES) - 1
    # never seen still (no screen change, no hook on record): not stuck however long
    unseen = replace(SESSION, pr_number=None, pr_state=None, screen_changed_at=None)
    assert attention.zone(unseen, NOW) == "working"
    assert attention.zone(replace(unseen, hook_at=NOW - 900), NOW) == "respond"


def test_approval_from_the_decision_and_from_the_reviews() -> None:
    A = gate.Approval
    assert gate.approval(_pr(review_decision="changes_requested")) is A.CHANGES_REQUESTED
    # a standing request blocks whatever the decision says
    assert gate.approval(_pr(reviews=(("ann", "changes_requested"),))) is A.CHANGES_REQUESTED
    assert gate.approval(_pr(review_decision="review_required")) is A.REVIEW_REQUIRED
    assert gate.approval(_pr(review_decision=None, reviews=(("ann", "approved"),))) \
        is A.APPROVED
    assert gate.approval(_pr(review_decision=None)) is A.NOT_REVIEWED


def test_by_default_the_gate_wants_a_review_and_checks() -> None:
    v = gate.merge_gate(_pr(review_decision=None), gate.GatePolicy())
    assert not v.ok and v.reason.startswith("not reviewed: approve it on the forge")
    v = gate.merge_gate(_pr(checks=CheckSummary("none", ())), gate.GatePolicy())
    assert (v.ok, v.reason) == (False, "no checks have run (require_checks: false merges "
                                       "without)")


def test_every_reason_the_gate_gives() -> None:
    policy = gate.GatePolicy(base="main")

    def why(pr: PullRequest, p: gate.GatePolicy = policy, **kw: frozenset[str]) -> str:
        v = gate.merge_gate(pr, p, **kw)  # type: ignore[arg-type]
        assert not v.ok
        return v.reason

    assert why(_pr(base="dev")) == "the PR targets dev, not main"
    assert gate.merge_gate(_pr(base="main"), policy).ok
    assert why(_pr(review_decision="changes_requested")) == "changes are requested"
    assert why(_pr(review_decision="review_required")) == "a review is required"
    assert why(_pr(merge_state="blocked", blocked_by="2 approvals")) == \
        "the PR is blocked by branch protection: 2 approvals"
    assert why(_pr(merge_state="blocked")) == ("the PR is blocked by branch protection: a rule "
                                               "ao cannot read (look at the PR on GitHub)")
    assert why(_pr(merge_state="behind")) == ("the PR is behind the base branch (the "
                                              "repository requires it up to date)")
    assert why(_pr(merge_state="weird")) == "the PR is in merge state weird"
    # a step still to pass: the human's approval comes last, whatever its name's order
    both = frozenset({"review", "approve"})
    v = gate.merge_gate(_pr(), policy, required=both)
    assert (v.reason, v.waiting_for) == ("waiting for the reviewer agent's verdict", "review")
    assert gate.merge_gate(_pr(), policy, required=both, passed=frozenset({"review"})) \
        .waiting_for == "approve"
    assert gate.merge_gate(_pr(), policy, required=frozenset({"check:lint"})).reason == \
        "waiting for check:lint"


def test_the_limit_is_read_from_the_last_forty_lines_wherever_it_is_among_them() -> None:
    line = "You've hit your 5-hour limit · resets 10pm (UTC)"
    assert limits.limit_line(line + "\n" + "│ x\n" * 39) == line
    assert limits.limit_line(line + "\n" + "│ x\n" * 40) is None
    assert limits.limit_line("x\n" * 5 + line) == line  # the last line
    assert limits.limit_line("x\n" * 5 + line + "\n│ y") == line  # the one before it


def test_a_reset_to_the_minute_its_year_and_the_edges_of_a_day() -> None:
    def at(text: str, now: datetime) -> datetime:
        line = f"You've hit your 5-hour limit · resets {text}"
        return datetime.fromtimestamp(limits.reset_at(line, now), UTC)

    now = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
    assert at("24:00 (UTC)", now) == datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
    assert at("1am (UTC)", now) == datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # now is past
    assert at("Dec 9th, 2027 10:54 PM (UTC)", now) == datetime(2027, 12, 9, 22, 54,
                                                                 tzinfo=UTC)
    late = datetime(2026, 12, 6, 22, 0, tzinfo=UTC)
    assert at("Dec 5, 10pm (UTC)", late) == datetime(2026, 12, 5, 22, 0, tzinfo=UTC)
    assert at("Dec 5, 9pm (UTC)", late) == datetime(2027, 12, 5, 21, 0, tzinfo=UTC)


def test_the_line_waited_out_is_the_same_time_tomorrow_within_two_minutes() -> None:
    day = 86400.0
    assert limits.believable(NOW + day, NOW, NOW) is False  # its reset is now
    assert limits.believable(NOW + day + 119, NOW, NOW) is False
    assert limits.believable(NOW + day + 120, NOW, NOW) is True


def test_a_limit_message_joins_at_most_two_wrapped_lines_that_start_with_a_word() -> None:
    screen = "■ You've hit your usage limit.\ns. Try again\nat 10pm\nlater text\n"
    assert limits.limit_line(screen) == "■ You've hit your usage limit. s. Try again at 10pm"


def test_an_issues_status_line_in_each_state() -> None:
    def line(s: Session | None, wait: waiting.Wait | None = None, **kw: int) -> str:
        return pickup.status_line(s, wait, **kw)

    assert line(None) == "Queued."
    assert line(replace(SESSION, state=State.QUEUED, note="waits for #3")) == \
        "Queued: waits for #3."
    merged = replace(SESSION, state=State.MERGED, pr_state="merged")
    assert line(merged) == "Merged in PR #45."
    assert line(replace(merged, pr_number=None)) == "Merged."
    # cleaned without a merge: stopped; killed with its PR merged elsewhere: stopped too
    assert line(replace(SESSION, state=State.CLEANED, pr_state="open")) == \
        "Stopped (cleaned); it starts again when asked (`ao spawn`)."
    assert line(replace(SESSION, state=State.KILLED)) == \
        "Stopped (killed); it starts again when asked (`ao spawn`)."
    assert line(replace(SESSION, state=State.NEEDS_HUMAN, note="CI failed 3 times")) == \
        "Needs a human: CI failed 3 times (session wor-3)."
    assert line(replace(SESSION, state=State.NEEDS_HUMAN)) == \
        "Needs a human: escalated (session wor-3)."
    on_it = "An agent (claude-code) is on it in session wor-3"
    assert line(replace(SESSION, pr_number=None)) == on_it + "."
    assert line(SESSION) == on_it + "; PR #45."
    assert line(SESSION, rounds=2, of=3) == on_it + "; PR #45; CI fix round 2 of 3."
    assert line(SESSION, rounds=2) == on_it + "; PR #45; CI fix round 2."
    assert line(SESSION, waiting.Wait("CI running on PR #45", "ci", "ci_pending")) == \
        on_it + "; PR #45: CI running on PR #45."
    assert line(SESSION, waiting.Wait("idle for 12 min", "person", "stuck")) == \
        on_it + "; PR #45: the agent is idle with no pull request."


def test_an_issues_status_comment_is_marked_and_quotes_nothing_live() -> None:
    body = pickup.status_body("Needs a human: @ann said `rm -rf` <b>x</b>")
    assert body.startswith(pickup.MARKER + "\n**ao**: Needs a human: @\u200bann said \\`rm")
    assert "\\<b\\>x\\</b\\>" in body
    assert body.endswith("\n\n<sub>This comment is kept up to date by ao.</sub>")


def test_pickup_keys_and_numbers_and_a_cycle_waits_outside() -> None:
    from ao.record.forge import PickedIssue

    assert (pickup.key(12), pickup.number("12"), pickup.number("AUTH-1")) == ("12", 12, None)
    picked = [PickedIssue(1, "a", "", (2,)), PickedIssue(2, "b", "", (1,)),
              PickedIssue(3, "c", "", (99,)), PickedIssue(4, "d", ""),
              PickedIssue(5, "e", "", (4,))]
    plan, why = pickup.plan_of(picked)
    assert list(plan.tasks) == ["4", "5"] and plan.tasks["5"].deps == ("4",)
    assert why == ["a dependency cycle: #1 -> #2 -> #1 (none of them can start; remove one link on "
                   "GitHub)", "#3 waits for #99, not ready for pickup here: it starts once "
                   "that is closed"]


def test_a_host_has_room_by_its_sessions_its_answer_and_its_memory() -> None:
    R = placement.Room
    assert R("h", 1, 2).free and R("h", 2, 2).free is False and R("h", 9, None).free
    assert R("h", 0, 2, reachable=False).free is False
    assert hash(R("h", 0, 2)) == hash(R("h", 0, 2))  # a value: rooms are compared and kept
    assert R("h", 0, 2).reachable and R("h", 0, 2).needs_mb == 0
    assert not R("h", 0, None, free_mb=512, floor_mb=512).short_of_memory  # exactly the floor
    assert R("h", 0, None, free_mb=511, floor_mb=512).short_of_memory
    assert not R("h", 0, None, free_mb=100).short_of_memory  # no floor of its own
    assert (R("h", 1, 4).load, R("h", 3, None).load) == (0.25, 0.0)


def test_the_least_full_host_is_chosen_here_first_on_a_tie() -> None:
    R = placement.Room
    assert placement.choose([R("b", 1, 4), R("a", 1, 2)]) == "b"
    assert placement.choose([R("b", 0, 2), R("local", 0, 2), R("a", 0, 2)]) == "local"
    assert placement.choose([R("b", 0, 2), R("a", 0, 2)]) == "a"
    assert placement.choose([R("a", 2, 2), R("b", 0, 2, reachable=False)]) is None
    assert placement.why_full([R("a", 2, 2), R("b", 0, 2, reachable=False),
                               R("c", 0, 2, free_mb=600, floor_mb=512, needs_mb=200),
                               R("d", 0, 2, free_mb=500, floor_mb=512), R("e", 0, 2)]) == (
        "no host has room: a full (2/2), b unreachable, c low on memory (600 MB free, the "
        "agent takes about 200 MB, 512 MB kept free), d low on memory (500 MB free, 512 MB "
        "kept free)")


def test_a_documents_tables_bracketed_lines_files_and_batches_become_the_plan() -> None:
    text = """# Plan

| Key | Title | Files | Estimate |
|---|---|---|---|
| DB-1 | Schema | `db/schema.sql`, db/migrations/* | 2d |
| API-2 | Endpoints | - | 1 day |

Not a table line: API-2 files: nothing here

- [UI-3] Pages (3 days)
  Files: ui/pages/*; ui/app.ts
- [DB-1] A second title is ignored

## Notes
Files: docs/nobody.md

```mermaid
graph TD
  DB-1 --> API-2 --> UI-3
```

Run `ao batch-spawn shop DB-1` then `ao batch-spawn shop API-2 UI-3`.
"""
    p = plan_import.import_markdown(text)
    t = p.tasks
    assert list(t) == ["DB-1", "API-2", "UI-3"]
    assert (t["DB-1"].title, t["DB-1"].estimate, t["DB-1"].files) == (
        "Schema", "2d", ("db/schema.sql", "db/migrations/*"))
    assert (t["API-2"].title, t["API-2"].estimate, t["API-2"].files) == ("Endpoints", "1d", ())
    assert (t["UI-3"].title, t["UI-3"].estimate, t["UI-3"].files) == (
        "Pages", "3d", ("ui/pages/*", "ui/app.ts"))
    assert (t["UI-3"].deps, t["API-2"].deps) == (("API-2",), ("DB-1",))
    assert (p.waves, p.project) == ((("DB-1",), ("API-2", "UI-3")), "shop")


def test_the_first_prompt_names_the_merged_work_it_builds_on_and_caps_each_file(
        tmp_path: Path) -> None:
    from ao import config
    from ao.decide import prompts

    (tmp_path / "BIG.md").write_text("b" * 20_001)
    plan = planmod.Plan(tasks={"A-1": planmod.Task("A-1", "Schema")}, context=("BIG.md",))
    task = planmod.Task("B-1", "Login", deps=("A-1", "Z-9"))
    text = prompts.first_prompt(config.ProjectConfig(name="shop", path=tmp_path), task, plan,
                                "b")
    assert "This builds on work that is already merged:\n- A-1: Schema\n\n" in text
    assert "Z-9" not in text
    assert "b" * 20_000 + "\n[... cut: 1 more characters]" in text


def test_a_budget_is_a_positive_number_of_dollars() -> None:
    base = "tasks:\n  A-1: {title: a}\n"
    assert planmod.parse(base + "budget_usd: 40\n").budget_usd == 40.0
    for bad in ("0", "-1", "true", "'40'"):
        with pytest.raises(AoError, match="budget_usd must be a positive number"):
            planmod.parse(base + f"budget_usd: {bad}\n")


def test_tasks_that_wait_for_each_other_never_overlap_and_the_summary_holds_them_apart() -> None:
    p = planmod.parse("tasks:\n  A-1: {title: a, estimate: 1d, files: [src/x.py]}\n"
                      "  B-1: {title: b, estimate: 1d, files: [src/x.py], deps: [A-1]}\n"
                      "  C-1: {title: c, estimate: 1d, files: [src/*]}\n")
    # B waits for A: only C shares files with either while they may run at once
    assert plan_graph.overlaps(p) == [("A-1", "C-1", "src/x.py"), ("B-1", "C-1", "src/x.py")]
    s = plan_graph.summary(p, 3)
    assert s["makespan"]["dependency_driven"] == 2.0
    assert s["makespan"]["with_overlap_holds"] == 3.0  # C is held while A, then B, run


def test_a_two_column_table_gives_titles() -> None:
    p = plan_import.import_markdown("| AUTH-1 | Login |\n\n```mermaid\ngraph TD\n  AUTH-1\n```\n")
    assert p.tasks["AUTH-1"].title == "Login"


def test_a_conflict_is_sent_back_three_times_by_default_then_a_person_is_called() -> None:
    conflicting = _pr(mergeable="conflicting")
    obs = reactions.Observation(State.PR_OPEN, Activity.IDLE, 0.0, conflicting)
    twice = reactions.History(done=frozenset({"rebase:s1", "rebase:s2"}))
    assert [a.kind for a in reactions.decide(obs, twice, reactions.Policy())] == \
        [reactions.ActionKind.ASK_REBASE]
    thrice = reactions.History(done=frozenset({"rebase:s1", "rebase:s2", "rebase:s3"}))
    acts = reactions.decide(obs, thrice, reactions.Policy())
    assert [(a.kind, a.reason) for a in acts] == [
        (reactions.ActionKind.ESCALATE, "still conflicting after 3 rebase requests")]


def test_a_merge_the_forge_refuses_three_times_by_default_goes_to_a_person() -> None:
    auto = reactions.Policy(auto_merge=True)
    obs = reactions.Observation(State.PR_OPEN, Activity.IDLE, 0.0, _pr())
    twice = reactions.History(done=frozenset({f"merge-failed:{SHA}:1", f"merge-failed:{SHA}:2"}))
    assert [a.kind for a in reactions.decide(obs, twice, auto)] == [reactions.ActionKind.MERGE]
    thrice = reactions.History(done=twice.done | {f"merge-failed:{SHA}:3"})
    assert [(a.kind, a.reason) for a in reactions.decide(obs, thrice, auto)] == [
        (reactions.ActionKind.ESCALATE, "the forge refused to merge PR #7 3 times")]


def test_a_full_project_starts_nothing_and_a_checks_gate_is_its_commands_hash() -> None:
    p = planmod.parse("tasks:\n  A: {title: a}\n  B: {title: b}\n  C: {title: c}\n")
    working = frozenset({State.WORKING})
    tasks = {"A": scheduler.TaskStatus(states=working), "B": scheduler.TaskStatus(
        states=working), "C": scheduler.TaskStatus(states=frozenset({State.QUEUED}))}
    assert scheduler.next_to_start(p, tasks, set(), 2) == []
    # recorded with each pass (attempts): the same command is the same gate, ten hex digits
    lint = next(s for s in steps.parse([{"check": {"run": "make lint"}}], "plan")
                if s.kind == "check")
    assert steps.gate_id(lint) == "check:a528e6e116"


def test_only_a_merged_pr_is_cleaning_up() -> None:
    def why(s: Session) -> waiting.Wait | None:
        return waiting.why(s, waiting.Context(), NOW)

    active = replace(SESSION, activity=Activity.ACTIVE)
    assert why(replace(active, pr_state="merged")) == waiting.Wait("merged: cleaning up",
                                                                   waiting.AO, "merged")
    assert why(replace(active, pr_state="closed")) is None  # its agent works on
