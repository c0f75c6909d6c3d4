"""The Confluent wire format against a real schema registry (Apicurio Registry's Confluent-compatible API,
tests/support/registry.py) and real worker processes on the real broker.

A producer registers its schema under `<topic>-value` and writes `00 <id> <body>`: the worker looks the
id up, resolves that writer schema against the current contract and counts the event; an id the
registry lacks, or a schema of another record, is a dead letter with its reason. A registry that holds
a version the current contract would break stops start-up with one line. A worker told to write the
format registers the product's schemas and writes ids, and its own drafter reads them back. A registry
that goes away mid-stream is an outage: the worker stops without committing and parks nothing.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from fastavro import parse_schema, schemaless_writer

from milestone_stream import schemas
from milestone_stream.dev.registry_local import LocalRegistry
from milestone_stream.kafka_io import producer, read_topic, wait_for
from milestone_stream.schema_registry import subjects
from milestone_stream.schemas import confluent
from milestone_stream.schemas.records import (
    ApprovalRequest,
    Contact,
    CrmChange,
    FieldChange,
    Milestone,
    TelemetryEvent,
)
from milestone_stream.schemas.registry import MAX_RESPONSE_BYTES, SchemaRegistry
from milestone_stream.schemas.wire import SchemaMismatch, UnknownSchemaId
from milestone_stream.topics import ensure_topics

from support.helpers import Worker, dead_letters, final_totals, publish

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
V1 = next(s for s in schemas.history() if s["name"] == "TelemetryEvent"
          and "attributes" not in [f["name"] for f in s["fields"]])


def framed(schema: dict, schema_id: int, record: dict) -> bytes:
    """What a Confluent serializer writes: 00, the id big-endian, the Avro body in the writer schema."""
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(schema, named_schemas={}), record)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


def v1_event(event_id: str, account: str, value: float, seconds: int = 0) -> dict:
    return dict(event_id=event_id, account_id=account, metric="emails_sent", value=value,
                occurred_at=NOW + timedelta(seconds=seconds), source="platform.mailer")


def run_worker(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MILESTONES_")}
    return subprocess.run([sys.executable, "-m", "milestone_stream.cli", "worker"], env={**base, **env},
                          capture_output=True, text=True, timeout=60)


async def test_a_registered_producer_is_read_and_counted_bad_ids_dead_lettered(
        kafka_bootstrap, schema_registry, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    registry = SchemaRegistry(schema_registry)
    # a producer on the v1 contract registers it (TopicNameStrategy) and writes ids
    v1_id = await asyncio.to_thread(registry.register, f"{topics.telemetry}-value", json.dumps(V1))
    other_id = await asyncio.to_thread(registry.register, f"{topics.prefix}other-value",
                                       json.dumps(schemas.load("milestone")))
    unknown_id = 2_000_000_000  # no registry here has issued so many
    values = {
        "counted": framed(V1, v1_id, v1_event("r-1", "reg", 40.0)),
        "unknown": framed(V1, unknown_id, v1_event("r-2", "reg", 1.0, 1)),
        "other": framed(V1, other_id, v1_event("r-3", "reg", 2.0, 2)),
        "also-counted": framed(V1, v1_id, v1_event("r-4", "reg", 2.0, 3)),
    }
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, MILESTONES_SCHEMA_REGISTRY_URL=schema_registry).start()
    try:
        async with producer(kafka_bootstrap) as prod:
            for value in values.values():
                await prod.send_and_wait(topics.telemetry, key=b"reg", value=value)

        async def counted():
            totals = await final_totals(kafka_bootstrap, topics.prefix)
            return totals if totals.get("reg") == 42.0 else None
        await wait_for(counted, 90, interval=0.5, what="both registered events counted")

        async def parked():
            letters = await dead_letters(kafka_bootstrap, topics.deadletter)
            return letters if len(letters) >= 2 else None
        letters = {d.reason: d for d in await wait_for(parked, 30, interval=0.5, what="two dead letters")}
        assert set(letters) == {"unknown_schema_id", "schema_mismatch"}
        assert letters["unknown_schema_id"].value == values["unknown"]
        assert str(unknown_id) in letters["unknown_schema_id"].error
        assert letters["schema_mismatch"].value == values["other"] and "Milestone" in letters["schema_mismatch"].error
        assert all(d.stage == "usage" and d.topic == topics.telemetry for d in letters.values())
        assert worker.alive()
    finally:
        assert worker.stop() == 0
        registry.close()


def test_a_contract_the_registry_would_refuse_stops_start_up_with_one_line(kafka_bootstrap, schema_registry, topics,
                                                                            tmp_path):
    registry = SchemaRegistry(schema_registry)
    subject = f"{topics.telemetry}-value"
    # a version the current contract cannot read: it lacks `metric`, which the contract has no default for
    old = {"type": "record", "name": "TelemetryEvent", "namespace": "milestone_stream",
           "fields": [{"name": "event_id", "type": "string"}, {"name": "account_id", "type": "string"}]}
    registry.register(subject, json.dumps(old))
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "MILESTONES_TOPIC_PREFIX": topics.prefix,
           "MILESTONES_DATA_DIR": str(tmp_path), "MILESTONES_SCHEMA_REGISTRY_URL": schema_registry}
    # the subject is at NONE (Apicurio's default), which takes anything: a writer sets it to BACKWARD
    # first, and under BACKWARD the current contract would break it
    result = run_worker({**env, "MILESTONES_WIRE_FORMAT": "confluent"})
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("milestones: configuration error: the telemetry_event contract would break "
                               f"subject {subject} in the schema registry at {schema_registry} "
                               "(compatibility BACKWARD): "), lines[0]
    assert registry.level(subject) == "BACKWARD"
    # an operator's BACKWARD stops a reader as well
    result = run_worker(env)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert f"would break subject {subject}" in result.stderr
    registry.close()


async def test_a_confluent_writer_registers_its_schemas_and_reads_its_own_milestones(
        kafka_bootstrap, schema_registry, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, MILESTONES_SCHEMA_REGISTRY_URL=schema_registry,
                    MILESTONES_WIRE_FORMAT="confluent", MILESTONES_GATHER_SECONDS="0.2",
                    MILESTONES_DRAFTER_INTERVAL="0.2").start()
    registry = SchemaRegistry(schema_registry)
    confluent.configure(registry)  # this test process reads what the worker wrote
    try:
        profile = CrmChange(change_id="p-w", account_id="w", source="salesforce", occurred_at=NOW,
                            changes=[FieldChange(field="name", value="Writer Inc"),
                                     FieldChange(field="csm_email", value="sam@vendor.example")],
                            contacts=[Contact(name="Jane Doe", email="jane@example.com", role="executive_sponsor")])
        await publish(kafka_bootstrap, topics.crm, [profile])
        async with producer(kafka_bootstrap) as prod:  # a single-object event: both framings are read
            event = TelemetryEvent(**v1_event("w-1", "w", 1200.0))
            await prod.send_and_wait(topics.telemetry, key=b"w", value=event.to_avro())

        async def fired():
            records = await read_topic(kafka_bootstrap, topics.milestones)
            return records or None
        records = await wait_for(fired, 90, interval=0.5, what="milestones written")
        [mine] = [s for s in subjects(topics.prefix) if s.name == f"{topics.milestones}-value"]
        ids = {await asyncio.to_thread(registry.register, mine.name, mine.schema)}  # the id it registered
        assert all(r.value[:1] == b"\x00" and int.from_bytes(r.value[1:5], "big") in ids for r in records)
        assert {Milestone.from_avro(r.value).account_id for r in records} == {"w"}

        async def drafted():
            requests = await read_topic(kafka_bootstrap, topics.approval_requests)
            return requests or None
        [request] = await wait_for(drafted, 60, interval=0.5, what="the drafter read its Confluent milestones")
        assert request.value[:1] == b"\x00"
        assert ApprovalRequest.from_avro(request.value).account_id == "w"
        assert await dead_letters(kafka_bootstrap, topics.deadletter) == []
    finally:
        confluent.configure(None)
        registry.close()
        assert worker.stop() == 0


async def test_a_registry_that_goes_away_mid_stream_stops_the_worker_uncommitted(
        kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    own = LocalRegistry(tmp_path / "registry")  # its own registry: this test stops it
    await asyncio.to_thread(own.start)
    try:
        registry = SchemaRegistry(own.url)
        v1_id = await asyncio.to_thread(registry.register, f"{topics.telemetry}-value", json.dumps(V1))
        registry.close()
        worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, MILESTONES_SCHEMA_REGISTRY_URL=own.url).start()
        # the worker is up (its start-up check passed) once it has counted a single-object event
        await publish(kafka_bootstrap, topics.telemetry, [TelemetryEvent(**v1_event("o-0", "out", 5.0))])
        await wait_for(lambda: _total_is(kafka_bootstrap, topics.prefix, "out", 5.0), 90, interval=0.5,
                       what="the worker running")
    finally:
        await asyncio.to_thread(own.stop)
    try:
        async with producer(kafka_bootstrap) as prod:  # the worker has never looked this id up
            await prod.send_and_wait(topics.telemetry, key=b"out", value=framed(V1, v1_id, v1_event("o-1", "out", 1.0)))
        code = await asyncio.to_thread(worker.process.wait, 90)
        assert code == 71, worker.log.read_text()[-2000:]  # DEAD_LETTER_EXIT: stopped, nothing committed
        log = worker.log.read_text()
        assert "stopping without committing" in log and "RegistryUnavailable" in log
        assert await dead_letters(kafka_bootstrap, topics.deadletter) == []
    finally:
        worker.stop()


async def _total_is(bootstrap: str, prefix: str, account: str, total: float) -> bool | None:
    return (await final_totals(bootstrap, prefix)).get(account) == total or None


def test_the_client_against_the_registry_ids_levels_and_a_schema_too_large(schema_registry, topics):
    registry = SchemaRegistry(schema_registry)
    try:
        subject = f"{topics.prefix}client-value"
        first = registry.register(subject, json.dumps(V1))
        assert registry.register(subject, json.dumps(V1)) == first  # the same schema keeps its id
        fresh = SchemaRegistry(schema_registry)  # nothing cached: the schema comes over HTTP
        got = fresh.schema(first)
        assert json.loads(got.text)["name"] == "TelemetryEvent" and got.schema_type == "AVRO"
        with pytest.raises(UnknownSchemaId):
            fresh.schema(2_000_000_000)
        assert fresh.is_cached(2_000_000_000)  # an id the registry lacks is not asked for again
        registry.set_level(subject, "FULL")
        assert registry.level(subject) == "FULL"
        # a schema over the client's bound (1 MiB) is refused as the record's problem, not read whole
        huge = dict(V1, doc="x" * (MAX_RESPONSE_BYTES + 1))
        big_id = registry.register(f"{topics.prefix}huge-value", json.dumps(huge))
        with pytest.raises(SchemaMismatch, match="over 1,048,576 bytes"):
            fresh.schema(big_id)
        fresh.close()
    finally:
        registry.close()
