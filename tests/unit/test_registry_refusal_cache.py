"""A refusal the registry client caches (an id the registry does not have) must not keep every record
that hit it alive: re-raising one cached exception instance grows its traceback by the raising frames
each time, and those frames hold the record's bytes (review of 548feda).

The registry here is a local HTTP server giving the Confluent Schema Registry's 404 answer for an
unknown id (`{"error_code": 40403, "message": "Schema not found"}`), asked once: the rest come from
the cache.
"""
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from milestone_stream import schemas
from milestone_stream.schemas import confluent, wire
from milestone_stream.schemas.codec import codec
from milestone_stream.schemas.registry import SchemaRegistry

NOT_FOUND = {"error_code": 40403, "message": "Schema 7 not found"}


class _Registry(BaseHTTPRequestHandler):
    """Answers every GET with `answer()` as the Schema Registry's JSON, counting the calls."""

    calls = 0

    def answer(self) -> tuple[int, dict]:
        return 404, NOT_FOUND

    def do_GET(self) -> None:  # noqa: N802 — http.server's name
        type(self).calls += 1
        status, answer = self.answer()
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _NotFound(_Registry):
    calls = 0


@pytest.fixture
def registry() -> Iterator[SchemaRegistry]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    reg = SchemaRegistry(f"http://127.0.0.1:{server.server_address[1]}")
    confluent.configure(reg)
    try:
        yield reg
    finally:
        confluent.configure(None)
        reg.close()
        server.shutdown()
        server.server_close()


def _depth(exc: BaseException) -> int:
    tb, n = exc.__traceback__, 0
    while tb is not None:
        n, tb = n + 1, tb.tb_next
    return n


def test_a_cached_unknown_id_does_not_keep_the_records_that_hit_it(registry: SchemaRegistry) -> None:
    telemetry = codec("telemetry_event")
    depths = []
    for _ in range(50):
        with pytest.raises(wire.UnknownSchemaId) as caught:
            telemetry.decode(wire.frame(7, b"x" * 10_000))
        depths.append(_depth(caught.value))
    assert _NotFound.calls == 1  # the refusal is cached: asked once
    assert depths[-1] == depths[0], f"traceback grew from {depths[0]} to {depths[-1]} frames"
    assert registry.is_cached(7)


class _LateSchema(_Registry):
    """Lacks id 7 until `registered` is set, then serves it (a schema registered after the record was written)."""

    registered = False
    calls = 0

    def answer(self) -> tuple[int, dict]:
        if type(self).registered:
            return 200, {"schema": json.dumps(schemas.load("telemetry_event"))}
        return 404, NOT_FOUND


def test_a_refused_id_is_asked_again_after_the_refusal_window() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LateSchema)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    now = [1000.0]
    reg = SchemaRegistry(f"http://127.0.0.1:{server.server_address[1]}", refusal_seconds=60, clock=lambda: now[0])
    try:
        with pytest.raises(wire.UnknownSchemaId):
            reg.schema(7)
        _LateSchema.registered = True
        now[0] += 59
        with pytest.raises(wire.UnknownSchemaId):  # within the window: the cached refusal, not asked again
            reg.schema(7)
        assert _LateSchema.calls == 1 and reg.is_cached(7)
        now[0] += 1
        assert not reg.is_cached(7)  # (so the worker's prefetch asks off its event loop)
        assert reg.schema(7).schema_id == 7 and _LateSchema.calls == 2
        now[0] += 3600
        assert reg.schema(7).schema_id == 7 and _LateSchema.calls == 2  # a schema found stays cached
    finally:
        reg.close()
        server.shutdown()
        server.server_close()
