"""Against the real broker: codec round trip, dead letters for every bad-input case, the launcher."""
import asyncio
from datetime import UTC, datetime

from milestone_stream.deadletter import DeadLetters, decode_or_park
from milestone_stream.dev.kafka_local import LocalKafka, answers_metadata
from milestone_stream.kafka_io import producer, read_topic
from milestone_stream.schemas.records import DeadLetter, TelemetryEvent
from milestone_stream.topics import ensure_topics

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def event(i: int, **kw) -> TelemetryEvent:
    base = dict(event_id=f"e{i}", account_id=f"acct{i % 3}", metric="emails_sent", value=float(i),
                occurred_at=NOW, source="platform.mailer")
    return TelemetryEvent(**{**base, **kw})


async def test_produce_consume_round_trip_through_the_codec(kafka_bootstrap, created_topics):
    sent = [event(i) for i in range(30)]
    async with producer(kafka_bootstrap) as prod:
        for e in sent:
            await prod.send(created_topics.telemetry, key=e.account_id.encode(), value=e.to_avro())
    records = await read_topic(kafka_bootstrap, created_topics.telemetry)
    received = [TelemetryEvent.from_avro(r.value) for r in records]
    assert sorted(received, key=lambda e: e.event_id) == sorted(sent, key=lambda e: e.event_id)
    # keyed by account: one account's events share one partition
    partitions = {}
    for r in records:
        partitions.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions.values())


async def test_every_bad_input_lands_in_deadletter_with_reason_and_origin(kafka_bootstrap, created_topics):
    good = event(1).to_avro()
    bad = {
        "wrong_marker": b"\x01\x01" + good[2:],  # (a first byte 00 is the Confluent wire format's magic)
        "no_schema_registry": b"\x00\x00\x00\x00\x01" + good[10:],  # Confluent-framed, no registry configured
        "unknown_schema": good[:2] + b"\xff" * 8 + good[10:],
        "corrupt_body": good[:-3],
        # decodes, but breaks the model: an empty account id
        "invalid": TelemetryEvent.model_construct(**{**event(3).model_dump(), "account_id": ""}).to_avro(),
    }
    async with producer(kafka_bootstrap) as prod:
        for reason, value in bad.items():
            await prod.send_and_wait(created_topics.telemetry, key=reason.encode(), value=value)
        await prod.send_and_wait(created_topics.telemetry, key=b"good", value=good)

        letters = DeadLetters(created_topics.deadletter,
                              lambda topic, key, value: prod.send_and_wait(topic, key=key, value=value))
        decoded = []
        for r in await read_topic(kafka_bootstrap, created_topics.telemetry):
            rec = await decode_or_park(TelemetryEvent, value=r.value, key=r.key, topic=r.topic,
                                       partition=r.partition, offset=r.offset, stage="test", dead_letters=letters)
            if rec is not None:
                decoded.append(rec)
    assert [d.event_id for d in decoded] == ["e1"]  # the stream went on past every bad record
    parked = {}
    for r in await read_topic(kafka_bootstrap, created_topics.deadletter):
        dl = DeadLetter.from_avro(r.value)
        parked[dl.key.decode()] = dl
    assert set(parked) == set(bad)
    for reason, dl in parked.items():
        assert dl.reason == reason, dl
        assert dl.value == bad[reason] and dl.topic == created_topics.telemetry and dl.stage == "test"
        assert dl.error and dl.offset >= 0 and dl.partition >= 0
    assert "account_id" in parked["invalid"].error


async def test_launcher_start_stop_restart_keeps_data(tmp_path):
    kafka = LocalKafka(tmp_path / "broker")
    await asyncio.to_thread(kafka.start)
    try:
        first_address = kafka.bootstrap_servers
        await ensure_topics(first_address, ["kept"], partitions=2)
        async with producer(first_address) as prod:
            await prod.send_and_wait("kept", key=b"k", value=b"survives a restart")
    finally:
        await asyncio.to_thread(kafka.stop)
    assert kafka.process is None and not await answers_metadata(first_address)

    await asyncio.to_thread(kafka.start)  # same data directory: same cluster, same log
    try:
        records = await read_topic(kafka.bootstrap_servers, "kept")
        assert [r.value for r in records] == [b"survives a restart"]
        assert (tmp_path / "broker" / "broker.log").stat().st_size > 0
    finally:
        await asyncio.to_thread(kafka.stop)


def test_launcher_kills_a_stuck_broker(tmp_path):
    kafka = LocalKafka(tmp_path / "broker")
    kafka.start()
    proc = kafka.process
    proc.send_signal(19)  # SIGSTOP: the broker can no longer answer SIGTERM
    kafka.stop(timeout=2)
    assert proc.poll() is not None
