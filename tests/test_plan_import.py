from __future__ import annotations

from pathlib import Path

import pytest

from ao.decide import plan as planmod
from ao.decide.plan_import import import_markdown
from ao.errors import PlanError

from .helpers import run_ao

DOC = """\
# Shop rebuild

| key | title | estimate |
|---|---|---|
| API-001 | Build the catalogue API | 2-3 days |
| WEB-001 | Catalogue pages | 3 days |
| OPS-001 | Deploy pipeline | 1-2 days |

Also planned: [PAY-001] Payment provider integration (4-5 days)

```mermaid
graph TD
    API-001[Catalogue API] --> WEB-001[Pages]
    API-001 --> PAY-001[Payments] --> OPS-001
    WEB-001 --> OPS-001
```

Phases:
1. `ao batch-spawn shop API-001 WEB-001`
2. `ao batch-spawn shop PAY-001 OPS-001`
"""


def test_import_reads_table_brackets_graph_and_phases() -> None:
    p = import_markdown(DOC)
    assert list(p.tasks) == ["API-001", "WEB-001", "OPS-001", "PAY-001"]
    assert p.tasks["WEB-001"].title == "Catalogue pages"
    assert p.tasks["PAY-001"].title == "Payment provider integration"
    assert p.tasks["PAY-001"].estimate == "4-5d"
    assert p.tasks["OPS-001"].deps == ("PAY-001", "WEB-001")
    assert p.tasks["PAY-001"].deps == ("API-001",)
    assert p.project == "shop"
    assert p.waves == (("API-001", "WEB-001"), ("PAY-001", "OPS-001"))
    assert sorted(x.task for x in p.problems) == ["OPS-001", "WEB-001"]


def test_import_needs_a_graph() -> None:
    with pytest.raises(PlanError, match="no mermaid"):
        import_markdown("# nothing here\n")


def test_import_command_writes_a_plan_that_checks(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(DOC.replace("1. `ao batch-spawn shop API-001 WEB-001`\n2. `ao batch-spawn "
                               "shop PAY-001 OPS-001`\n", ""))
    out = tmp_path / "plans" / "shop.yaml"
    r = run_ao("plan", "import", str(doc), "-o", str(out))
    assert r.code == 0, r.err
    assert planmod.load(out).problems == ()
    assert run_ao("plan", "check", str(out)).code == 0
    again = run_ao("plan", "import", str(doc), "-o", str(out))
    assert again.code == 2 and "already exists" in again.err


def test_files_from_the_document_feed_the_overlap_rule(tmp_path: Path) -> None:
    """Where each task will write, from the document: a `Files:` line under the task, or a
    files column in its table row; the imported plan carries them, and `ao plan show` names
    the tasks that share them."""
    doc = tmp_path / "plan.md"
    doc.write_text(
        "```mermaid\ngraph TD\n  FE-001 --> FE-003\n  BE-001\n  FE-002\n```\n\n"
        "| Key | Title | Estimate | Files |\n|---|---|---|---|\n"
        "| FE-001 | Login page | 2d | `src/web/app.tsx`, `src/web/login/*` |\n"
        "| BE-001 | API | 3d | src/api/** |\n\n"
        "### FE-002 Settings page\n\nSome text.\n\n**Files:** `src/web/app.tsx`\n\n"
        "### FE-003 Profile\n\n- Files: src/web/profile.tsx\n\n"
        "## Risks\n\nFiles: nothing of a task's\n\n"  # a heading of no task: not FE-003's
        "| Key | Risk | Owner |\n|---|---|---|\n| BE-001 | slow | alice |\n")  # no files column
    out = tmp_path / "plan.yaml"
    r = run_ao("plan", "import", str(doc), "-o", str(out))
    assert r.code == 0, r.err
    from ao.decide.plan import load

    p = load(out)
    assert p.tasks["FE-001"].files == ("src/web/app.tsx", "src/web/login/*")
    assert p.tasks["BE-001"].files == ("src/api/**",)
    assert p.tasks["FE-002"].files == ("src/web/app.tsx",)
    assert p.tasks["FE-003"].files == ("src/web/profile.tsx",)
    shown = run_ao("plan", "show", str(out))
    assert "FE-001 and FE-002 share src/web/app.tsx" in shown.out, shown.out
