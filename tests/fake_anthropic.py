"""A local server that speaks the Anthropic Messages API, for the real Claude Code CLI and the
anthropic SDK. Replies are scripted: each request takes the next reply from the script (text or
tool_use), streamed as the real event sequence when the request asks for a stream.

A subscription's usage limit is answered as the API answers it (measured with Claude Code
2.1.329): HTTP 429, a `rate_limit_error` body whose message the CLI never shows, and the
headers `anthropic-ratelimit-unified-status: rejected`, `anthropic-ratelimit-unified-reset`
(epoch seconds) and `anthropic-ratelimit-unified-representative-claim` (`five_hour`,
`seven_day`): without the claim the CLI retries it as a plain 429. Claude Code shows its
limit screen only when logged in with a subscription (an OAuth token); with an API key the
same answer is an "API Error: Request rejected (429)" line."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from .helpers import JsonHandler, http_server


@dataclass
class Reply:
    text: str = "OK"
    tool: str | None = None  # a tool_use block after the text: name
    tool_input: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0  # seconds the "model" takes before finishing (keeps the agent busy)
    status: int = 200  # a non-200 answers with an API error of that status
    limit: str | None = None  # a usage limit: its claim (five_hour, seven_day), a 429
    reset_in: float = 3600.0  # seconds until that limit resets
    usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 12,
                                                           "output_tokens": 7})


@dataclass
class FakeAnthropic:
    script: list[Reply | Callable[[dict[str, Any]], Reply]] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_reply(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            self.requests.append(body)
            item = self.script.pop(0) if self.script else self.default
        return item(body) if callable(item) else item

    def user_texts(self) -> list[str]:
        """The last user message's text of each request, in order."""
        out = []
        for body in self.requests:
            msgs = [m for m in body.get("messages", []) if m.get("role") == "user"]
            if not msgs:
                continue
            content = msgs[-1]["content"]
            if isinstance(content, str):
                out.append(content)
            else:
                out.append("".join(c.get("text", "") for c in content
                                   if c.get("type") == "text"))
        return out


def _message(reply: Reply, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}]
    if reply.tool:
        content.append({"type": "tool_use", "id": f"toolu_{int(time.time() * 1e6)}",
                        "name": reply.tool, "input": reply.tool_input})
    return {"id": f"msg_{int(time.time() * 1e6)}", "type": "message", "role": "assistant",
            "model": model, "content": content,
            "stop_reason": "tool_use" if reply.tool else "end_turn", "stop_sequence": None,
            "usage": reply.usage}


def _events(reply: Reply, model: str) -> Iterator[tuple[str, dict[str, Any]]]:
    msg = _message(reply, model)
    start = {**msg, "content": [], "stop_reason": None,
             "usage": {"input_tokens": reply.usage["input_tokens"], "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": start}
    for i, block in enumerate(msg["content"]):
        if block["type"] == "text":
            yield "content_block_start", {"type": "content_block_start", "index": i,
                                          "content_block": {"type": "text", "text": ""}}
            yield "content_block_delta", {"type": "content_block_delta", "index": i,
                                          "delta": {"type": "text_delta", "text": block["text"]}}
        else:
            yield "content_block_start", {"type": "content_block_start", "index": i,
                                          "content_block": {**block, "input": {}}}
            yield "content_block_delta", {
                "type": "content_block_delta", "index": i,
                "delta": {"type": "input_json_delta",
                          "partial_json": json.dumps(block["input"])}}
        yield "content_block_stop", {"type": "content_block_stop", "index": i}
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                            "usage": {"output_tokens": reply.usage["output_tokens"]}}
    yield "message_stop", {"type": "message_stop"}


def _handler(fake: FakeAnthropic) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        extra_headers = (("request-id", "req_fake"),)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self.path.startswith("/v1/messages") or "count_tokens" in self.path:
                self._json(200, {"input_tokens": 10})
                return
            reply = fake.next_reply(body)
            model = body.get("model", "claude-test")
            if reply.limit is not None:
                self._json(429, {"type": "error", "error": {
                    "type": "rate_limit_error",
                    "message": "This request would exceed your account's rate limit."}},
                    (("anthropic-ratelimit-unified-status", "rejected"),
                     ("anthropic-ratelimit-unified-reset", str(int(time.time() +
                                                                   reply.reset_in))),
                     ("anthropic-ratelimit-unified-representative-claim", reply.limit)))
                return
            if reply.status != 200:
                self._json(reply.status, {"type": "error", "error": {
                    "type": "api_error", "message": f"scripted error {reply.status}"}})
                return
            if not body.get("stream"):
                time.sleep(reply.delay)
                self._json(200, _message(reply, model))
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("connection", "close")
            self.end_headers()
            events = list(_events(reply, model))
            for i, (name, data) in enumerate(events):
                if i == len(events) - 2 and reply.delay:
                    time.sleep(reply.delay)
                self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()
            self.close_connection = True

        def do_GET(self) -> None:
            self._json(200, {"data": [], "has_more": False})

    return Handler


@contextmanager
def serve(fake: FakeAnthropic | None = None) -> Iterator[FakeAnthropic]:
    fake = fake or FakeAnthropic()
    with http_server(_handler(fake)) as url:
        fake.url = url
        yield fake
