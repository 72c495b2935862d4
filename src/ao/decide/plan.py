"""Plans: tasks and the dependency graph between them. Pure: parsing, checks, layers,
critical path and makespan simulation. No I/O beyond reading the plan file.

Figures are in days. An estimate given as a range (`3-4d`) counts as its upper bound; hours
count as a working day of 8 hours, weeks as 5 days; a task without estimate counts as 1 day.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ao import yamlio
from ao.decide import steps as steps_mod

# the graph's questions (plan_graph.py), asked of plans everywhere as plan.X
from ao.decide.plan_graph import Problem as Problem
from ao.decide.plan_graph import critical_path as critical_path
from ao.decide.plan_graph import find_cycles as find_cycles
from ao.decide.plan_graph import layers as layers
from ao.decide.plan_graph import priority_order as priority_order
from ao.decide.plan_graph import simulate as simulate
from ao.decide.plan_graph import simulate_waves as simulate_waves
from ao.decide.plan_graph import summary as summary
from ao.decide.plan_graph import tails as tails
from ao.decide.plan_graph import topo_order as topo_order
from ao.decide.plan_graph import total_work as total_work
from ao.decide.plan_graph import wave_problems as wave_problems
from ao.errors import BadInput, PlanError

if TYPE_CHECKING:
    from ao.decide.steps import Step

HOURS_PER_DAY = 8.0
DEFAULT_DAYS = 1.0
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ESTIMATE = re.compile(
    r"^\s*(\d+(?:\.\d+)?)(?:\s*-\s*(\d+(?:\.\d+)?))?\s*"
    r"(h|hr|hrs|hours?|d|days?|w|wk|weeks?)\s*$",
    re.IGNORECASE,
)
_TASK_KEYS = ("title", "body", "deps", "estimate", "agent", "steps", "files")
_PLAN_KEYS = ("project", "tasks", "waves", "context", "decisions", "defaults", "budget_usd")
_DEFAULT_KEYS = ("steps",)


@dataclass(frozen=True)
class Task:
    key: str
    title: str
    body: str = ""
    deps: tuple[str, ...] = ()
    estimate: str | None = None
    agent: str | None = None
    steps: tuple[Step, ...] | None = None  # None: the plan's default steps
    files: tuple[str, ...] = ()  # where it will write: paths or globs (overlap.py)

    @property
    def days(self) -> float:
        return estimate_days(self.estimate)




@dataclass(frozen=True)
class Plan:
    tasks: dict[str, Task]
    waves: tuple[tuple[str, ...], ...] | None = None
    project: str | None = None
    context: tuple[str, ...] = ()
    decisions: tuple[str, ...] = ()
    source: Path | None = None
    problems: tuple[Problem, ...] = field(default=(), compare=False)
    default_steps: tuple[Step, ...] = steps_mod.DEFAULT
    budget_usd: float | None = None  # what its tasks' agents may spend; then nothing starts

    def steps(self, key: str) -> tuple[Step, ...]:
        """The steps of a task's work (docs/steps.md): its own, else the plan's default."""
        t = self.tasks.get(key)
        return (t.steps if t is not None and t.steps is not None else None) or \
            self.default_steps

    def graph_problems(self) -> list[Problem]:
        return [p for p in self.problems if p.kind != "wave"]

    def dependents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {k: [] for k in self.tasks}
        for t in self.tasks.values():
            for d in t.deps:
                if d in out:
                    out[d].append(t.key)
        return out


def estimate_days(estimate: str | None) -> float:
    if estimate is None:
        return DEFAULT_DAYS
    m = _ESTIMATE.match(estimate)
    if not m:
        raise PlanError(f"estimate {estimate!r} is not understood", "write e.g. 3-4d, 2d, 6h, 1w")
    value = float(m.group(2) or m.group(1))
    unit = m.group(3).lower()[0]
    return value / HOURS_PER_DAY if unit == "h" else value * 5 if unit == "w" else value


MAX_TASKS = 1000  # a plan beyond this is a mistake (docs/plans.md)


def normalize_key(raw: object) -> str:
    """`#123` and `123` name issue 123; keys are kept as written otherwise."""
    key = str(raw).strip()
    return key[1:] if key.startswith("#") and key[1:].isdigit() else key


def is_safe_key(key: str) -> bool:
    return bool(_SAFE_KEY.match(key)) and ".." not in key and not key.endswith((".lock", "."))


# ---- parsing -------------------------------------------------------------------------------


def parse(text: str, source: Path | None = None) -> Plan:
    """Parse a plan. Structural errors raise PlanError; graph problems are collected on the plan."""
    where = str(source) if source else "plan"
    data, duplicates = _document(text, where)
    problems = [
        Problem("duplicate-key", normalize_key(k), f"{normalize_key(k)}: defined twice (line {ln})")
        for k, ln in duplicates
    ]
    tasks = _tasks(data["tasks"], where, problems)
    problems += _dep_problems(tasks)
    plan = Plan(
        tasks=tasks,
        waves=_waves(data.get("waves"), where),
        project=None if data.get("project") is None else str(data["project"]),
        context=tuple(str(c) for c in data.get("context") or ()),
        decisions=tuple(str(c) for c in data.get("decisions") or ()),
        source=source,
        default_steps=_defaults(data.get("defaults"), where),
        budget_usd=_budget(data.get("budget_usd"), where),
    )
    problems += [Problem("cycle", c[0], "cycle: " + " -> ".join([*c, c[0]]))
                 for c in find_cycles(plan)]
    if plan.waves is not None:
        problems += wave_problems(plan)
    return replace(plan, problems=tuple(problems))


def _budget(raw: object, where: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw <= 0:
        raise PlanError(f"{where}: budget_usd must be a positive number of dollars, not "
                        f"{raw!r}", "e.g. `budget_usd: 40`")
    return float(raw)


def _document(text: str, where: str) -> tuple[Mapping[str, Any], list[tuple[Any, int]]]:
    """The plan's YAML as a mapping with its keys checked and a non-empty `tasks:`, and the
    keys written twice (with their lines)."""
    try:
        data, duplicates = yamlio.load(text)
    except yamlio.YamlRefused as e:
        raise PlanError(f"{where}: {e}", "see docs/plans.md") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise PlanError(f"{where}{line}: not valid YAML", "fix the syntax") from None
    if not isinstance(data, Mapping) or "tasks" not in data:
        raise PlanError(f"{where}: a plan is a mapping with a `tasks:` key", "see docs/plans.md")
    for key in data:
        if key not in _PLAN_KEYS:
            raise PlanError(f"{where}: unknown key `{key}`", f"valid keys: {', '.join(_PLAN_KEYS)}")
    raw_tasks = data["tasks"]
    if not isinstance(raw_tasks, Mapping) or not raw_tasks:
        raise PlanError(f"{where}: `tasks` must map task keys to tasks", "see docs/plans.md")
    if len(raw_tasks) > MAX_TASKS:
        raise PlanError(f"{where}: {len(raw_tasks)} tasks; a plan holds at most {MAX_TASKS}",
                        "split it into several plans")
    return data, list(duplicates)


def _tasks(raw_tasks: Mapping[Any, Any], where: str, problems: list[Problem]) -> dict[str, Task]:
    """The tasks by key; unsafe keys and keys that name the same branch go to `problems`."""
    tasks: dict[str, Task] = {}
    branches: dict[str, str] = {}
    for raw_key, spec in raw_tasks.items():
        key = normalize_key(raw_key)
        if not is_safe_key(key):
            problems.append(Problem("unsafe-key", key, f"{key!r}: not safe as a branch or folder "
                                    "name (letters, digits, '.', '_', '-'; no '..')"))
        # `1` and `#1`, `X-1` and `x-1`: different keys, one branch (ao/x-1) and one session
        slug = key.lower()
        if slug in branches:
            problems.append(Problem("duplicate-key", key,
                                    f"{raw_key}: the same task as {branches[slug]} (keys must "
                                    "differ by more than case or a leading '#')"))
            continue
        branches[slug] = str(raw_key)
        tasks[key] = _task(key, spec, where)
    return tasks


def _dep_problems(tasks: dict[str, Task]) -> list[Problem]:
    out = []
    for t in tasks.values():
        for d in t.deps:
            if d == t.key:
                out.append(Problem("self-dep", t.key, f"{t.key}: depends on itself"))
            elif d not in tasks:
                out.append(Problem("unknown-dep", t.key, f"{t.key}: depends on unknown task {d}"))
    return out


def _task(key: str, spec: Any, where: str) -> Task:
    if isinstance(spec, str):
        spec = {"title": spec}
    if not isinstance(spec, Mapping):
        raise PlanError(f"{where}: task {key} must be a mapping with a title", "see docs/plans.md")
    for k in spec:
        if k not in _TASK_KEYS:
            raise PlanError(f"{where}: task {key} has unknown key `{k}`",
                            f"valid keys: {', '.join(_TASK_KEYS)}")
    title = spec.get("title")
    if not title or not isinstance(title, str):
        raise PlanError(f"{where}: task {key} has no title", "add `title: ...`")
    agent = spec.get("agent")
    return Task(
        key=key,
        title=title.strip(),
        body=str(spec.get("body") or "").strip(),
        deps=_deps(spec.get("deps"), f"{where}: task {key}"),
        estimate=_task_estimate(spec.get("estimate"), f"{where}: task {key}"),
        agent=None if agent is None else str(agent),
        steps=None if spec.get("steps") is None else _steps(spec["steps"], f"{where}: task {key}"),
        files=_files(spec.get("files"), f"{where}: task {key}"),
    )


def _files(raw: Any, where: str) -> tuple[str, ...]:
    files = [raw] if isinstance(raw, str) else raw or []
    if not isinstance(files, list) or not all(isinstance(f, str) and f.strip() for f in files):
        raise PlanError(f"{where}: `files` must be a list of paths or globs",
                        "e.g. [src/web/*.tsx, src/api/routes.py]")
    return tuple(f.strip() for f in files)


def _deps(raw: Any, where: str) -> tuple[str, ...]:
    deps = raw or []
    if isinstance(deps, str | int):
        deps = [deps]
    if not isinstance(deps, list):
        raise PlanError(f"{where}: `deps` must be a list of task keys", "e.g. [DB-001]")
    return tuple(dict.fromkeys(normalize_key(d) for d in deps))


def _task_estimate(raw: Any, where: str) -> str | None:
    if raw is None:
        return None
    try:
        estimate_days(str(raw))
    except PlanError as e:
        raise PlanError(f"{where}: {e.message}", e.hint) from None
    return str(raw)


def _steps(raw: Any, where: str) -> tuple[Step, ...]:
    try:
        return steps_mod.parse(raw, where)
    except BadInput as e:
        raise PlanError(e.message, e.hint) from None


def _defaults(raw: Any, where: str) -> tuple[Step, ...]:
    if raw is None:
        return steps_mod.DEFAULT
    if not isinstance(raw, Mapping):
        raise PlanError(f"{where}: `defaults` must be a mapping", "e.g. defaults: {steps: "
                        "[implement, review]}")
    for k in raw:
        if k not in _DEFAULT_KEYS:
            raise PlanError(f"{where}: defaults has unknown key `{k}`",
                            f"valid keys: {', '.join(_DEFAULT_KEYS)}")
    return _steps(raw.get("steps"), f"{where}: defaults")


def _waves(raw: Any, where: str) -> tuple[tuple[str, ...], ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(w, list) for w in raw):
        raise PlanError(f"{where}: `waves` must be a list of lists of task keys",
                        "e.g. waves: [[DB-001], [AUTH-001, USERS-001]]")
    return tuple(tuple(normalize_key(k) for k in w) for w in raw)


def load(path: Path) -> Plan:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"no plan file {path}",
                        "check the path; plans live in plans/*.yaml") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise PlanError(f"{path} is not a readable plan file", "give a YAML file") from None
    return parse(text, path)


def load_valid(path: Path) -> Plan:
    """A plan whose graph can be scheduled: no unknown deps, cycles or unsafe keys."""
    plan = load(path)
    errors = plan.graph_problems()
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise PlanError(f"{path}: {errors[0]}{more}", f"run `ao plan check {path}`")
    return plan


def to_yaml(plan: Plan) -> str:
    """Write a plan back as YAML in the documented format (one flow mapping per short task)."""
    out: list[str] = []
    if plan.project:
        out.append(f"project: {_dump(plan.project)}")
    out.append("tasks:")
    for t in plan.tasks.values():
        spec: dict[str, Any] = {"title": t.title}
        if t.deps:
            spec["deps"] = list(t.deps)
        if t.estimate:
            spec["estimate"] = t.estimate
        if t.agent:
            spec["agent"] = t.agent
        if t.files:
            spec["files"] = list(t.files)
        if t.body:
            spec["body"] = t.body
            block = yaml.safe_dump({t.key: spec}, sort_keys=False, width=100, allow_unicode=True)
            out.extend("  " + line for line in block.splitlines())
        else:
            out.append(f"  {_dump(t.key)}: {_dump(spec)}")
    for name, items in (("context", plan.context), ("decisions", plan.decisions)):
        if items:
            out.append(yaml.safe_dump({name: list(items)}, sort_keys=False, width=100).rstrip())
    if plan.waves:
        out.append("waves:")
        out.extend(f"  - {_dump(list(w))}" for w in plan.waves)
    return "\n".join(out) + "\n"


def _dump(value: Any) -> str:
    text: str = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=float("inf"),
                               allow_unicode=True)
    return text.strip().removesuffix("...").strip()
