"""The Confluent wire format with a real broker and real worker processes (no schema registry runs here:
see docs/schema-registry.md, "Tests").

A Confluent-framed value (magic byte 00, a 4-byte big-endian schema id, the Avro body) that reaches a
worker without MILESTONES_SCHEMA_REGISTRY_URL is a dead letter `no_schema_registry`, with its bytes
and origin, and the stream goes on; a process told to write the format without a registry, or given
a registry that does not answer, stops at start-up with one line and exit status 2.
"""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from fastavro import parse_schema, schemaless_writer

from milestone_stream import schemas
from milestone_stream.kafka_io import producer, wait_for
from milestone_stream.schemas.records import TelemetryEvent
from milestone_stream.topics import ensure_topics

from support.helpers import Worker, dead_letters, final_totals, publish

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def confluent_value(event: TelemetryEvent, schema_id: int) -> bytes:
    """What a Confluent serializer writes: 00, the id big-endian, the Avro binary body."""
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(schemas.load("telemetry_event")), event.model_dump())
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


async def test_without_a_registry_a_confluent_value_is_dead_lettered_and_the_stream_goes_on(
        kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    framed = confluent_value(TelemetryEvent(event_id="cf-1", account_id="cf", metric="emails_sent", value=700.0,
                                            occurred_at=NOW, source="platform.mailer"), schema_id=7)
    good = TelemetryEvent(event_id="cf-2", account_id="cf", metric="emails_sent", value=30.0,
                          occurred_at=NOW + timedelta(seconds=1), source="platform.mailer")
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path).start()
    try:
        async with producer(kafka_bootstrap) as prod:
            await prod.send_and_wait(topics.telemetry, key=b"cf", value=framed)
        await publish(kafka_bootstrap, topics.telemetry, [good])

        async def parked():
            letters = await dead_letters(kafka_bootstrap, topics.deadletter)
            return letters or None
        [letter] = await wait_for(parked, 90, interval=0.5, what="the framed value dead-lettered")
        assert (letter.stage, letter.reason, letter.topic) == ("usage", "no_schema_registry", topics.telemetry)
        assert letter.value == framed and letter.key == b"cf"
        assert "schema id 7" in letter.error and "MILESTONES_SCHEMA_REGISTRY_URL" in letter.error

        async def counted():
            totals = await final_totals(kafka_bootstrap, topics.prefix)
            return totals if totals.get("cf") == 30.0 else None
        await wait_for(counted, 60, interval=0.5, what="the next event counted, the framed one not")
        assert worker.alive()
    finally:
        assert worker.stop() == 0


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MILESTONES_")}
    return subprocess.run([sys.executable, "-m", "milestone_stream.cli", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", [["worker"], ["sender"], ["deadletter", "list"]])
def test_start_up_stops_with_one_line_when_the_registry_does_not_answer(command, kafka_bootstrap, tmp_path):
    port = closed_port()
    result = run(command, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, MILESTONES_DATA_DIR=str(tmp_path),
                 MILESTONES_SECRET="s" * 40, MILESTONES_SCHEMA_REGISTRY_URL=f"http://127.0.0.1:{port}")
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert f"cannot use the schema registry at http://127.0.0.1:{port}" in lines[0]


def test_writing_the_confluent_format_without_a_registry_stops_with_one_line(kafka_bootstrap, tmp_path):
    result = run(["worker"], KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, MILESTONES_DATA_DIR=str(tmp_path),
                 MILESTONES_WIRE_FORMAT="confluent")
    assert result.returncode == 2 and result.stderr.splitlines() == [
        "milestones: configuration error: MILESTONES_WIRE_FORMAT=confluent needs MILESTONES_SCHEMA_REGISTRY_URL "
        "(the registry that issues the schema ids)"]
