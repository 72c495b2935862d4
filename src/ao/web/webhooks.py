"""GitHub's webhooks, optional (docs/forges.md "Webhooks"): the dashboard's server accepts
`POST /webhooks/github`, and a delivery for a project's repository wakes the daemon now
instead of at its next poll. Polling stays the fallback and the budget: a delivery only says
"look now", it is never read as the state of anything.

Who may use it: whoever holds the secret (`AO_GITHUB_WEBHOOK_SECRET`, the one set on the
repository's webhook). Each delivery is verified as GitHub documents: `X-Hub-Signature-256` is
`sha256=` and the hex HMAC-SHA256 of the raw body with the secret, compared in constant time.
Without the secret set, the endpoint answers 404; a delivery without a valid signature, 401.
The dashboard's token is not needed (GitHub cannot send it), and none of the dashboard is
reachable this way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ao import paths

if TYPE_CHECKING:
    from ao.config import Config

SECRET_ENV = "AO_GITHUB_WEBHOOK_SECRET"
PATH = "/webhooks/github"
# the events that can move a task: an issue labelled or closed, a PR's push, checks, reviews
WAKING = frozenset({"issues", "pull_request", "check_suite", "check_run", "status",
                    "pull_request_review", "pull_request_review_comment", "sub_issues",
                    "issue_dependencies", "merge_group"})


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, object]


def secret() -> str | None:
    return os.environ.get(SECRET_ENV) or None


def signature(key: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body` (and a test signs with)."""
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def receive(cfg: Config, event: str, signed: str, body: bytes, key: str | None) -> Answer:
    """One delivery: verified, then the daemon woken when it is about one of the projects'
    repositories and an event that can move a task. Pure but for the wake."""
    if not key:
        return Answer(404, {"error": "webhooks are off",
                            "hint": f"set {SECRET_ENV} to the webhook's secret and restart ao"})
    if not signed or not hmac.compare_digest(signature(key, body), signed):
        return Answer(401, {"error": "the delivery's signature does not match",
                            "hint": "the webhook's secret must be the one in " + SECRET_ENV})
    if event == "ping":
        return Answer(200, {"ok": "pong"})
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return Answer(400, {"error": "the delivery is not JSON",
                            "hint": "set the webhook's content type to application/json"})
    repo = str(((payload if isinstance(payload, dict) else {}).get("repository") or {})
               .get("full_name") or "").lower()
    projects = [p.name for p in cfg.projects.values() if (p.repo or "").lower() == repo]
    if not projects or event not in WAKING:
        return Answer(202, {"ignored": event, "repository": repo or None})
    paths.poke_daemon()
    return Answer(200, {"woke": projects, "event": event})
