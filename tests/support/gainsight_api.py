"""A local HTTP server that speaks Gainsight CS's Timeline activity API, for tests of the real client.

What it holds to (Gainsight's "Timeline APIs" article): `POST /v1/ant/es/activity` with the `accesskey`
header; a body `{"records": [...], "lookups": {...}}` whose record has `ContextName` (Company here),
`TypeName` (a configured type), `ExternalId`, `Subject`, `Notes`, `ActivityDate` (ISO 8601), `Author`,
and the lookups resolve `Author` → GsUser.Email and the company key → Company.<field>, FIRSTMATCH,
ERROR on no match; `ExternalId` is the insert's idempotency key, unique across the tenant, so a second
insert with the same id is refused and never a second activity; 200 single inserts a minute, over it
429 with `Retry-After`. Answers use Gainsight's envelope (`result`, `errorCode`, `errorDesc`,
`requestId`, `data`). The error codes below are this fake's own names: the article does not list them.

A test can script the next answers (`fail`), hold responses after storing (`hold`: the client is
killed while the server has the activity), and read every request with its arrival time (`requests`)
and any request that came while a `Retry-After` it gave was still running (`violations`).
"""
from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from datetime import datetime

from aiohttp import web

from milestone_stream.dev.kafka_local import free_port

ACCESS_KEY = "test-access-key-0123456789"


def envelope(result: bool, data: object = None, code: str | None = None, desc: str | None = None) -> dict:
    return {"result": result, "errorCode": code, "errorDesc": desc, "localizedErrorDesc": None,
            "requestId": str(uuid.uuid4()), "data": data, "message": None}


class TimelineAPI:
    def __init__(self, users: set[str], companies: dict[str, str], *, types: frozenset[str] = frozenset({"Email"}),
                 limit: int = 200, window: float = 60.0) -> None:
        self.users = users              # GsUser emails
        self.companies = companies      # Company Name → Gsid
        self.types, self.limit, self.window = types, limit, window
        self.activities: dict[str, dict] = {}   # ExternalId → the stored activity
        self.requests: list[dict] = []          # every request: at, headers, body, status
        self.violations: list[float] = []       # arrivals while a Retry-After we gave still ran
        self.script: list[tuple[int, dict[str, str]]] = []
        self.held = asyncio.Event()
        self.held.set()                 # clear it to hold every response after the activity is stored
        self.received = asyncio.Event() # set at each request (tests await it)
        self._retry_until = 0.0
        self._accepted: list[float] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None

    def fail(self, status: int, headers: dict[str, str] | None = None, times: int = 1) -> TimelineAPI:
        self.script += [(status, headers or {})] * times
        return self

    def posts_for(self, external_id: str) -> int:
        return sum(1 for r in self.requests if _external_id(r["body"]) == external_id)

    async def start(self) -> TimelineAPI:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/ant/es/activity", self._activity)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        self.held.set()
        if self._runner:
            await self._runner.cleanup()

    @staticmethod
    def _answer(entry: dict, status: int, body: dict, headers: dict[str, str] | None = None) -> web.Response:
        entry["status"] = status
        return web.json_response(body, status=status, headers=headers)

    async def _activity(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        entry = {"at": now, "headers": dict(request.headers), "body": body, "status": None}
        self.requests.append(entry)
        self.received.set()
        if now < self._retry_until:
            self.violations.append(self._retry_until - now)
        if request.headers.get("accesskey") != ACCESS_KEY:
            return self._answer(entry, 401, envelope(False, code="GS_ACCESS_KEY_INVALID", desc="Invalid access key"))
        if self.script:
            status, headers = self.script.pop(0)
            if status == 429 and "Retry-After" in headers:
                self._retry_until = max(self._retry_until, now + float(headers["Retry-After"]))
            return self._answer(entry, status, envelope(False, code=f"GS_TEST_{status}", desc="scripted failure"),
                                headers)
        self._accepted = [t for t in self._accepted if t > now - self.window]
        if len(self._accepted) >= self.limit:
            wait = math.ceil(self._accepted[0] + self.window - now)
            self._retry_until = max(self._retry_until, now + wait)
            return self._answer(entry, 429, envelope(False, code="GS_RATE_LIMIT_EXCEEDED",
                                              desc=f"{self.limit} calls per {self.window:g}s"),
                                {"Retry-After": str(wait)})
        self._accepted.append(now)
        problem = self._invalid(body)
        if problem:
            return self._answer(entry, 400, envelope(False, code="GS_ACTIVITY_INVALID", desc=problem))
        record = body["records"][0]
        if record["ExternalId"] in self.activities:
            return self._answer(entry, 400, envelope(False, code="GS_ACTIVITY_DUPLICATE_EXTERNAL_ID",
                                              desc=f"ExternalId {record['ExternalId']} already exists"))
        gsid = "1P05" + uuid.uuid4().hex[:14].upper()
        self.activities[record["ExternalId"]] = {**record, "Gsid": gsid}
        await self.held.wait()
        stored = {"records": [{"Gsid": gsid, "ExternalId": record["ExternalId"]}]}
        return self._answer(entry, 200, envelope(True, data=stored))

    def _invalid(self, body: object) -> str | None:
        if not isinstance(body, dict) or not isinstance(body.get("records"), list) or len(body["records"]) != 1:
            return "records must hold exactly one activity"
        record, lookups = body["records"][0], body.get("lookups") or {}
        for field in ("ExternalId", "ContextName", "TypeName", "Subject", "ActivityDate", "Author"):
            if not isinstance(record.get(field), str) or not record[field]:
                return f"{field} is required"
        if record["ContextName"] != "Company":
            return f"ContextName {record['ContextName']} is not supported here"
        if record["TypeName"] not in self.types:
            return f"TypeName {record['TypeName']} is not an activity type"
        try:
            datetime.fromisoformat(record["ActivityDate"])
        except ValueError:
            return "ActivityDate is not ISO 8601"
        author = lookups.get("AuthorId", {})
        if author.get("objectName") != "GsUser" or author.get("fields") != {"Author": "Email"}:
            return "AuthorId lookup must resolve Author by GsUser.Email"
        if record["Author"] not in self.users:
            return f"AuthorId: no GsUser with Email {record['Author']}"
        company = lookups.get("GsCompanyId", {})
        fields = company.get("fields") or {}
        if company.get("objectName") != "Company" or list(fields.values()) != ["Name"]:
            return "GsCompanyId lookup must resolve the company by Company.Name"
        if record.get(next(iter(fields))) not in self.companies:
            return f"GsCompanyId: no Company named {record.get(next(iter(fields)))}"
        return None


def _external_id(body: object) -> str | None:
    try:
        return body["records"][0]["ExternalId"]  # type: ignore[index]
    except (TypeError, KeyError, IndexError):
        return None
