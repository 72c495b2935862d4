"""The planner against a local server speaking the Messages API (the SDK pointed at it)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ao import paths
from ao.config import LlmConfig
from ao.errors import BadInput, ExternalError
from ao.record.store import Store
from ao.services.planner import Planner, extract_errors, spent

from .fake_anthropic import FakeAnthropic, Reply, serve
from .fleet_helpers import Env
from .helpers import run_ao

GOOD = {"tasks": [
    {"key": "AUTH-001", "title": "User model and migrations", "body": "users table",
     "estimate": "1d"},
    {"key": "AUTH-002", "title": "Registration endpoint", "body": "POST /register",
     "deps": ["AUTH-001"], "estimate": "2d", "files": ["src/auth/*.py", "tests/test_reg.py"]},
    {"key": "AUTH-003", "title": "Login with JWT", "body": "POST /login returns a JWT",
     "deps": ["AUTH-001"], "estimate": "2d", "files": ["src/auth/jwt.py"]},
], "decisions": ["use JWT with 1-hour expiry"]}
CYCLE = {"tasks": [
    {"key": "A-1", "title": "a", "body": "a", "deps": ["B-1"]},
    {"key": "B-1", "title": "b", "body": "b", "deps": ["A-1"]},
    {"key": "C-1", "title": "c", "body": "c", "deps": ["Z-9"]}]}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAnthropic]:
    with serve() as f:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", f.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        yield f


def planner(**llm: object) -> Planner:
    return Planner(LlmConfig(timeout=5, **llm), Store(), "shop")  # type: ignore[arg-type]


def test_draft_a_good_plan_from_the_repo(env: Env, fake: FakeAnthropic) -> None:
    fake.script = [Reply(text="", tool="write_plan", tool_input=GOOD,
                         usage={"input_tokens": 1200, "output_tokens": 300})]
    r = run_ao("plan", "draft", "JWT-based user authentication with login and registration",
               "--project", "shop")
    assert r.code == 0, r.err
    out = env.repo / "plans" / "shop-draft.yaml"
    assert run_ao("plan", "check", str(out)).code == 0
    text = out.read_text()
    assert "AUTH-002" in text and "use JWT with 1-hour expiry" in text
    # the planner's predicted files reach the plan: `plan show` names the overlap they make
    shown = run_ao("plan", "show", str(out)).out
    assert "AUTH-002 and AUTH-003 share src/auth/jwt.py" in shown, shown
    body = fake.requests[0]
    schema = body["tools"][0]["input_schema"]["properties"]["tasks"]["items"]["properties"]
    assert schema["files"]["type"] == "array"
    assert body["tool_choice"] == {"type": "tool", "name": "write_plan"}
    assert "README.md" in body["messages"][0]["content"]  # the repo was read, bounded
    calls = [json.loads(line) for line in paths.events_log().read_text().splitlines()
             if json.loads(line)["type"] == "llm.call"]
    assert calls[0]["data"]["input_tokens"] == 1200
    assert calls[0]["data"]["cost_usd"] == pytest.approx((1200 * 3 + 300 * 15) / 1e6)
    u = run_ao("usage", "--json")
    assert json.loads(u.out)["total_usd"] == pytest.approx(0.0081)


def test_a_cycle_is_sent_back_once_then_fixed(env: Env, fake: FakeAnthropic) -> None:
    fake.script = [Reply(text="", tool="write_plan", tool_input=CYCLE),
                   Reply(text="", tool="write_plan", tool_input=GOOD)]
    plan = planner().draft("auth", env.repo)
    assert list(plan.tasks) == ["AUTH-001", "AUTH-002", "AUTH-003"]
    retry = fake.requests[1]["messages"][-1]["content"][0]
    assert retry["type"] == "tool_result" and retry["is_error"] is True
    assert "cycle: A-1 -> B-1 -> A-1" in retry["content"]
    assert "unknown task Z-9" in retry["content"]


def test_still_invalid_after_the_retry_fails_clearly(env: Env, fake: FakeAnthropic) -> None:
    fake.script = [Reply(text="", tool="write_plan", tool_input=CYCLE)] * 2
    with pytest.raises(ExternalError, match=r"still invalid after a retry: .*unknown task Z-9"):
        planner().draft("auth", env.repo)
    r = run_ao("plan", "draft", "x", "--project", "shop", "--dry-run")  # script now empty
    assert r.code == 1 and "did not return a plan" in r.err


def test_api_error_and_timeout(env: Env, fake: FakeAnthropic) -> None:
    fake.script = [Reply(status=529)] * 3
    with pytest.raises(ExternalError, match="answered 529"):
        planner().draft("auth", env.repo)
    fake.script = [Reply(delay=8)] * 3
    with pytest.raises(ExternalError, match="did not answer within"):
        Planner(LlmConfig(timeout=0.5), Store(), "shop").draft("auth", env.repo)


def test_budget_stops_further_calls(env: Env, fake: FakeAnthropic) -> None:
    fake.script = [Reply(text="", tool="write_plan", tool_input=GOOD,
                         usage={"input_tokens": 100_000, "output_tokens": 10_000})]
    p = planner(budget_usd=0.2)
    p.draft("auth", env.repo)
    assert spent(Store()) == pytest.approx(0.45)
    requests = len(fake.requests)
    with pytest.raises(BadInput, match=r"budget is spent \(\$0.45 of \$0.20\)"):
        p.draft("more", env.repo)
    assert len(fake.requests) == requests  # no call was made


def test_no_key_is_a_clear_error(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    r = run_ao("plan", "draft", "x", "--project", "shop")
    assert r.code == 2 and "ANTHROPIC_API_KEY" in r.err


def test_condensing_ci_logs(env: Env, fake: FakeAnthropic) -> None:
    log = "\n".join(f"collecting {i}" for i in range(3000)) + \
        "\nFAILED tests/test_x.py::test_y - AssertionError: 1 != 2\n" + "teardown\n" * 50
    fake.script = [Reply(text="tests/test_x.py::test_y AssertionError: 1 != 2")]
    short = planner(condense_ci_logs=True).condense(log)
    assert short == "tests/test_x.py::test_y AssertionError: 1 != 2"
    # off, or on an API error: the deterministic extraction
    assert "AssertionError: 1 != 2" in planner().condense(log)
    fake.script = [Reply(status=500)] * 3
    fallback = planner(condense_ci_logs=True).condense(log)
    assert "FAILED tests/test_x.py::test_y" in fallback and "collecting 5\n" not in fallback


def test_extract_errors_keeps_context_and_caps() -> None:
    log = "ok\n" * 10 + "src/a.py:3: error: bad\n" + "ok\n" * 10
    assert extract_errors(log) == "ok\nsrc/a.py:3: error: bad\nok"
    assert len(extract_errors("error\n" * 5000, 100)) < 200
