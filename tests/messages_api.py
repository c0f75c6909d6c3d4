"""A local HTTP server that speaks the Anthropic Messages API, for tests of the real `anthropic` client.

Each test queues what the "model" does next: answer with a tool call, fail with a status (with
`retry-after-ms`, as the API does for 429/529), or stall past the client's timeout.
"""
from __future__ import annotations

import asyncio
import json
import uuid

from aiohttp import web

MODEL = "claude-test-1"


class MessagesAPI:
    def __init__(self) -> None:
        self.script: list[tuple[str, object]] = []   # ("tool", input) | ("status", code) | ("stall", seconds) | ("text", str)
        self.requests: list[dict] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    def then(self, kind: str, payload: object) -> "MessagesAPI":
        self.script.append((kind, payload))
        return self

    async def start(self) -> "MessagesAPI":
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _messages(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"headers": {k.lower(): v for k, v in request.headers.items()}, "body": body})
        kind, payload = self.script.pop(0) if self.script else ("status", 500)
        if kind == "stall":
            await asyncio.sleep(payload)
            kind, payload = "status", 500
        if kind == "status":
            error = "overloaded_error" if payload == 529 else "api_error"
            return web.json_response({"type": "error", "error": {"type": error, "message": "test"}}, status=payload,
                                     headers={"retry-after-ms": "20"})
        content = ([{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:12]}", "name": "draft_note", "input": payload}]
                   if kind == "tool" else [{"type": "text", "text": payload}])
        return web.json_response({
            "id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant", "model": MODEL,
            "content": content, "stop_reason": "tool_use" if kind == "tool" else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": 50}})

    def last_prompt(self) -> str:
        return json.dumps(self.requests[-1]["body"]["messages"])
