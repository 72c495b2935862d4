"""The Anthropic-backed planner: draft a plan from a feature description, condense long CI logs,
and account for every model call (tokens and estimated cost as events, a budget that stops
further calls). Nothing else in ao needs the network or a key.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ao.decide import plan as planmod
from ao.decide.prices import DEFAULT_MODEL, PRICES, cost
from ao.errors import AoError, BadInput, ExternalError
from ao.record.events import Event, emit
from ao.sanitize import cap, clean
from ao.world import workspace

if TYPE_CHECKING:
    from ao.config import LlmConfig
    from ao.record.store import Store

TREE_LIMIT = 400
FILE_LIMIT = 6000
KEY_FILES = ("README.md", "README.rst", "pyproject.toml", "package.json", "go.mod",
             "Cargo.toml", "docs/architecture.md", "ARCHITECTURE.md", "CONTRIBUTING.md")

PLAN_TOOL = {
    "name": "write_plan",
    "description": "Write the implementation plan: tasks with dependencies, for parallel "
                   "coding agents that each work on one task in their own branch.",
    "input_schema": {
        "type": "object",
        "required": ["tasks"],
        "properties": {
            "tasks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key", "title", "body"],
                    "properties": {
                        "key": {"type": "string", "pattern": "^[A-Z][A-Z0-9]*-[0-9]+$",
                                "description": "e.g. AUTH-001"},
                        "title": {"type": "string"},
                        "body": {"type": "string",
                                 "description": "what to build and the deliverables"},
                        "deps": {"type": "array", "items": {"type": "string"}},
                        "estimate": {"type": "string", "description": "e.g. 2d, 3-4d, 6h"},
                        "files": {"type": "array", "items": {"type": "string"},
                                  "description": "the paths or globs the task will write "
                                                 "(from the repository's tree), e.g. "
                                                 "src/web/*.tsx: ao keeps two agents off "
                                                 "the same files"},
                    },
                },
            },
            "decisions": {"type": "array", "items": {"type": "string"},
                          "description": "decisions every agent must follow"},
        },
    },
}


def spent(store: Store, project: str | None = None) -> float:
    return sum(float(d.get("cost_usd", 0)) for _, d in store.llm_calls(project))


class Planner:
    def __init__(self, llm: LlmConfig, store: Store, project: str | None = None,
                 plan: str | None = None) -> None:
        self.llm = llm
        self.store = store
        self.project = project
        self.plan_name = plan
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            key = os.environ.get("ANTHROPIC_API_KEY")
            if not key:
                raise BadInput("no ANTHROPIC_API_KEY", "set it to draft plans with Claude")
            import anthropic

            self._client = anthropic.Anthropic(
                api_key=key, base_url=os.environ.get("ANTHROPIC_BASE_URL"),
                timeout=self.llm.timeout, max_retries=1)
        return self._client

    def call(self, purpose: str, **kwargs: Any) -> Any:
        """One Messages API call: budget checked first, usage and cost recorded after."""
        if self.llm.budget_usd is not None:
            used = spent(self.store)
            if used >= self.llm.budget_usd:
                raise BadInput(f"the LLM budget is spent (${used:.2f} of "
                               f"${self.llm.budget_usd:.2f})",
                               "raise llm.budget_usd in the config to allow more calls")
        import anthropic

        try:
            resp = self.client().messages.create(model=self.llm.model,
                                                 max_tokens=self.llm.max_tokens, **kwargs)
        except anthropic.APITimeoutError:
            raise ExternalError(f"the model did not answer within {self.llm.timeout:g}s",
                                "try again, or raise llm.timeout") from None
        except anthropic.APIStatusError as e:
            raise ExternalError(f"the Anthropic API answered {e.status_code}",
                                "try again later") from None
        except anthropic.APIConnectionError:
            raise ExternalError("cannot reach the Anthropic API", "check the network") from None
        u = resp.usage
        usage = {k: int(getattr(u, k, 0) or 0) for k in (
            "input_tokens", "output_tokens", "cache_creation_input_tokens",
            "cache_read_input_tokens")}
        data: dict[str, Any] = {"purpose": purpose, "model": self.llm.model, **usage,
                                "cost_usd": round(cost(self.llm.model, usage), 6),
                                "plan": self.plan_name}
        if self.llm.model not in PRICES:
            data["estimated_with"] = DEFAULT_MODEL
        emit(Event("llm.call", self.project, data=data), self.store)
        return resp

    # ---- drafting plans -------------------------------------------------------------------

    def draft(self, feature: str, repo: Path) -> planmod.Plan:
        context = repo_context(repo)
        system = ("You plan software work for a fleet of coding agents. Each task is done by "
                  "one agent on its own branch and merged by pull request, so tasks must be "
                  "small, independently testable, and ordered by real dependencies only: a "
                  "task lists as deps exactly the tasks whose code it needs, and as files the "
                  "paths it will write (so two agents are not started on the same files). "
                  "Record decisions "
                  "that several agents must share. Answer by calling write_plan.")
        messages: list[dict[str, Any]] = [{"role": "user", "content": (
            f"Feature to build:\n{feature}\n\nThe repository:\n{context}")}]
        for attempt in range(2):
            resp = self.call("plan.draft", system=system, messages=messages,
                             tools=[PLAN_TOOL],
                             tool_choice={"type": "tool", "name": "write_plan"})
            block = next((b for b in resp.content if getattr(b, "type", "") == "tool_use"),
                         None)
            if block is None:
                raise ExternalError("the model did not return a plan", "try again")
            plan, problems = to_plan(block.input, self.project)
            if not problems:
                return plan
            if attempt == 0:
                messages += [
                    {"role": "assistant", "content": [{"type": "tool_use", "id": block.id,
                                                       "name": "write_plan",
                                                       "input": block.input}]},
                    {"role": "user", "content": [{
                        "type": "tool_result", "tool_use_id": block.id, "is_error": True,
                        "content": "The plan has these problems; call write_plan again with "
                                   "them fixed:\n" + "\n".join(problems)}]}]
        raise ExternalError(f"the model's plan is still invalid after a retry: {problems[0]}",
                            "rephrase the feature, or write the plan by hand")

    # ---- CI logs --------------------------------------------------------------------------

    def condense(self, log: str, limit: int = 3000) -> str:
        """The errors that matter in a long CI log; the deterministic extraction when the model
        cannot help (no key, API error, budget spent)."""
        if len(log) <= limit or not self.llm.condense_ci_logs:
            return extract_errors(log, limit)
        try:
            resp = self.call("ci.condense", system=(
                "Extract from this CI log only what a developer needs to fix the failure: the "
                "failing tests, error messages and file:line locations, verbatim. No advice."),
                messages=[{"role": "user", "content": cap(clean(log), 100_000)}])
        except AoError:
            return extract_errors(log, limit)
        text = "".join(getattr(b, "text", "") for b in resp.content)
        return cap(clean(text), limit) if text.strip() else extract_errors(log, limit)


_ERROR_LINE = re.compile(r"(error|fail|exception|assert|traceback|\.py:\d+|:\d+:\d+)", re.I)


def extract_errors(log: str, limit: int = 3000) -> str:
    """Deterministic: lines that look like errors, with a line of context, then the tail."""
    lines = clean(log).splitlines()
    keep: list[str] = []
    for i, line in enumerate(lines):
        if _ERROR_LINE.search(line):
            for j in range(max(0, i - 1), min(len(lines), i + 2)):
                if not keep or keep[-1] != lines[j]:
                    keep.append(lines[j])
    text = "\n".join(keep[-200:]) if keep else "\n".join(lines[-60:])
    return cap(text, limit)


def to_plan(data: Any, project: str | None) -> tuple[planmod.Plan, list[str]]:
    """The tool's input as a plan, through the same parser and checks as a written plan."""
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        return planmod.Plan(tasks={}), ["`tasks` must be a list"]
    tasks: dict[str, Any] = {}
    for t in data["tasks"]:
        if not isinstance(t, dict) or "key" not in t:
            return planmod.Plan(tasks={}), ["every task needs a key"]
        spec = {k: t[k] for k in ("title", "body", "deps", "estimate", "files") if t.get(k)}
        tasks[str(t["key"])] = spec
    doc: dict[str, Any] = {"tasks": tasks}
    if project:
        doc["project"] = project
    if data.get("decisions"):
        doc["decisions"] = [str(d) for d in data["decisions"]]
    try:
        plan = planmod.parse(json.dumps(doc))
    except AoError as e:
        return planmod.Plan(tasks={}), [str(e)]
    return plan, [p.message for p in plan.problems]


def repo_context(repo: Path) -> str:
    """README, the file tree and a few key files, bounded."""
    files = workspace.tracked_files(repo)
    if files is None:
        files = [str(p.relative_to(repo)) for p in sorted(repo.rglob("*"))
                 if p.is_file()][:TREE_LIMIT]
    parts = [f"Files ({len(files)}):", "\n".join(files[:TREE_LIMIT])]
    if len(files) > TREE_LIMIT:
        parts.append(f"... and {len(files) - TREE_LIMIT} more")
    for name in KEY_FILES:
        f = repo / name
        if f.is_file():
            parts += [f"\n--- {name} ---", cap(clean(f.read_text(errors="replace")), FILE_LIMIT)]
    return "\n".join(parts)
