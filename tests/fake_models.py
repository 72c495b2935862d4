"""One local server speaking the three model APIs the other agent CLIs use, for running the
real Codex, Gemini CLI and Aider offline (what each expects is in docs/agents.md):

- OpenAI's Responses API, `POST /v1/responses` as server-sent events: `response.created`,
  `response.output_item.added`, `response.output_text.delta`, `response.output_item.done`,
  `response.completed` (with usage); `GET /v1/models`. Codex speaks only this.
- Gemini's `POST /v1beta/models/<model>:streamGenerateContent?alt=sse` (SSE of
  `GenerateContentResponse` chunks) and `:generateContent` (one JSON answer; gemini's model
  router sends one per turn and expects JSON text back), `:countTokens`.
- OpenAI's chat completions, `POST /v1/chat/completions` as SSE chunks ending in `[DONE]`
  (aider, through litellm).

Replies are scripted as in fake_anthropic: each *turn* request takes the next reply; side
requests (codex's title request, gemini's router) are answered without taking one.

A ChatGPT plan's usage limit is answered on the Responses API as it is (measured with Codex
0.169.0): HTTP 429 with `{"error": {"type": "usage_limit_reached", "plan_type", "resets_at"}}`
(epoch seconds; Codex reads no `resets_in_seconds`), the thread-title request refused too;
Codex shows "You've hit your usage limit. ... try again at 10:54 PM." and does not retry.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from .helpers import JsonHandler, http_server


@dataclass
class Reply:
    text: str = "OK"
    shell: str | None = None  # a shell tool call after the text: the command line
    delay: float = 0.0  # seconds the "model" streams before finishing (keeps the agent busy)
    stall: float = 0.0  # seconds the stream stops after its first half (a model pausing)
    limit_reset_in: float | None = None  # a usage limit (Responses API): seconds to its reset


@dataclass
class FakeModels:
    script: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    limited: Reply | None = None  # the limit the account is at, once a reply raised it

    def next_reply(self, path: str, body: dict[str, Any]) -> Reply:
        with self.lock:
            self.requests.append((path, body))
            return self.script.pop(0) if self.script else self.default

    def turns(self) -> list[str]:
        """Every turn request's text, as JSON (what the model was sent), in order."""
        with self.lock:
            return [json.dumps(b) for _p, b in self.requests]


def _usage() -> dict[str, Any]:
    return {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 19}


def _responses_events(reply: Reply, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    rid = f"resp_{int(time.time() * 1e6)}"
    yield {"type": "response.created", "response": {"id": rid, "status": "in_progress"}}
    mid = f"msg_{rid}"
    item = {"type": "message", "id": mid, "role": "assistant", "status": "in_progress",
            "content": []}
    yield {"type": "response.output_item.added", "output_index": 0, "item": item}
    for word in reply.text.split(" "):
        yield {"type": "response.output_text.delta", "item_id": mid, "output_index": 0,
               "content_index": 0, "delta": word + " "}
    yield {"type": "response.output_item.done", "output_index": 0,
           "item": {**item, "status": "completed",
                    "content": [{"type": "output_text", "text": reply.text,
                                 "annotations": []}]}}
    if reply.shell:
        names = [t.get("name") for t in body.get("tools", []) if isinstance(t, dict)]
        call: dict[str, Any] = {"type": "function_call", "id": f"fc_{rid}",
                                "call_id": f"call_{rid}", "status": "completed"}
        if "exec_command" in names:
            # asking to run outside the sandbox: codex asks the human first
            call |= {"name": "exec_command", "arguments": json.dumps(
                {"cmd": reply.shell, "sandbox_permissions": "require_escalated",
                 "justification": "The test asks for it"})}
        elif "shell_command" in names:
            call |= {"name": "shell_command", "arguments": json.dumps({"command": reply.shell})}
        else:
            call |= {"name": "shell", "arguments": json.dumps(
                {"command": ["bash", "-lc", reply.shell]})}
        yield {"type": "response.output_item.added", "output_index": 1, "item": call}
        yield {"type": "response.output_item.done", "output_index": 1, "item": call}
    yield {"type": "response.completed", "response": {"id": rid, "status": "completed",
                                                      "usage": _usage()}}


def _gemini_chunks(reply: Reply) -> Iterator[dict[str, Any]]:
    usage = {"promptTokenCount": 12, "candidatesTokenCount": 7, "totalTokenCount": 19}
    words = reply.text.split(" ")
    for i, word in enumerate(words):
        parts: list[dict[str, Any]] = [{"text": word + ("" if i == len(words) - 1 else " ")}]
        last = i == len(words) - 1
        if last and reply.shell:
            parts.append({"functionCall": {"name": "run_shell_command",
                                           "args": {"command": reply.shell}}})
        cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if last:
            cand["finishReason"] = "STOP"
        yield {"candidates": [cand], "usageMetadata": usage, "modelVersion": "gemini-fake"}


def _chat_chunks(reply: Reply, model: str) -> Iterator[dict[str, Any]]:
    cid = f"chatcmpl-{int(time.time() * 1e6)}"
    text = reply.text + (f"\n\n```bash\n{reply.shell}\n```\n" if reply.shell else "")
    base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model}
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                "finish_reason": None}]}
    for piece in text.split(" "):
        yield {**base, "choices": [{"index": 0, "delta": {"content": piece + " "},
                                    "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}


def _handler(fake: FakeModels) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):

        def _sse(self, events: list[dict[str, Any]], delay: float, named: bool,
                 done: bool = False, stall: float = 0.0) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("connection", "close")
            self.end_headers()
            # the reply streams over `delay` seconds (a busy agent that is printing)
            gap = delay / max(1, len(events) - 1)
            for i, ev in enumerate(events):
                if i:
                    time.sleep(gap + (stall if i == len(events) // 2 else 0.0))
                head = f"event: {ev['type']}\n" if named else ""
                self.wfile.write(f"{head}data: {json.dumps(ev)}\n\n".encode())
                self.wfile.flush()
            if done:
                self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) or b"{}"
            try:
                body = json.loads(raw)
            except ValueError:
                body = {}
            path = self.path.split("?", 1)[0]
            if path.endswith("/responses"):
                if _is_title_request(body):  # codex names the thread with a side request
                    reply = fake.limited or Reply(text="Fake thread title")
                else:
                    reply = fake.next_reply(path, body)
                if reply.limit_reset_in is not None:
                    fake.limited = reply  # the account's: its other requests refused too
                    self._json(429, {"error": {
                        "type": "usage_limit_reached", "message": "usage limit reached",
                        "plan_type": "plus",
                        "resets_at": int(time.time() + reply.limit_reset_in)}})
                    return
                self._sse(list(_responses_events(reply, body)), reply.delay, named=True,
                          stall=reply.stall)
            elif path.endswith(":streamGenerateContent"):
                reply = fake.next_reply(path, body)
                self._sse(list(_gemini_chunks(reply)), reply.delay, named=False,
                          stall=reply.stall)
            elif path.endswith(":generateContent"):
                # gemini's router asks which model should answer, as JSON text
                text = json.dumps({"reasoning": "a simple request", "model_choice": "flash"})
                self._json(200, {"candidates": [{"content": {"role": "model", "parts": [
                    {"text": text}]}, "finishReason": "STOP", "index": 0}],
                    "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 3,
                                      "totalTokenCount": 6}})
            elif path.endswith(":countTokens"):
                self._json(200, {"totalTokens": 12})
            elif path.endswith("/chat/completions") and not body.get("stream"):
                # the non-streaming form (aider's commit messages): one chat.completion
                reply = fake.next_reply(path, body)
                time.sleep(reply.delay)
                self._json(200, {
                    "id": f"chatcmpl-{int(time.time() * 1e6)}", "object": "chat.completion",
                    "created": int(time.time()), "model": str(body.get("model", "fake")),
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": reply.text}}],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 7,
                              "total_tokens": 19}})
            elif path.endswith("/chat/completions"):
                reply = fake.next_reply(path, body)
                model = str(body.get("model", "fake"))
                self._sse(list(_chat_chunks(reply, model)), reply.delay, named=False,
                          done=True, stall=reply.stall)
            else:
                self._json(404, {"error": {"message": f"no such endpoint {path}"}})

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0].endswith("/models"):
                self._json(200, {"object": "list", "data": [
                    {"id": "fake-model", "object": "model", "owned_by": "ao-tests"}],
                    "models": []})
            else:
                self._json(404, {"error": {"message": "not found"}})

    return Handler


def _is_title_request(body: dict[str, Any]) -> bool:
    # codex's thread-title request asks for structured text and offers no tools
    return "text" in body and not body.get("tools")


@contextmanager
def serve(fake: FakeModels | None = None) -> Iterator[FakeModels]:
    fake = fake or FakeModels()
    with http_server(_handler(fake)) as url:
        fake.url = url
        yield fake
