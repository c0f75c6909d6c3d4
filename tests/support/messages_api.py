"""A local HTTP server that speaks the Anthropic Messages API, for tests of the real `anthropic` client.

Each test queues what the "model" does next: answer with a tool call, fail with a status, or stall
past the client's timeout. A failure has the real API's error body
(`{"type": "error", "error": {"type": "rate_limit_error", "message": ...}, "request_id": ...}`, the
error type chosen by status as the API documents) and, unless the test gives its own headers, a short
`retry-after-ms` so that retries in tests take milliseconds; `fail(429, {"retry-after": "12"})`
answers as a real rate limit does.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid

from aiohttp import web

MODEL = "claude-test-1"

# The error type the API puts in the body for each status (its documented list of errors).
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 409: "conflict_error", 413: "request_too_large",
               429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}
MESSAGES = {429: "Number of request tokens has exceeded your per-minute rate limit.",
            529: "Overloaded"}


class MessagesAPI:
    def __init__(self) -> None:
        # ("tool", input) | ("status", code) | ("status", (code, headers)) | ("stall", seconds) | ("text", str)
        self.script: list[tuple[str, object]] = []
        self.requests: list[dict] = []   # headers, body, and `at` (time.monotonic() on arrival)
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()   # ends any stall, so that stop() need not wait it out

    def then(self, kind: str, payload: object) -> MessagesAPI:
        self.script.append((kind, payload))
        return self

    def fail(self, status: int, headers: dict[str, str] | None = None) -> MessagesAPI:
        """Answer the next request with this error status and these headers (instead of the default)."""
        return self.then("status", (status, headers))

    async def start(self) -> MessagesAPI:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        self._stopping.set()
        await self._runner.cleanup()

    async def _messages(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"headers": {k.lower(): v for k, v in request.headers.items()}, "body": body,
                              "at": time.monotonic()})
        kind, payload = self.script.pop(0) if self.script else ("status", 500)
        if kind == "stall":
            try:
                await asyncio.wait_for(self._stopping.wait(), payload)
            except TimeoutError:
                pass
            kind, payload = "status", 500
        if kind == "status":
            status, headers = payload if isinstance(payload, tuple) else (payload, None)
            request_id = f"req_{uuid.uuid4().hex[:24]}"
            error = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
            return web.json_response(
                {"type": "error", "error": {"type": error, "message": MESSAGES.get(status, "test")},
                 "request_id": request_id},
                status=status,
                headers={"request-id": request_id, **({"retry-after-ms": "20"} if headers is None else headers)})
        content = ([{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:12]}", "name": "draft_note",
                     "input": payload}]
                   if kind == "tool" else [{"type": "text", "text": payload}])
        return web.json_response({
            "id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant", "model": MODEL,
            "content": content, "stop_reason": "tool_use" if kind == "tool" else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": 50}})

    def last_prompt(self) -> str:
        return json.dumps(self.requests[-1]["body"]["messages"])
