"""Requests to push the user's 24-task plan (plans/workflow.yaml) into a GitHub repository that
already has 500 issues, against the floor: the pages to list them once plus one create per
missing task.

The git-backed fake GitHub (tests/fake_github.py) over real HTTP, PyGithub as ao uses it.

Run: python benchmarks/push.py [--existing 500]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from tests.fake_github import serve  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--existing", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ao-bench-push-") as tmp:
        os.environ.update(AO_HOME=str(Path(tmp) / "ao"), HOME=tmp)
        from ao.config import ProjectConfig
        from ao.decide.plan import load_valid
        from ao.record.store import Store
        from ao.world.forge.github import GitHubForge, push_plan

        plan = load_valid(REPO / "plans" / "workflow.yaml")
        with serve() as fake:
            repo = fake.add_repo("acme/workflow", Path(tmp) / "none.git")
            for i in range(args.existing):
                fake.add_issue(repo, f"an older issue {i}")
            project = ProjectConfig(name="workflow", path=Path(tmp), repo="acme/workflow",
                                    forge="github")
            forge = GitHubForge(project, Store(), "token", base_url=fake.url)
            fake.counts.clear()
            push_plan(forge, plan, Store())
            value = fake.counts["total"]
            again_before = value
            push_plan(GitHubForge(project, Store(), "token", base_url=fake.url), plan, Store())
            rerun = fake.counts["total"] - again_before
    pages = math.ceil(args.existing / 100) + (1 if args.existing % 100 == 0 else 0)
    floor = pages + len(plan.tasks)
    print(f"{'existing issues':<34}{args.existing:>6}")
    print(f"{'floor (list pages + creates)':<34}{floor:>6}")
    print(f"{'ao plan push, requests':<34}{value:>6}")
    print(f"{'ao plan push again, requests':<34}{rerun:>6}  (nothing to create)")
    print(json.dumps({"benchmark": "push", "metric": "requests to push 24 tasks",
                      "unit": "requests", "value": value, "baseline": floor,
                      "ratio": round(value / floor, 3), "target": 1.2, "target_on": "ratio"}))


if __name__ == "__main__":
    main()
