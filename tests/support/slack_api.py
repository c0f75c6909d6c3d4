"""A local Slack Web API for tests, speaking the real shapes: `{"ok": true, …}` answers with HTTP 200,
`{"ok": false, "error": "…"}` errors (also with HTTP 200, as Slack does), 429 with `Retry-After` and
`{"ok": false, "error": "ratelimited"}`, and `Authorization: Bearer` checked on every call. Arguments
are read the way Slack accepts them: query string, form body or JSON body.

And Slack's side of an interaction: a `block_actions` payload, form-encoded as `payload=…` and signed
as Slack signs it (`v0=HMAC-SHA256(secret, "v0:{timestamp}:{body}")`).
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from urllib.parse import urlencode

from aiohttp import web

from milestone_stream.dev.kafka_local import free_port

TOKEN = "xoxb-test-token"  # noqa: S105 — a test token for the local server
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # noqa: S105 — the local app's secret


class SlackApi:
    """Users (by email and id), direct-message channels, and the messages posted and updated in them."""

    def __init__(self, users: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/"
        self.users = dict(users)                       # user id → email
        self.messages: dict[tuple[str, str], dict] = {}  # (channel, ts) → the message's current arguments
        self.calls: list[tuple[str, dict]] = []        # every call, in order: (method, arguments)
        self.faults: dict[str, list[tuple[int, dict, dict]]] = {}  # method → answers to give first
        self._ts = itertools.count(1)
        self._runner: web.AppRunner | None = None

    def fail(self, method: str, status: int, body: dict, headers: dict | None = None) -> None:
        self.faults.setdefault(method, []).append((status, body, headers or {}))

    def posted(self, method: str = "chat.postMessage") -> list[dict]:
        return [args for m, args in self.calls if m == method]

    async def start(self) -> SlackApi:
        app = web.Application()
        app.add_routes([web.route("*", "/api/{method}", self.handle)])
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict = dict(request.query)
        if request.method == "POST":
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        self.calls.append((method, args))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if self.faults.get(method):
            status, body, headers = self.faults[method].pop(0)
            return web.json_response(body, status=status, headers=headers)
        handler = getattr(self, method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        return web.json_response(handler(args))

    def users_lookupByEmail(self, args: dict) -> dict:
        for uid, email in self.users.items():
            if email.lower() == str(args.get("email", "")).lower():
                return {"ok": True, "user": {"id": uid, "team_id": "T1", "profile": {"email": email}}}
        return {"ok": False, "error": "users_not_found"}

    def users_info(self, args: dict) -> dict:
        uid = args.get("user")
        if uid not in self.users:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": {"id": uid, "team_id": "T1", "profile": {"email": self.users[uid]}}}

    def conversations_open(self, args: dict) -> dict:
        uid = str(args.get("users", ""))
        if uid not in self.users:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": "D" + uid[1:]}}

    def chat_postMessage(self, args: dict) -> dict:
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("text") and not args.get("blocks"):
            return {"ok": False, "error": "no_text"}
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        self.messages[(args["channel"], ts)] = args
        return {"ok": True, "channel": args["channel"], "ts": ts,
                "message": {"type": "message", "text": args.get("text"), "ts": ts}}

    def chat_update(self, args: dict) -> dict:
        key = (args.get("channel"), args.get("ts"))
        if key not in self.messages:
            return {"ok": False, "error": "message_not_found"}
        self.messages[key] = args
        return {"ok": True, "channel": key[0], "ts": key[1], "text": args.get("text")}


def block_actions(user_id: str, action_id: str, approval_id: str, channel: str = "D1", ts: str = "1.000001") -> bytes:
    """The form body Slack POSTs when a button is clicked: `payload=` a block_actions JSON document."""
    payload = {"type": "block_actions", "user": {"id": user_id, "username": "sam", "team_id": "T1"},
               "api_app_id": "A1", "token": "legacy-verification-token", "team": {"id": "T1", "domain": "acme"},
               "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
               "trigger_id": "1.2.3", "channel": {"id": channel, "name": "directmessage"},
               "message": {"type": "message", "ts": ts, "text": "Heads up!"},
               "response_url": "https://hooks.slack.com/actions/T1/1/abc",
               "actions": [{"type": "button", "action_id": action_id, "block_id": "approval",
                            "value": approval_id, "text": {"type": "plain_text", "text": action_id},
                            "action_ts": f"{time.time():.6f}"}]}
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed_headers(body: bytes, timestamp: int | None = None, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """Headers as Slack signs a request: X-Slack-Request-Timestamp and X-Slack-Signature."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/x-www-form-urlencoded"}
