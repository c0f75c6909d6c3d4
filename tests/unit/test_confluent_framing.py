"""The Confluent wire format (pure logic, no broker, no registry).

No schema registry runs in these tests (see docs/schema-registry.md, "Tests"): the values are byte
vectors built by hand from the format's definition — magic byte 0x00, the schema id as 4 bytes
big-endian, then the Avro binary body — and the writer schemas are put in the registry client's
cache with `remember` (what a registration leaves there), so no HTTP answer is invented. What needs
the network is tested against a closed port: an unreachable registry is an outage, never a dead letter.
"""
import asyncio
import socket
from datetime import UTC, datetime

import pytest

from milestone_stream import schemas
from milestone_stream.deadletter import DeadLetters, decode_or_park, is_outage
from milestone_stream.schema_registry import start, subjects
from milestone_stream.schemas import confluent, wire
from milestone_stream.schemas.codec import CorruptBody, codec
from milestone_stream.schemas.records import DeadLetter, TelemetryEvent
from milestone_stream.schemas.registry import RegisteredSchema, RegistryUnavailable, SchemaRegistry
from milestone_stream.settings import ConfigError, Settings

# --- hand-built vectors ------------------------------------------------------------------------------
# A TelemetryEvent written by a producer with the v1 contract (schemas/history/telemetry_event.v1.avsc:
# event_id, account_id, metric, value, occurred_at, source), registered under id 42.
# Avro binary: a string is its length as a zig-zag varint then UTF-8; a double is 8 bytes little-endian;
# a long (timestamp-millis) is a zig-zag varint.
V1_ID = 42
V1_HEADER = bytes([0x00, 0x00, 0x00, 0x00, 0x2A])  # magic 0, id 42 big-endian
V1_BODY = bytes([
    0x04, 0x65, 0x31,                                # event_id "e1"   (length 2 → zig-zag 4)
    0x04, 0x61, 0x31,                                # account_id "a1"
    0x02, 0x6D,                                      # metric "m"      (length 1 → zig-zag 2)
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xF0, 0x3F,  # value 1.0 (IEEE 754, little-endian)
    0xD0, 0x0F,                                      # occurred_at 1000 ms → zig-zag 2000 → varint D0 0F
    0x02, 0x73,                                      # source "s"
])
V1_VALUE = V1_HEADER + V1_BODY
V1_RECORD = TelemetryEvent(event_id="e1", account_id="a1", metric="m", value=1.0,
                           occurred_at=datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), source="s")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def text(name: str) -> str:
    import json

    return json.dumps(schemas.load(name))


@pytest.fixture
def registry():
    """A registry client whose cache holds the v1 telemetry schema under id 42; the codec uses it."""
    reg = SchemaRegistry(f"http://127.0.0.1:{closed_port()}")
    v1 = next(s for s in schemas.history() if s["name"] == "TelemetryEvent" and "attributes" not in
              [f["name"] for f in s["fields"]])
    import json

    reg.remember(RegisteredSchema(V1_ID, json.dumps(v1)))
    confluent.configure(reg)
    yield reg
    confluent.configure(None)
    reg.close()


# --- framing ----------------------------------------------------------------------------------------

def test_frame_is_magic_then_big_endian_id_then_body():
    assert wire.frame(42, b"body") == b"\x00\x00\x00\x00\x2abody"
    assert wire.frame(0x01020304, b"") == bytes([0, 1, 2, 3, 4])
    assert wire.schema_id(wire.frame(wire.MAX_ID, b"")) == 2**31 - 1
    assert bytes(wire.body(V1_VALUE)) == V1_BODY


@pytest.mark.parametrize("data", [b"\x00", b"\x00\x00\x00\x00"], ids=["magic-only", "id-cut-short"])
def test_truncated_header_is_corrupt(data):
    with pytest.raises(CorruptBody, match="shorter than the 5-byte Confluent header"):
        wire.schema_id(data)
    with pytest.raises(CorruptBody):
        TelemetryEvent.from_avro(data)


@pytest.mark.parametrize("schema_id", [2**32 - 1, 2**31])
def test_an_id_no_registry_issues_is_refused_without_a_lookup(schema_id, registry):
    data = b"\x00" + schema_id.to_bytes(4, "big") + V1_BODY
    with pytest.raises(wire.UnknownSchemaId, match=f"schema id {schema_id} is beyond"):
        TelemetryEvent.from_avro(data)  # the registry is a closed port: a lookup would be an outage instead


def test_frame_refuses_ids_outside_int32():
    for bad in (-1, 2**31):
        with pytest.raises(ValueError):
            wire.frame(bad, b"")


# --- decoding ---------------------------------------------------------------------------------------

def test_without_a_registry_a_confluent_value_is_a_dead_letter_reason():
    confluent.configure(None)
    with pytest.raises(wire.NoSchemaRegistry, match="no schema registry is configured") as caught:
        TelemetryEvent.from_avro(V1_VALUE)
    assert caught.value.reason == "no_schema_registry"


def test_v1_writer_resolves_against_the_current_contract(registry):
    decoded = TelemetryEvent.from_avro(V1_VALUE)
    assert decoded == V1_RECORD
    assert decoded.attributes == {} and decoded.origin is None  # v2 and v3 fields take their defaults


def test_empty_body_and_trailing_bytes_are_corrupt(registry):
    with pytest.raises(CorruptBody, match="does not decode"):
        TelemetryEvent.from_avro(V1_HEADER)
    with pytest.raises(CorruptBody, match="1 trailing bytes"):
        TelemetryEvent.from_avro(V1_VALUE + b"\x00")
    with pytest.raises(CorruptBody):
        TelemetryEvent.from_avro(V1_HEADER + V1_BODY[:-1])


def test_a_megabyte_of_garbage_is_corrupt_not_a_crash(registry):
    garbage = V1_HEADER + bytes([0x7F]) * 1_000_000  # a string length of -64: no valid read
    with pytest.raises(CorruptBody):
        TelemetryEvent.from_avro(garbage)


def test_a_writer_the_contract_cannot_resolve_is_a_schema_mismatch(registry):
    import json

    v1 = json.loads(text("telemetry_event"))
    v1["fields"] = [dict(f, type="string") if f["name"] == "value" else f for f in v1["fields"]]
    registry.remember(RegisteredSchema(43, json.dumps(v1)))
    data = wire.frame(43, V1_BODY)
    with pytest.raises(wire.SchemaMismatch, match="does not resolve") as caught:
        TelemetryEvent.from_avro(data)
    assert caught.value.reason == "schema_mismatch"


@pytest.mark.parametrize(("registered", "match"), [
    (RegisteredSchema(50, text("milestone")), "not the record"),              # another topic's contract
    (RegisteredSchema(51, '{"type": "record", "name": "TelemetryEvent", "fields": [{"name": "x"}]}'),
     "not a valid Avro schema"),
    (RegisteredSchema(55, '{"type": "record", "name": "other.TelemetryEvent", "fields": []}'),
     "does not resolve"),  # the same unqualified name matches; the reader's fields lack defaults
    (RegisteredSchema(52, "not json"), "not a valid Avro schema"),
    (RegisteredSchema(53, '"string"'), "not the record"),
    (RegisteredSchema(54, 'syntax = "proto3";', "PROTOBUF"), "not Avro"),
])
def test_registered_schemas_that_are_not_this_contract(registry, registered, match):
    registry.remember(registered)
    with pytest.raises(wire.SchemaMismatch, match=match):
        TelemetryEvent.from_avro(wire.frame(registered.schema_id, V1_BODY))


def test_single_object_values_are_still_read_beside_confluent_ones(registry):
    assert TelemetryEvent.from_avro(V1_RECORD.to_avro()) == V1_RECORD
    assert TelemetryEvent.from_avro(V1_VALUE) == V1_RECORD


# --- writing ----------------------------------------------------------------------------------------

def test_writer_frames_with_the_registered_id_and_reads_back(registry):
    registry.remember(RegisteredSchema(7, text("telemetry_event")))
    confluent.configure(registry, {"telemetry_event": 7})
    data = V1_RECORD.to_avro()
    assert data[:5] == b"\x00\x00\x00\x00\x07"
    assert TelemetryEvent.from_avro(data) == V1_RECORD
    assert codec("milestone").encode  # other schemas without an id keep the single-object encoding
    confluent.configure(registry)
    assert V1_RECORD.to_avro()[:2] == b"\xc3\x01"


# --- the registry is down: an outage, never a dead letter ------------------------------------------

def test_an_unreachable_registry_is_an_outage_and_is_not_cached():
    reg = SchemaRegistry(f"http://127.0.0.1:{closed_port()}", timeout=2)
    for _ in range(2):  # not remembered: the next record asks again
        with pytest.raises(RegistryUnavailable, match="cannot reach the schema registry") as caught:
            reg.schema(7)
        assert is_outage(caught.value)
    assert not reg.is_cached(7)


def test_decode_or_park_does_not_dead_letter_when_the_registry_is_down():
    reg = SchemaRegistry(f"http://127.0.0.1:{closed_port()}", timeout=2)
    confluent.configure(reg)
    sent: list[bytes] = []

    async def produce(topic, key, value):
        sent.append(value)

    letters = DeadLetters("deadletter", produce)
    where = dict(key=b"a1", topic="telemetry.events", partition=0, offset=5, stage="usage", dead_letters=letters)
    try:
        with pytest.raises(RegistryUnavailable):
            asyncio.run(decode_or_park(TelemetryEvent, value=V1_VALUE, **where))
        assert sent == []
        # a header cut short is the record's fault: parked even with the registry down
        assert asyncio.run(decode_or_park(TelemetryEvent, value=b"\x00\x00", **where)) is None
        assert DeadLetter.from_avro(sent[0]).reason == "corrupt_body"
    finally:
        confluent.configure(None)


def test_decode_or_park_parks_a_confluent_value_without_a_registry():
    confluent.configure(None)
    sent: list[bytes] = []

    async def produce(topic, key, value):
        sent.append(value)

    got = asyncio.run(decode_or_park(TelemetryEvent, value=V1_VALUE, key=b"a1", topic="t", partition=0, offset=1,
                                     stage="usage", dead_letters=DeadLetters("deadletter", produce)))
    assert got is None
    letter = DeadLetter.from_avro(sent[0])
    assert (letter.reason, letter.value) == ("no_schema_registry", V1_VALUE)


# --- start-up ---------------------------------------------------------------------------------------

def test_subjects_follow_the_topic_name_strategy_with_the_prefix():
    found = {s.name: s.schema_name for s in subjects("t1.")}
    assert found["t1.telemetry.events-value"] == "telemetry_event"
    assert found["t1.deadletter-value"] == "dead_letter"
    assert "t1.milestones.drafter-clock-value" not in found  # raw bytes, no contract


def test_writing_confluent_needs_a_registry_url():
    with pytest.raises(ConfigError) as caught:
        start(Settings.from_env({"MILESTONES_WIRE_FORMAT": "confluent"}))
    assert caught.value.code == 2 and "needs MILESTONES_SCHEMA_REGISTRY_URL" in str(caught.value)


def test_an_unreachable_registry_stops_start_up_with_one_line():
    port = closed_port()
    with pytest.raises(ConfigError) as caught:
        start(Settings.from_env({"MILESTONES_SCHEMA_REGISTRY_URL": f"http://user:pw@127.0.0.1:{port}"}))
    message = str(caught.value)
    assert caught.value.code == 2 and "\n" not in message
    assert f"cannot use the schema registry at http://127.0.0.1:{port}" in message
    assert "pw" not in message  # credentials in the URL are not printed


def test_a_bad_wire_format_or_url_is_a_config_error():
    for env in ({"MILESTONES_WIRE_FORMAT": "avro"}, {"MILESTONES_SCHEMA_REGISTRY_URL": "registry:8081"}):
        with pytest.raises(ConfigError):
            Settings.from_env(env)
