"""Steps and gates: the ordered stages a task's work goes through before its PR merges. Pure.

    steps: [implement, review, approve]
    steps: [implement, {review: {agent: codex}}, {check: {run: "make deploy-check"}}, approve]

- `implement`: the task's agent writes the change and opens the PR (always first, implied).
- `review`: once CI is green, a reviewer agent reads the PR at its head and answers with a
  verdict (approve / request changes, with comments on path and line); ao posts it as a
  review on the forge. Re-run on each new head, up to the review-round limit.
- `check`: a command run in the session's worktree at the PR head once CI is green; its exit
  code passes or fails the step, and its output goes to the agent on failure.
- `approve`: a human gate before merge (`ao approve SID`, or `--reject "why"`).

A step is passed for one head sha: a new push runs review and checks again and asks the human
again, so what merges is always what was reviewed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ao.errors import BadInput

KINDS = ("implement", "review", "check", "approve")


@dataclass(frozen=True)
class Step:
    kind: str  # implement | review | check | approve
    agent: str | None = None  # review: the reviewer's agent profile (default: the task's)
    run: str | None = None  # check: the command
    name: str = ""  # check: how it is shown (default: the command)

    @property
    def label(self) -> str:
        return self.name or self.kind


DEFAULT: tuple[Step, ...] = (Step("implement"),)


def parse(raw: Any, where: str) -> tuple[Step, ...]:
    """Steps from a plan (`steps:` of a task or of `defaults:`); `implement` is put first
    when it is left out."""
    if raw is None:
        return DEFAULT
    if not isinstance(raw, list) or not raw:
        raise BadInput(f"{where}: `steps` must be a non-empty list",
                       "e.g. steps: [implement, review, approve]")
    out: list[Step] = []
    for item in raw:
        step = _step(item, where)
        if step.kind != "check" and any(s.kind == step.kind for s in out):
            raise BadInput(f"{where}: step `{step.kind}` is listed twice", "list each step once")
        out.append(step)
    if out[0].kind != "implement":
        if any(s.kind == "implement" for s in out):
            raise BadInput(f"{where}: `implement` must come first", "the work comes first")
        out.insert(0, Step("implement"))
    return tuple(out)


def _step(item: Any, where: str) -> Step:
    """One step: a name, or a one-key mapping of its name to its options."""
    kind, opts = _named(item, where)
    if kind not in KINDS:
        raise BadInput(f"{where}: unknown step `{kind}`", f"steps: {', '.join(KINDS)}")
    known = {"review": {"agent"}, "check": {"run", "name"}}.get(kind, set())
    extra = set(opts) - known
    if extra:
        raise BadInput(f"{where}: step {kind}: unknown option `{sorted(extra)[0]}`",
                       f"options of {kind}: {', '.join(sorted(known)) or 'none'}")
    if kind == "check" and not str(opts.get("run") or "").strip():
        raise BadInput(f"{where}: a check step needs `run: COMMAND`",
                       'e.g. {check: {run: "make deploy-check"}}')
    return Step(kind, agent=str(opts["agent"]) if opts.get("agent") else None,
                run=str(opts["run"]) if opts.get("run") else None,
                name=str(opts.get("name") or opts.get("run") or ""))


def _named(item: Any, where: str) -> tuple[str, Mapping[str, Any]]:
    """A step's name and its options (none for a bare name)."""
    if isinstance(item, str):
        return item, {}
    if not isinstance(item, Mapping) or len(item) != 1:
        raise BadInput(f"{where}: a step is a name or a one-key mapping, not {item!r}",
                       "e.g. implement, review, {check: {run: make lint}}, approve")
    kind, opts = next(iter(item.items()))
    opts = opts or {}
    if not isinstance(opts, Mapping):
        raise BadInput(f"{where}: step {kind}: options must be a mapping",
                       "e.g. {review: {agent: codex}}")
    return str(kind), opts


def raw(steps: tuple[Step, ...]) -> list[Any]:
    """Back to the plan's form (for `ao plan show --json` and the API)."""
    out: list[Any] = []
    for s in steps:
        if s.kind == "review" and s.agent:
            out.append({"review": {"agent": s.agent}})
        elif s.kind == "check":
            out.append({"check": {"run": s.run, **({"name": s.name} if s.name != s.run
                                                  else {})}})
        else:
            out.append(s.kind)
    return out


def gates(steps: tuple[Step, ...]) -> frozenset[str]:
    """The gates a PR of these steps must pass before it may merge: `review`, `approve`,
    and `check:<hash of its command>` per check (a plan edit that inserts or changes a check
    never hands it another check's pass)."""
    return frozenset(gate_id(s) for s in steps if s.kind != "implement")


def gate_id(step: Step) -> str:
    if step.kind != "check":
        return step.kind
    return "check:" + hashlib.sha1((step.run or "").encode()).hexdigest()[:10]


def check_for(steps: tuple[Step, ...], gate: str) -> Step | None:
    return next((s for s in steps if s.kind == "check" and gate_id(s) == gate), None)


def holding(steps: tuple[Step, ...], pr_state: str | None, gate_ok: bool,
            waiting_for: str) -> str:
    """The step a task is at, as shown everywhere: `implement` until the PR is green and
    clean, then the step whose gate alone holds the merge, `merge`, and `merged`."""
    if pr_state == "merged":
        return "merged"
    if pr_state != "open":
        return "implement"
    if gate_ok:
        return "merge"
    for s in steps:
        if waiting_for and gate_id(s) == waiting_for:
            return s.label
    return "implement"


def passed(fingerprints: frozenset[str] | set[str], sha: str) -> frozenset[str]:
    """The gates passed for one head, from a session's reaction fingerprints
    (`gate:<gate>:<sha>`)."""
    end = f":{sha}"
    return frozenset(fp[5:-len(end)] for fp in fingerprints
                     if fp.startswith("gate:") and fp.endswith(end))
