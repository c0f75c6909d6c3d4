"""A small client of the Confluent Schema Registry REST API, with a bounded cache of schemas by id.

Why: a Confluent-framed value names its writer schema by a registry id; the reader must fetch that
schema once and keep it, and the writers register the product's schemas to get their ids. Only the
calls the product makes are here (schema by id, register, compatibility, subject config); the same
API is served by Confluent's registry, Apicurio (`/apis/ccompat/v7`), Karapace and Redpanda.

Errors are split by whose fault they are: a registry that cannot be reached, times out, rate-limits
or fails (5xx) raises `RegistryUnavailable`, a `ConnectionError`, which the worker treats as an
outage (stop uncommitted, read again later; `deadletter.is_outage`); a schema id the registry does
not have is `UnknownSchemaId` (the record's fault: a dead letter); any other refusal is
`RegistryRefused` with the registry's own error code and message. Every response is read up to
`MAX_RESPONSE_BYTES`, so a hostile or broken registry cannot make the worker hold megabytes.
"""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from milestone_stream.schemas.codec import CodecError
from milestone_stream.schemas.wire import SchemaMismatch, UnknownSchemaId

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
MAX_RESPONSE_BYTES = 1024 * 1024  # a schema document; the product's largest is under 8 KB
CACHE_SIZE = 1024                 # ids kept (known schemas and ids the registry said it lacks)
TIMEOUT = 5.0                     # seconds per request
REFUSAL_SECONDS = 60.0            # an id the registry lacked is asked again after this


class RegistryUnavailable(ConnectionError):
    """The registry could not answer now (unreachable, time-out, 429, 5xx): not the record's fault."""


class RegistryRefused(Exception):
    """The registry answered a request with an error that is not an outage (4xx), or too much."""

    def __init__(self, status: int, error_code: int | None, message: str) -> None:
        super().__init__(f"HTTP {status}" + (f", error {error_code}" if error_code else "") + f": {message}")
        self.status = status
        self.error_code = error_code


class ResponseTooLarge(RegistryRefused):
    pass


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema as the registry holds it: its text and type (`AVRO` when the registry leaves it out)."""

    schema_id: int
    text: str
    schema_type: str = "AVRO"


class SchemaRegistry:
    """Blocking calls (httpx), safe to run from several threads; the worker runs lookups in a thread
    (`confluent.prefetch`) so its event loop never waits on the network."""

    def __init__(self, url: str, timeout: float = TIMEOUT, cache_size: int = CACHE_SIZE,
                 transport: httpx.BaseTransport | None = None, refusal_seconds: float = REFUSAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # userinfo in the URL (https://key:secret@host) becomes basic auth, as Confluent Cloud expects
        parsed = httpx.URL(url)
        auth = (parsed.username, parsed.password) if parsed.username else None
        self.url = str(parsed.copy_with(username=None, password=None)).rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, auth=auth, transport=transport,
                                  headers={"Accept": CONTENT_TYPE}, follow_redirects=False)
        # an id's schema, or the refusal to repeat for it (no such id, a schema too large to take)
        self._cache: OrderedDict[int, RegisteredSchema | CodecError] = OrderedDict()
        self._cache_size = cache_size
        # when each refusal was cached: after `refusal_seconds` the id is asked again (a schema registered
        # late, or a registry restored from a backup, is then read without restarting the worker)
        self._refused_at: dict[int, float] = {}
        self._refusal_seconds, self._clock = refusal_seconds, clock
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    # --- reading: schemas by id, cached ---------------------------------------------------------

    def is_cached(self, schema_id: int) -> bool:
        with self._lock:
            return schema_id in self._cache and not self._stale(schema_id)

    def _stale(self, schema_id: int) -> bool:
        """A cached refusal old enough to ask again (call with the lock held)."""
        at = self._refused_at.get(schema_id)
        return at is not None and self._clock() - at >= self._refusal_seconds

    def schema(self, schema_id: int) -> RegisteredSchema:
        """The schema registered under `schema_id` (from the cache after the first call); a
        `CodecError` (a dead letter) if the registry has no such id or its schema is too large,
        `RegistryUnavailable` (an outage) if it cannot answer now."""
        with self._lock:
            found = None if self._stale(schema_id) else self._cache.get(schema_id)
            if found is not None:
                self._cache.move_to_end(schema_id)
        if found is None:
            found = self._fetch(schema_id)
            with self._lock:
                self._cache[schema_id] = found
                if isinstance(found, CodecError):
                    self._refused_at[schema_id] = self._clock()
                else:
                    self._refused_at.pop(schema_id, None)
                while len(self._cache) > self._cache_size:
                    self._refused_at.pop(self._cache.popitem(last=False)[0], None)
        if isinstance(found, CodecError):
            # a new instance each time: re-raising the cached one would chain every raise's frames (and
            # the record bytes they hold) onto its traceback, without bound
            raise type(found)(*found.args)
        return found

    def remember(self, registered: RegisteredSchema) -> None:
        """Keep a schema whose id is known without asking (what `register` just sent): a worker reads
        back the values it writes (milestones, say) without a lookup."""
        with self._lock:
            self._cache[registered.schema_id] = registered
            self._refused_at.pop(registered.schema_id, None)
            while len(self._cache) > self._cache_size:
                self._refused_at.pop(self._cache.popitem(last=False)[0], None)

    def _fetch(self, schema_id: int) -> RegisteredSchema | CodecError:
        try:
            answer = self._request("GET", f"/schemas/ids/{schema_id}")
        except ResponseTooLarge:
            return SchemaMismatch(f"the schema registered under id {schema_id} is over {MAX_RESPONSE_BYTES:,} bytes")
        except RegistryRefused as exc:
            if exc.status == 404:  # 40403 schema not found
                return UnknownSchemaId(f"the schema registry has no schema with id {schema_id} ({exc})")
            # credentials revoked, a proxy refusing: the operator's to fix, never the record's
            raise RegistryUnavailable(f"the schema registry refused to give schema {schema_id}: {exc}") from exc
        text = answer.get("schema")
        if not isinstance(text, str):
            raise RegistryUnavailable(f"the schema registry's answer for id {schema_id} has no schema text")
        schema_type = answer.get("schemaType") or "AVRO"
        return RegisteredSchema(schema_id, text, str(schema_type))

    # --- writing and start-up checks --------------------------------------------------------------

    def register(self, subject: str, schema: str) -> int:
        """Register `schema` (Avro, JSON text) under `subject`; its id (the same id when already there)."""
        answer = self._request("POST", f"/subjects/{_seg(subject)}/versions", {"schema": schema})
        schema_id = answer.get("id")
        if not isinstance(schema_id, int) or isinstance(schema_id, bool):
            raise RegistryUnavailable(f"the schema registry's answer to registering {subject} has no id")
        self.remember(RegisteredSchema(schema_id, schema))
        return schema_id

    def compatibility(self, subject: str, schema: str) -> tuple[bool, list[str]]:
        """Whether `schema` may follow the latest version of `subject` under the subject's compatibility
        level, with the registry's reasons (verbose); a subject without versions takes any schema."""
        try:
            answer = self._request("POST", f"/compatibility/subjects/{_seg(subject)}/versions/latest",
                                   {"schema": schema}, params={"verbose": "true"})
        except RegistryRefused as exc:
            if exc.status == 404:  # 40401 subject not found, 40402 version not found: nothing to break
                return True, []
            raise
        messages = answer.get("messages") or []  # Confluent's verbose answer; Apicurio gives one "reason"
        reasons = [str(m) for m in messages][:5] if isinstance(messages, list) else [str(messages)]
        if isinstance(answer.get("reason"), str):
            reasons.append(answer["reason"])
        return answer.get("is_compatible") is True, reasons

    def level(self, subject: str) -> str:
        """The compatibility level in force for `subject`: its own, else the registry's global one."""
        try:
            answer = self._request("GET", f"/config/{_seg(subject)}", params={"defaultToGlobal": "true"})
        except RegistryRefused as exc:
            if exc.status != 404:  # 40401/40408: no level of its own, on a registry without defaultToGlobal
                raise
            answer = self._request("GET", "/config")
        return str(answer.get("compatibilityLevel") or answer.get("compatibility") or "").upper()

    def set_level(self, subject: str, level: str) -> None:
        self._request("PUT", f"/config/{_seg(subject)}", {"compatibility": level})

    # --- transport --------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                 params: dict[str, str] | None = None) -> dict[str, Any]:
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": CONTENT_TYPE} if content is not None else None
        where = f"{method} {self.url}{path}"
        try:
            with self._http.stream(method, path, content=content, params=params, headers=headers) as response:
                status = response.status_code
                raw = _read_bounded(response, where)
        except httpx.TimeoutException as exc:
            raise RegistryUnavailable(f"the schema registry did not answer {where} in time ({type(exc).__name__})"
                                      ) from exc
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"cannot reach the schema registry ({where}: {exc or type(exc).__name__})"
                                      ) from exc
        answer = _json(raw)
        if status == 429 or status >= 500:
            raise RegistryUnavailable(f"the schema registry answered {where} with HTTP {status}: "
                                      f"{_message(answer, raw)}")
        if status >= 400 or status < 200:
            code = answer.get("error_code") if isinstance(answer, dict) else None
            raise RegistryRefused(status, code if isinstance(code, int) else None, _message(answer, raw))
        if not isinstance(answer, dict):
            raise RegistryUnavailable(f"the schema registry answered {where} with something other than "
                                      f"a JSON object: {raw[:100]!r}")
        return answer


def _seg(subject: str) -> str:
    """A subject as one URL path segment (a subject may hold any character but a control one)."""
    return quote(subject, safe="")


def _read_bounded(response: httpx.Response, where: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise ResponseTooLarge(response.status_code, None, f"the schema registry's answer to {where} is over "
                                                               f"{MAX_RESPONSE_BYTES:,} bytes; refused")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        return None


def _message(answer: object, raw: bytes) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("message"), str):
        return " ".join(str(answer["message"]).split())[:300]
    return repr(raw[:200])
