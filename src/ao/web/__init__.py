"""The daemon over HTTP: the board in a browser, a JSON API, a live event stream, actions, and
Prometheus metrics. One UI: `/` serves the Textual board itself (textual-serve runs `ao board`
per browser tab and streams its terminal), so the browser has the same views and keys.

- `GET /api/projects`, `/api/sessions[?project=]`, `/api/sessions/<ref>` (with its timeline),
  `/api/plan?project=`, `/api/stats`: the field names of the CLI's `--json` (views.py).
- `GET /api/sessions/<ref>/diff`: what its agent changed (stat, diff, files not added).
- `GET /api/events`: server-sent events from the store's event table, filtered by `project`,
  `session` and `type` (a prefix), resumable with `Last-Event-ID`, with keep-alives; each
  named by its type (`plain=1`: unnamed, for a page's `onmessage`).
- `POST /api/sessions/<ref>/send|kill|restore|merge|resume`, `/api/projects/<name>/pause|resume`:
  what the CLI does, answering what it would print (400 with the message for bad input).
- `GET /api/sessions/<ref>/screen`: its terminal as it is now (the live view of `/m`).
- `GET /api/report?project=&format=html|png|json`: the run seen whole (report_picture.py).
- `GET /m`: the fleet on any screen, a phone's too (phone.py).
- `GET /metrics`: the Prometheus text format.
- `POST /webhooks/github`: GitHub's deliveries, which wake the daemon (webhooks.py); each is
  verified by its HMAC signature with AO_GITHUB_WEBHOOK_SECRET, the only way in without the
  token.

Bound to 127.0.0.1 unless configured otherwise: the actions act on the machine. Every
request needs the token (AO_HOME/web.token), loopback too; the Host must be a name the server
is bound to; POSTs and the websocket only from the page's own origin (docs/security.md).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from textual_serve.server import Server as TextualServer

from ao.decide import plan as planmod
from ao.errors import AoError, BadInput
from ao.record.state import LIVE, State
from ao.record.store import Store
from ao.sanitize import clean, json_text, values_for_terminal
from ao.services import changes, views
from ao.web import guard, phone, webhooks
from ao.web.guard import web_token as web_token
from ao.world import forge as forgemod

if TYPE_CHECKING:
    from ao import config as cfgmod

KEEPALIVE = 15.0
STREAM_POLL = 0.1  # an indexed query per client, ten times a second
Handler = guard.Handler
_json = guard.json_response



class WebServer(TextualServer):
    """textual-serve's server for `/`, with ao's API and metrics added to the same app."""

    def __init__(self, cfg: cfgmod.Config, host: str, port: int,
                 store_path: Path | None = None, daemon: Any = None) -> None:
        super().__init__(f"{sys.executable} -m ao board", host=host, port=port,
                         title="ao board")
        self.cfg = cfg
        self.daemon = daemon
        self.store = Store(store_path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        # every request needs the token, loopback too (generated once, 0600 under AO_HOME)
        self.token = guard.web_token()
        self.cookie = f"ao_token_{port}"  # one a dashboard: two ports are two homes' boards
        self.webhook_secret = webhooks.secret()  # GitHub's deliveries (webhooks.py)

    # ---- app -----------------------------------------------------------------------------

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.add_routes([
            web.get("/api/projects", self.projects),
            web.get("/api/sessions", self.sessions),
            web.get("/api/sessions/{ref}", self.session),
            web.get("/api/sessions/{ref}/diff", self.diff),
            web.get("/api/sessions/{ref}/screen", self.screen),
            web.post("/api/sessions/{ref}/{action}", self.session_action),
            web.post("/api/projects/{name}/{action}", self.project_action),
            web.get("/api/plan", self.plan),
            web.get("/api/stats", self.stats),
            web.get("/api/report", self.report),
            web.get("/api/events", self.events),
            web.get("/metrics", self.metrics),
            web.post(webhooks.PATH, self.webhook),
            *phone.ROUTES,
        ])
        return app

    async def on_startup(self, app: web.Application) -> None:
        """(textual-serve prints a banner here; the daemon has its own log)"""

    # ---- reads -----------------------------------------------------------------------------

    async def projects(self, request: web.Request) -> web.Response:
        return _json([{"name": p.name, "path": str(p.path), "forge": p.forge, "repo": p.repo,
                       "agent": p.agent.label, "max_concurrent": p.max_concurrent,
                       "paused": self.store.paused(p.name)}
                      for p in self.cfg.projects.values()])

    async def sessions(self, request: web.Request) -> web.Response:
        project = request.query.get("project")
        states = None if request.query.get("all") else set(State) - {State.CLEANED}
        ctxs = {name: views.wait_context(self.store, p)
                for name, p in self.cfg.projects.items()}
        return _json([views.session(self.store, s, ctx=ctxs.get(s.project))
                      for s in self.store.sessions(project, states)])

    async def session(self, request: web.Request) -> web.Response:
        s = self.store.find_session(request.match_info["ref"])
        ctx = views.wait_context(self.store, self.cfg.projects.get(s.project))
        return _json({**views.session(self.store, s, ctx=ctx),
                      "timeline": self.store.session_events(s.id)})

    async def diff(self, request: web.Request) -> web.Response:
        """What the session's agent changed (changes.py): stat, diff, files not added."""
        s = self.store.find_session(request.match_info["ref"])

        def read() -> dict[str, Any]:
            found = changes.of_session(self.cfg, s)
            return {"session": s.id, "stat": found.stat, "diff": found.diff,
                    "untracked": list(found.untracked), "cut": found.cut}

        return await self._act(read)

    async def screen(self, request: web.Request) -> web.Response:
        """The session's terminal as it is now (its visible lines), wherever it runs: the
        live view of the phone page, instead of an attach a browser cannot do."""
        s = self.store.find_session(request.match_info["ref"])

        def read() -> dict[str, Any]:
            from ao.services.fleet import Fleet
            from ao.world import tmux

            if s.state not in LIVE or s.state is State.QUEUED:
                return {"session": s.id, "screen": None, "why": f"{s.id} is {s.state}"}
            with Fleet.own(self.cfg, self.store.path) as fleet:
                return {"session": s.id, "why": None,
                        "screen": clean(tmux.capture(fleet.server(s), s.id))}

        return await self._act(read)

    async def plan(self, request: web.Request) -> web.Response:
        project = request.query.get("project") or next(iter(self.cfg.projects), "")
        out = []
        for run in self.store.plan_runs(project, active=False):
            try:
                p = planmod.load_valid(Path(run["plan"]))
            except AoError as e:
                out.append({"plan": run["plan"], "error": str(e)})
                continue
            out.append(views.plan_status(self.store, p, project))
        return _json(out)

    async def report(self, request: web.Request) -> web.Response:
        """The run seen whole (runreport.py): `format=html` (the default), `png` or `json`."""
        from ao.services import report_picture, runreport

        project = request.query.get("project") or next(iter(self.cfg.projects), "")
        if project not in self.cfg.projects and not self.store.sessions(project):
            self.cfg.project(project)  # 404, naming the projects there are
        kind = request.query.get("format", "html")
        if kind not in ("html", "png", "json"):
            raise BadInput(f"no format {kind!r}", "html, png or json")
        r = runreport.build(self.store, project)
        if kind == "json":
            return _json(r.as_dict())
        loop = asyncio.get_running_loop()
        if kind == "png":
            return web.Response(body=await loop.run_in_executor(None, report_picture.png, r),
                                content_type="image/png")
        body = await loop.run_in_executor(None, report_picture.page, r)
        return web.Response(text=body, content_type="text/html", headers={
            "Content-Security-Policy": "default-src 'none'; img-src data:; "
                                       "style-src 'unsafe-inline'"})

    async def stats(self, request: web.Request) -> web.Response:
        return _json([views.stats(self.store, p.name, p.max_concurrent)
                      for p in self.cfg.projects.values()])

    async def metrics(self, request: web.Request) -> web.Response:
        lines = ["# HELP ao_sessions Sessions by project and state.", "# TYPE ao_sessions gauge"]
        for project, state, n in self.store.session_counts():
            lines.append(f'ao_sessions{{project="{_label(project)}",state="{state}"}} {n}')
        families = (("ao_merged_total", "merged", "counter", "Tasks merged."),
                    ("ao_failed_total", "failed", "counter", "Sessions that failed."),
                    ("ao_fix_rounds_total", "fix_rounds", "counter", "CI fix rounds sent."),
                    ("ao_escalations_total", "escalations", "counter", "Escalations."),
                    ("ao_utilisation", "utilisation", "gauge",
                     "Running sessions over max_concurrent."),
                    ("ao_success_ratio", "success_rate", "gauge",
                     "Merged over ended sessions."),
                    ("ao_agent_cost_usd", "usd", "counter",
                     "What the agents spent, from their own records (estimated)."),
                    ("ao_cost_per_merged_usd", "usd_per_merged", "gauge",
                     "What the agents spent per merged task."))
        stats = [views.stats(self.store, p.name, p.max_concurrent)
                 for p in self.cfg.projects.values()]
        for metric, key, kind, text in families:
            lines += [f"# HELP {metric} {text}", f"# TYPE {metric} {kind}"]
            lines += [f'{metric}{{project="{_label(s["project"])}"}} {s[key]}'
                      for s in stats if s[key] is not None]
        lines += ["# HELP ao_events_total Events recorded, by type.",
                  "# TYPE ao_events_total counter"]
        for kind, n in self.store.event_counts():
            lines.append(f'ao_events_total{{type="{_label(kind)}"}} {n}')
        if self.daemon is not None:
            lines += ["# HELP ao_daemon_polls_total Daemon ticks.",
                      "# TYPE ao_daemon_polls_total counter",
                      f"ao_daemon_polls_total {self.daemon.polls}"]
        return web.Response(text="\n".join(lines) + "\n",
                            content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type": "version=0.0.4"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events, from the event after `Last-Event-ID` (or the newest)."""
        q = request.query
        start = request.headers.get("Last-Event-ID") or q.get("after")
        last = int(start) if start and start.isdigit() else self.store.last_event_id()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        await resp.write(b": ao events\n\n")
        quiet_since = time.monotonic()
        limit = int(q["limit"]) if q.get("limit", "").isdigit() else None
        sent = 0
        while True:
            rows = self.store.events_after(last, q.get("project") or None,
                                           q.get("session") or None, q.get("type") or None)
            for r in rows:
                last = r["id"]
                payload = {"id": r["id"], "ts": r["ts"], "type": r["type"],
                           "project": r["project"], "session": r["session"],
                           "task": r["task"], "data": json.loads(r["data"])}
                text = json_text(json.dumps(values_for_terminal(payload), ensure_ascii=False,
                                            default=str))
                # `?plain=1`: unnamed, so a page's EventSource.onmessage takes every type
                named = "" if q.get("plain") in ("1", "true") else f"event: {r['type']}\n"
                await resp.write(f"id: {r['id']}\n{named}data: {text}\n\n".encode())
                sent += 1
                quiet_since = time.monotonic()
                if limit is not None and sent >= limit:
                    return resp  # exactly `limit` events, so a resume neither skips nor repeats
            if time.monotonic() - quiet_since > KEEPALIVE:
                await resp.write(b": keep-alive\n\n")
                quiet_since = time.monotonic()
            await asyncio.sleep(STREAM_POLL)

    # ---- actions ---------------------------------------------------------------------------

    async def session_action(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        body = await request.json() if request.can_read_body else {}
        ref = request.match_info["ref"]
        return await self._act(lambda: self._session_action(ref, action, body))

    def _session_action(self, ref: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        from ao.services.fleet import Fleet
        from ao.services.merging import merge_now
        from ao.services.messaging import Messenger
        from ao.services.step_results import approve_gate

        with Fleet.own(self.cfg, self.store.path) as fleet:
            store = fleet.store
            s = store.find_session(ref)
            if action == "send":
                text = str(body.get("message") or "")
                if not text.strip():
                    raise BadInput("the message is empty", 'POST {"message": "..."}')
                r = Messenger(fleet).send(s.id, text, now=bool(body.get("now")))
                return {"status": r.status, "detail": r.detail}
            if action == "kill":
                return {"killed": s.id, **fleet.kill(s.id, force=bool(body.get("force")))}
            if action == "restore":
                return {"restored": s.id, "state": fleet.restore(s.id).state.value}
            if action == "resume":
                return {"resumed": s.id, "state": fleet.resume(s.id, "resumed from the web")
                        .state.value}
            if action == "merge":
                number, sha = merge_now(self.cfg, store, fleet.server(s), s,
                                        forgemod.for_project(self.cfg.project(s.project), store))
                return {"merged": s.id, "pr": number, "sha": sha} if sha else \
                    {"queued": s.id, "pr": number}
            if action == "approve":
                pr = forgemod.for_project(self.cfg.project(s.project), store).find_pr(
                    s.branch) if s.branch else None
                if pr is None:
                    raise BadInput(f"{s.id} has no pull request yet", "nothing to approve")
                reject = body.get("reject")
                return {"result": approve_gate(fleet, s, pr, "web",
                                               None if reject is None else str(reject))}
            raise BadInput(f"no action {action!r}",
                           "send, kill, restore, resume, merge, approve")

    async def project_action(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]

        def act() -> dict[str, Any]:
            p = self.cfg.project(name)
            if action not in ("pause", "resume"):
                raise BadInput(f"no action {action!r}", "pause, resume")
            store = Store(self.store.path)
            try:
                store.ensure_project(p.name, str(p.path), p.repo)
                store.set_paused(name, action == "pause")
            finally:
                store.close()
            return {"project": name, "paused": action == "pause"}

        return await self._act(act)

    async def webhook(self, request: web.Request) -> web.Response:
        """A GitHub delivery, verified by its signature alone (webhooks.py)."""
        answer = webhooks.receive(self.cfg, request.headers.get("X-GitHub-Event", ""),
                                  request.headers.get("X-Hub-Signature-256", ""),
                                  await request.read(), self.webhook_secret)
        return _json(answer.body, answer.status)

    async def _act(self, fn: Callable[[], dict[str, Any]]) -> web.Response:
        """Run an action off the event loop (it may type into a terminal or call GitHub)."""
        loop = asyncio.get_running_loop()
        try:
            return _json(await loop.run_in_executor(None, fn))
        except AoError as e:
            return guard.error(e)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Who may use the dashboard (guard.py, docs/security.md)."""
        return await guard.check(request, handler, self.token, self.cookie, self.host)


    async def handle_index(self, request: web.Request) -> Any:
        """The page's asset and websocket URLs from the address the browser used (validated
        by the guard), not the bound one: bound to 0.0.0.0, `http://0.0.0.0:3001/` never
        loads from another machine."""
        self.public_url = f"{'https' if request.secure else 'http'}://{request.host}"
        return await super().handle_index(request)

    def url(self) -> str:
        """The address to open, with the token (the first visit turns it into a cookie)."""
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else \
            f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    # ---- running in a thread beside the daemon ---------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ao-web", daemon=True)
        self._thread.start()
        self.ready.wait(15)
        if self.error is not None:
            raise BadInput(f"cannot serve on {self.host}:{self.port}: {self.error}",
                           "choose another port (--port, PORT or web.port)")

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = await self._make_app()
        app.middlewares.append(self._guard)
        app.middlewares.append(guard.errors)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as e:
            self.error = e
            self.ready.set()
            await runner.cleanup()
            return
        self.ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
