"""Turn a planning document (markdown) into a plan.

What it reads, all optional but the graph:
- a mermaid `graph TD` / `flowchart` block: `A[label] --> B[label]` edges (chains too), where an
  edge `A --> B` means B depends on A;
- a markdown table with a key column and a title column (and an estimate column), or lines with
  bracketed keys, `[AUTH-001] Implement JWT ...`, for titles and estimates;
- `ao batch-spawn PROJECT KEY...` command lines, which become the plan's explicit waves (checked
  against the graph like any waves) and give the default project;
- where each task will write, for the overlap rule (overlap.py): a `Files:` line under a task
  (after a heading or line naming its key), or a `files` column in its table row; paths or
  globs, comma-separated, backticks allowed.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from ao.decide.plan import Plan, Task, parse, to_yaml
from ao.errors import PlanError

KEY = r"[A-Z][A-Z0-9]*-\d+"
_NODE = re.compile(rf"({KEY})\s*(?:\[([^\]]*)\]|\(([^)]*)\)|\{{([^}}]*)\}})?")
_EDGE = re.compile(r"\s*-{2,}>\s*|\s*={2,}>\s*|\s*-\.->\s*")
_BRACKETED = re.compile(rf"\[({KEY})\]\s+(.+?)\s*$")
_BATCH = re.compile(r"\bao\s+batch-spawn\s+(\S+)((?:\s+" + KEY + r")+)")
_ESTIMATE = re.compile(r"(\d+(?:\.\d+)?(?:\s*-\s*\d+(?:\.\d+)?)?)\s*(hours?|h|days?|d|weeks?|w)\b",
                       re.IGNORECASE)


def _mermaid_blocks(text: str) -> list[str]:
    blocks = re.findall(r"```mermaid\s*\n(.*?)```", text, flags=re.DOTALL)
    return [b for b in blocks if re.match(r"\s*(graph|flowchart)\b", b)]


def _estimate(cell: str) -> str | None:
    m = _ESTIMATE.search(cell)
    if not m:
        return None
    unit = m.group(2).lower()[0]
    return re.sub(r"\s+", "", m.group(1)) + unit


def _table_rows(text: str) -> dict[str, tuple[str, str | None]]:
    """key -> (title, estimate) from markdown tables whose first cell is a task key."""
    rows: dict[str, tuple[str, str | None]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not re.fullmatch(KEY, cells[0]):
            continue
        estimate = next((e for e in (_estimate(c) for c in cells[2:]) if e), None)
        rows[cells[0]] = (cells[1], estimate)
    for line in text.splitlines():
        m = _BRACKETED.search(line)
        if m and m.group(1) not in rows:
            rest = m.group(2)
            est = _estimate(rest)
            title = re.sub(r"\s*[(\u2014-]\s*\d.*$", "", rest).strip() if est else rest
            rows[m.group(1)] = (title, est)
    return rows


_FILES_LINE = re.compile(r"^\s*(?:[-*]\s*)?(?:\*\*|__)?files(?:\*\*|__)?\s*:\s*(?:\*\*)?\s*(.+)$",
                         re.IGNORECASE)


def _paths(cell: str) -> tuple[str, ...]:
    return tuple(p for p in (x.strip().strip("`").strip() for x in re.split(r"[,;]", cell))
                 if p and p not in ("-", "—"))


def _files(text: str) -> dict[str, tuple[str, ...]]:
    """key -> the paths a `Files:` line under it (or its table row's files column) names."""
    out: dict[str, tuple[str, ...]] = {}
    current: str | None = None
    column: int | None = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.strip().startswith("|"):
            column = None  # a table ended: its files column with it
        if line.strip().startswith("|") and any(c.lower() == "files" for c in cells):
            column = [c.lower() for c in cells].index("files")  # a table's header row
            continue
        if line.strip().startswith("|") and column is not None and len(cells) > column \
                and re.fullmatch(KEY, cells[0]) and _paths(cells[column]):
            out[cells[0]] = _paths(cells[column])
            continue
        m = _FILES_LINE.match(line)
        if m and current is not None:
            out[current] = (*out.get(current, ()), *_paths(m.group(1)))
            continue
        named = re.search(rf"^\s*(?:#+\s*|[-*]\s*)?\[?({KEY})\b", line)
        if named:
            current = named.group(1)
        elif line.lstrip().startswith("#"):
            current = None  # a heading of no task: what follows is not a task's
    return out


def import_markdown(text: str, source: str = "document") -> Plan:
    blocks = _mermaid_blocks(text)
    if not blocks:
        raise PlanError(f"{source}: no mermaid `graph TD` block found",
                        "the document needs a ```mermaid graph TD``` dependency diagram")
    deps: dict[str, list[str]] = {}
    labels: dict[str, str] = {}
    for block in blocks:
        for line in block.splitlines()[1:]:
            for a, b in itertools.pairwise(_chain(line, deps, labels)):
                if a not in deps[b]:
                    deps[b].append(a)
    table = _table_rows(text)
    files = _files(text)
    keys = list(dict.fromkeys([*table, *deps]))
    tasks = {}
    for key in keys:
        title, estimate = table.get(key, (labels.get(key, key), None))
        tasks[key] = Task(key=key, title=title, deps=tuple(deps.get(key, ())), estimate=estimate,
                          files=files.get(key, ()))
    waves: list[tuple[str, ...]] = []
    project = None
    for m in _BATCH.finditer(text):
        project = project or m.group(1)
        waves.append(tuple(m.group(2).split()))
    plan = Plan(tasks=tasks, waves=tuple(waves) if waves else None, project=project)
    # round-trip through the parser so the result carries the same checks as a written plan
    return parse(to_yaml(plan), Path(source))


def _chain(line: str, deps: dict[str, list[str]], labels: dict[str, str]) -> list[str]:
    """The nodes of one mermaid line (`A --> B[label] --> C`), in order, up to the first part
    that is not a node; each node is entered in `deps` and its first label in `labels`."""
    nodes: list[str] = []
    for part in _EDGE.split(line.split("%%")[0].strip()):
        m = _NODE.match(part.strip())
        if not m:
            break
        key = m.group(1)
        label = next((g for g in m.groups()[1:] if g), None)
        if label:
            labels.setdefault(key, label.strip().strip('"'))
        deps.setdefault(key, [])
        nodes.append(key)
    return nodes


def import_file(path: Path) -> Plan:
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
        raise PlanError(f"cannot read {path}", "give a markdown document") from None
    return import_markdown(text, str(path))
