"""Who may use the dashboard (docs/security.md): a request whose Host is a name the server is
bound to (a DNS-rebinding page's Host is its own name), with the token (query, header, or
the cookie the first visit set), loopback too; a POST and the board's websocket only from the
page's own origin. GitHub's deliveries carry a signature instead, checked by their one handler
(webhooks.py). And the answers every handler shares: JSON cleaned for a terminal, errors in
one line with the way out."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ao import paths
from ao.errors import AoError, NotFound
from ao.sanitize import json_text, values_for_terminal
from ao.web import webhooks

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOOPBACK = ("127.0.0.1", "localhost", "::1")
PAGES = ("/", "/m")  # the board, and the page for any screen (phone.py)


def json_response(value: Any, status: int = 200) -> web.Response:
    """Values as a terminal may show them (titles and events come from outside)."""
    clean = values_for_terminal(json.loads(json.dumps(value, default=str)))
    return web.Response(text=json_text(json.dumps(clean, ensure_ascii=False)),
                        status=status, content_type="application/json")


async def check(request: web.Request, handler: Handler, token: str, cookie: str,
                bound: str) -> web.StreamResponse:
    """The request, if it may be served; else the refusal (403 or 401)."""
    if request.method == "POST" and request.path == webhooks.PATH:
        return await handler(request)
    if not host_allowed(bound, request.host):
        return json_response({"error": f"Host {request.host!r} refused",
                              "hint": "open the dashboard by the address it serves on"}, 403)
    origin = request.headers.get("Origin")
    upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
    if (request.method != "GET" or upgrade) and origin is not None \
            and origin.split("://", 1)[-1] != request.host:
        return json_response({"error": "cross-origin request refused",
                              "hint": "use the dashboard's own page"}, 403)
    if upgrade and origin is None:  # browsers always send it; a page cannot omit it
        return json_response({"error": "a websocket needs its Origin",
                              "hint": "use the dashboard's own page"}, 403)
    given = request.query.get("token", "")
    if not secrets_equal(given, token):
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() \
            or request.cookies.get(cookie, "")
        if not secrets_equal(given, token):
            return json_response({"error": "a token is required",
                                  "hint": "open the URL `ao status` prints, or send "
                                          "Authorization: Bearer <AO_HOME/web.token>"}, 401)
        return await handler(request)
    # the token in the URL: kept as a cookie (the page's websocket and API calls carry it)
    # and, for a page, taken out of the address bar and the history
    if request.method == "GET" and request.path in PAGES and not upgrade:
        response: web.StreamResponse = web.Response(status=302, headers={
            "Location": request.path + (f"?{q}" if (q := _without_token(request.query_string))
                                        else "")})
    else:
        response = await handler(request)
    response.set_cookie(cookie, token, httponly=True, samesite="Strict",
                        path="/", secure=request.secure)
    return response


def host_allowed(bound: str, host: str) -> bool:
    """A name the server answers to: its bound address, or loopback's names when bound to
    loopback. Bound to every address (0.0.0.0), any name: the token still holds."""
    if bound in ("0.0.0.0", "::", ""):
        return True
    # the name only: a forwarded port (ssh -L 8080:127.0.0.1:3001) arrives as another
    # port of the same name, and the name alone is what a rebinding page changes
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    names = {bound.strip("[]").lower()}
    if bound in LOOPBACK:
        names |= {"127.0.0.1", "localhost", "::1"}
    return name in names


def web_token() -> str:
    """The dashboard's token, made on first use and kept 0600 in AO_HOME/web.token."""
    import secrets

    f = paths.home() / "web.token"
    if f.exists():
        return f.read_text().strip()
    token = secrets.token_urlsafe(24)
    fd = os.open(str(f), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AoError as e:
        return error(e)
    except json.JSONDecodeError:
        return json_response({"error": "the body is not JSON",
                              "hint": 'e.g. {"message": "..."}'}, 400)


def error(e: AoError) -> web.Response:
    """404 for what does not exist, 400 for other bad input, 409 for a failure of the world."""
    status = 404 if isinstance(e, NotFound) else 400 if e.exit_code == 2 else 409
    return json_response({"error": e.message, "hint": e.hint}, status=status)


def _without_token(query: str) -> str:
    from urllib.parse import parse_qsl, urlencode

    return urlencode([(k, v) for k, v in parse_qsl(query) if k != "token"])


def secrets_equal(a: str, b: str) -> bool:
    import hmac

    return bool(a) and hmac.compare_digest(a.encode(), b.encode())
