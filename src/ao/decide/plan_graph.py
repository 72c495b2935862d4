"""A plan's dependency graph: cycles, waves (layers), the critical path, a simulated
schedule, and the checks of hand-written waves against the graph."""

from __future__ import annotations

import graphlib
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ao.decide import overlap
from ao.errors import PlanError

if TYPE_CHECKING:
    from ao.decide.plan import Plan


@dataclass(frozen=True)
class Problem:
    kind: str  # unknown-dep, self-dep, cycle, unsafe-key, duplicate-key, wave, ...
    task: str
    message: str

    def __str__(self) -> str:
        return self.message


# ---------------------------------------------------------------------------------


def find_cycles(plan: Plan) -> list[list[str]]:
    """One cycle per strongly connected component that has one, in plan order."""
    order = list(plan.tasks)

    def deps(k: str) -> list[str]:
        return [d for d in plan.tasks[k].deps if d in plan.tasks and d != k]

    return [_cycle_in(comp, deps, order) for comp in components(order, deps)]


def components(order: list[str], deps: Callable[[str], list[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's, without
    recursion: a plan may be a long chain): a plan's cycles, and the import graph's
    circles (tests/test_layers.py)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []
    for root in order:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            ds = deps(node)
            if i < len(ds):
                work.append((node, i + 1))
                nxt = ds[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            for d in ds:
                if d in on_stack:
                    low[node] = min(low[node], low[d])
            if low[node] == index[node]:
                comp = _pop_component(stack, on_stack, node)
                if len(comp) > 1:
                    comps.append(comp)
    return comps


def _pop_component(stack: list[str], on_stack: set[str], node: str) -> list[str]:
    comp = []
    while True:
        w = stack.pop()
        on_stack.discard(w)
        comp.append(w)
        if w == node:
            return comp


def _cycle_in(comp: list[str], deps: Callable[[str], list[str]], order: list[str]) -> list[str]:
    """A cycle through the component, walked along dependencies from its first task in plan
    order, printed in the direction work flows (dependency first) from the task that comes
    first in the plan."""
    members = set(comp)
    start = min(comp, key=order.index)
    path = [start]
    seen = {start: 0}
    node = start
    while True:
        node = next(d for d in deps(node) if d in members)
        if node in seen:
            cyc = list(reversed(path[seen[node]:]))
            first = min(range(len(cyc)), key=lambda i: order.index(cyc[i]))
            return cyc[first:] + cyc[:first]
        seen[node] = len(path)
        path.append(node)


def _require_dag(plan: Plan) -> None:
    errors = plan.graph_problems()
    if errors:
        raise PlanError(f"the plan's graph is not usable: {errors[0]}", "run `ao plan check`")


def layers(plan: Plan) -> list[list[str]]:
    """Topological layers: a task sits one layer after its deepest dependency."""
    _require_dag(plan)
    depth: dict[str, int] = {}
    for key in topo_order(plan):
        deps = plan.tasks[key].deps
        depth[key] = 1 + max((depth[d] for d in deps), default=-1)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for key in plan.tasks:
        out[depth[key]].append(key)
    return out


def topo_order(plan: Plan) -> list[str]:
    """Every task after its dependencies; among tasks ready together, plan order (each task
    is known to the sorter in plan order before any edge is)."""
    ts: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for key in plan.tasks:
        ts.add(key)
    for key, task in plan.tasks.items():
        ts.add(key, *(d for d in task.deps if d in plan.tasks and d != key))
    try:
        return list(ts.static_order())
    except graphlib.CycleError as e:
        raise PlanError(f"the plan's graph has a cycle: {' -> '.join(e.args[1])}",
                        "run `ao plan check`") from None


def tails(plan: Plan) -> dict[str, float]:
    """Length of the longest chain starting at each task (its own days included)."""
    _require_dag(plan)
    dependents = plan.dependents()
    tail: dict[str, float] = {}
    for key in reversed(topo_order(plan)):
        tail[key] = plan.tasks[key].days + max((tail[d] for d in dependents[key]), default=0.0)
    return tail


def priority_order(plan: Plan, keys: Iterable[str]) -> list[str]:
    """Critical-path-first: longest remaining chain first, then plan order."""
    tail = tails(plan)
    pos = {k: i for i, k in enumerate(plan.tasks)}
    return sorted(keys, key=lambda k: (-tail[k], pos[k]))


def critical_path(plan: Plan) -> tuple[list[str], float]:
    tail = tails(plan)
    if not tail:
        return [], 0.0
    dependents = plan.dependents()
    roots = [k for k in plan.tasks if not plan.tasks[k].deps]
    path = [priority_order(plan, roots)[0]]
    while dependents[path[-1]]:
        path.append(priority_order(plan, dependents[path[-1]])[0])
    return path, tail[path[0]]


def total_work(plan: Plan) -> float:
    return sum(t.days for t in plan.tasks.values())


def simulate(plan: Plan, max_concurrent: int, apart: bool = False) -> float:
    """Makespan when each task starts as soon as its own deps are done, critical-path-first;
    with `apart`, a task off the critical path is held while a running one shares its
    `files:` (overlap.py's rule, `overlap: wait`)."""
    return _simulate(plan, list(plan.tasks), max_concurrent, apart)


def overlaps(plan: Plan) -> list[tuple[str, str, str]]:
    """Pairs of tasks that may run at once (neither waits for the other) and share files:
    (first, second, the path or glob they share)."""
    before = _ancestors(plan)
    keys = [k for k in plan.tasks if plan.tasks[k].files]
    out = []
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if a in before[b] or b in before[a]:
                continue  # one waits for the other: they never run together
            shared = overlap.meets(plan.tasks[a].files, plan.tasks[b].files)
            if shared is not None:
                out.append((a, b, shared))
    return out


def _ancestors(plan: Plan) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}

    def of(k: str) -> set[str]:
        if k not in out:
            out[k] = set()
            for d in plan.tasks[k].deps:
                if d in plan.tasks:
                    out[k] |= {d} | of(d)
        return out[k]

    for k in plan.tasks:
        of(k)
    return out


def simulate_waves(plan: Plan, max_concurrent: int) -> float | None:
    """Makespan when the explicit waves run as barriers, as a phase-by-phase user runs them.

    Inside a wave a task still waits for its own dependencies: work started on top of code
    that does not exist yet is not progress, so contradictory waves cost time here.
    """
    if plan.waves is None:
        return None
    return sum(_simulate(plan, [k for k in w if k in plan.tasks], max_concurrent)
               for w in plan.waves)


def _simulate(plan: Plan, keys: list[str], max_concurrent: int, apart: bool = False) -> float:
    """List scheduling of `keys`; dependencies outside `keys` count as already done."""
    if max_concurrent < 1:
        raise PlanError("max concurrent must be at least 1", "e.g. --max-concurrent 5")
    tail = tails(plan)
    pos = {k: i for i, k in enumerate(plan.tasks)}
    dependents, waiting = _within(plan, set(keys))
    ready = [(-tail[k], pos[k], k) for k, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int, str]] = []
    now = 0.0
    crit = set(critical_path(plan)[0]) if apart else set()
    while ready or running:
        held = []
        while ready and len(running) < max_concurrent:
            item = heapq.heappop(ready)
            k = item[2]
            files = plan.tasks[k].files
            if apart and files and k not in crit and any(
                    overlap.meets(files, plan.tasks[r].files) for _, _, r in running):
                held.append(item)  # waits for the task writing its files
                continue
            heapq.heappush(running, (now + plan.tasks[k].days, pos[k], k))
        for item in held:
            heapq.heappush(ready, item)
        now, _, done = heapq.heappop(running)
        for d in _released(dependents[done], waiting):
            heapq.heappush(ready, (-tail[d], pos[d], d))
    return now


def _within(plan: Plan, members: set[str]) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Each task's dependents among `members`, and how many of its dependencies are members."""
    dependents = {k: [d for d in ds if d in members] for k, ds in plan.dependents().items()}
    waiting = {k: sum(1 for d in plan.tasks[k].deps if d in members) for k in members}
    return dependents, waiting


def _released(dependents: list[str], waiting: dict[str, int]) -> list[str]:
    """The dependents a finished task leaves with nothing to wait for."""
    for d in dependents:
        waiting[d] -= 1
    return [d for d in dependents if waiting[d] == 0]


def wave_problems(plan: Plan) -> list[Problem]:
    assert plan.waves is not None
    problems: list[Problem] = []
    wave_of: dict[str, int] = {}
    for i, wave in enumerate(plan.waves, start=1):
        for k in wave:
            if k not in plan.tasks:
                problems.append(Problem("wave", k, f"wave {i}: unknown task {k}"))
            elif k in wave_of:
                problems.append(Problem("wave", k, f"{k}: in wave {wave_of[k]} and wave {i}"))
            else:
                wave_of[k] = i
    for k in plan.tasks:
        if k not in wave_of:
            problems.append(Problem("wave", k, f"{k}: in no wave"))
    for t in plan.tasks.values():
        for d in t.deps:
            if t.key in wave_of and d in wave_of and wave_of[t.key] <= wave_of[d]:
                same = wave_of[t.key] == wave_of[d]
                where = "the same wave as" if same else "an earlier wave than"
                problems.append(Problem(
                    "wave", t.key,
                    f"{t.key}: in wave {wave_of[t.key]}, {where} {d} (wave {wave_of[d]}), "
                    f"which it depends on",
                ))
    return problems


def summary(plan: Plan, max_concurrent: int) -> dict[str, Any]:
    """The figures `ao plan show` prints (and `--json` emits)."""
    path, length = critical_path(plan)
    return {
        "tasks": len(plan.tasks),
        "layers": layers(plan),
        "critical_path": {"tasks": path, "length": length},
        "total_work": total_work(plan),
        "overlaps": [{"tasks": [a, b], "shares": f} for a, b, f in overlaps(plan)],
        "makespan": {
            "dependency_driven": simulate(plan, max_concurrent),
            "with_overlap_holds": simulate(plan, max_concurrent, apart=True),
            "waves_as_barriers": simulate_waves(plan, max_concurrent),
            "max_concurrent": max_concurrent,
        },
        "wave_problems": [p.message for p in plan.problems if p.kind == "wave"],
    }
