"""The fleet on any screen, a phone's too: `GET /m`, a page of its own (HTML, CSS and a script
served beside it, nothing from elsewhere), built on the JSON API and the event stream. Lanes
by what needs you, with counts; a session's live screen (`GET /api/sessions/<ref>/screen`,
read again every two seconds while it is open) with a box to send it a message, its diff,
and the actions; browser notifications of what needs a person, when the person turns them
on. Everything from outside is put in the page as text (textContent), never as markup; the
page's Content-Security-Policy allows its own script and nothing else.

Who may use it: whoever the dashboard lets in (guard.py): the token, the Host, the origin.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

FILES = Path(__file__).with_name("phone")
KINDS = {"index.html": "text/html", "app.js": "application/javascript", "app.css": "text/css"}
# no inline script or style, no other origin: a title that smuggles markup stays text
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def asset(name: str) -> web.Response:
    """One of the page's own files, with the headers that keep it to itself."""
    return web.Response(body=(FILES / name).read_bytes(), content_type=KINDS[name],
                        charset="utf-8", headers={
                            "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


async def page(request: web.Request) -> web.Response:
    return asset("index.html")


async def script(request: web.Request) -> web.Response:
    return asset("app.js")


async def style(request: web.Request) -> web.Response:
    return asset("app.css")


ROUTES = [web.get("/m", page), web.get("/m/app.js", script), web.get("/m/app.css", style)]
