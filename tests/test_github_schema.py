"""Every GraphQL document ao sends, validated against GitHub's published schema (the npm
package @octokit/graphql-schema, installed by .ci/run; graphql-core validates)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ao.world.forge import github, github_queue


def _schema_file() -> Path | None:
    env = os.environ.get("AO_GITHUB_SCHEMA")
    candidates = [Path(env)] if env else []
    cache = Path(os.environ.get("AO_CI_CACHE", Path.home() / ".cache" / "ao-ci"))
    candidates += sorted(cache.glob("graphql-schema*/node_modules/@octokit/graphql-schema/"
                                    "schema.graphql"))
    return next((c for c in candidates if c.is_file()), None)


def documents() -> list[tuple[str, str]]:
    branches = 3
    params = ", ".join(f"$h{i}: String!" for i in range(branches))
    fields = "\n".join(github.PR_FIELDS.format(alias=f"b{i}", var=f"h{i}")
                       for i in range(branches))
    return [("poll", github.POLL_QUERY.format(params=params, fields=fields)),
            ("threads", github.THREADS_QUERY), ("pr", github.PR_BY_NUMBER),
            ("enqueue", github_queue.ENQUEUE), ("queue-removal", github_queue.REMOVALS)]


@pytest.mark.parametrize(("name", "document"), documents(),
                         ids=["poll", "threads", "pr", "enqueue", "queue-removal"])
def test_documents_validate_against_githubs_schema(name: str, document: str) -> None:
    graphql = pytest.importorskip("graphql")
    path = _schema_file()
    if path is None:
        pytest.skip("GitHub's schema is not installed (.ci/run installs it: "
                    "npm @octokit/graphql-schema)")
    # the published SDL repeats a few enterprise fields; the documents are what is checked
    schema = graphql.build_schema(path.read_text(encoding="utf-8"), assume_valid=True,
                                  assume_valid_sdl=True)
    errors = graphql.validate(schema, graphql.parse(document))
    assert [e.message for e in errors] == [], name
