"""Requests per steady-state poll: ao's GitHub forge versus naive per-PR REST polling.

24 sessions with open PRs on the git-backed fake GitHub (tests/fake_github.py), reached over
real HTTP by PyGithub. ao: one `GitHubForge.poll` of all 24 branches. Naive, measured in the
same run: for each PR, GET the PR, its check runs, its combined status and its reviews.

Run: python benchmarks/poll.py [--prs 24] [--polls 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fake_github import FakeGitHub, serve  # noqa: E402

from sandbox import git, sandbox  # noqa: E402

TARGET = 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prs", type=int, default=24)
    ap.add_argument("--polls", type=int, default=5)
    args = ap.parse_args()
    with sandbox("ao-bench-poll-") as sb:
        bare, work = sb.bare, sb.work
        branches = []
        for i in range(args.prs):
            b = f"ao/task-{i}"
            git(work, "checkout", "-q", "-b", b, "main")
            (work / f"f{i}.txt").write_text(str(i))
            git(work, "add", "-A")
            git(work, "commit", "-q", "-m", b)
            git(work, "push", "-q", "origin", b)
            branches.append(b)

        from ao.config import ProjectConfig
        from ao.record.store import Store
        from ao.world.forge.github import GitHubForge

        with serve(FakeGitHub()) as fake:
            repo = fake.add_repo("acme/workflow", bare)
            project = ProjectConfig(name="workflow", path=work, repo="acme/workflow",
                                    forge="github")
            forge = GitHubForge(project, Store(), "bench-token", base_url=fake.url)
            for i, b in enumerate(branches):
                pr = forge.create_pr(b, f"[T-{i}] task {i}", "")
                fake.add_check_run(repo, pr.head_sha, "tests", "success")
                fake.add_status(repo, pr.head_sha, "lint", "success")
            forge.poll(branches)  # warm-up, as a running daemon is
            ours = []
            for _ in range(args.polls):
                fake.counts.clear()
                result = forge.poll(branches)
                assert not result.errors and all(result.prs.values())
                ours.append(fake.counts["total"])
            # naive: what a per-PR REST poller spends for the same facts
            gh = forge.gh
            r = gh.get_repo("acme/workflow")
            naive = []
            for _ in range(args.polls):
                fake.counts.clear()
                for pull in r.get_pulls(state="open"):
                    full = r.get_pull(pull.number)
                    commit = r.get_commit(full.head.sha)
                    list(commit.get_check_runs())
                    commit.get_combined_status()
                    list(full.get_reviews())
                naive.append(fake.counts["total"])
    value, baseline = max(ours), min(naive)
    print(f"{'poller':<28}{'requests per poll':>20}")
    print(f"{'ao (GraphQL, one query)':<28}{value:>20}")
    print(f"{'naive REST per PR':<28}{baseline:>20}")
    print(f"{args.prs} PRs; ao uses {value} request(s) per poll, naive uses {baseline} "
          f"({baseline / value:.0f}x more); target <= {TARGET}")
    print(json.dumps({"benchmark": "poll", "metric": f"requests per poll, {args.prs} PRs",
                      "unit": "requests", "value": value, "baseline": baseline,
                      "ratio": round(value / baseline, 4), "target": TARGET,
                      "target_on": "value"}))


if __name__ == "__main__":
    main()
