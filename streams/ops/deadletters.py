"""`milestones deadletter list | replay`: find what a stage could not process, and send it back once fixed.

Why a replay marker: replaying the same dead letter twice would feed the same input twice. Each
replay is recorded on `deadletter.replays` (keyed by the dead letter's own id, `partition:offset`)
before the record is re-published, so a second replay of the same dead letter is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from milestone_stream.kafka_io import producer, read_topic
from milestone_stream.schemas.records import DeadLetter
from milestone_stream.topics import TopicNames


@dataclass(frozen=True)
class Parked:
    id: str                # partition:offset on the dead-letter topic
    letter: DeadLetter
    replayed_at: str | None


async def parked(bootstrap: str, names: TopicNames, *, stage: str | None = None, reason: str | None = None,
                 since: datetime | None = None) -> list[Parked]:
    replay_records = await read_topic(bootstrap, names.deadletter_replays, idle_ms=300)
    replays = {r.key.decode(): r.value.decode() for r in replay_records}
    found, origins = [], set()
    for r in await read_topic(bootstrap, names.deadletter, idle_ms=300):
        letter = DeadLetter.from_avro(r.value)
        if (stage and letter.stage != stage) or (reason and letter.reason != reason) or \
                (since and letter.failed_at < since):
            continue
        origin = (letter.stage, letter.reason, letter.topic, letter.partition, letter.offset)
        if origin in origins:  # the same record parked again (a re-read after a crash, another UI process)
            continue
        origins.add(origin)
        id_ = f"{r.partition}:{r.offset}"
        found.append(Parked(id_, letter, replays.get(id_)))
    return sorted(found, key=lambda p: p.letter.failed_at)


class AlreadyReplayed(Exception):
    pass


MAX_REPLAY_BYTES = 16 * 1024 * 1024  # the broker's limit applies; the client's must not be lower


async def _original(bootstrap: str, letter: DeadLetter) -> tuple[bytes | None, bytes | None]:
    """The original record of a dead letter that could not keep its value (KeyError when retention dropped it)."""
    tp = TopicPartition(letter.topic, letter.partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                max_partition_fetch_bytes=MAX_REPLAY_BYTES, fetch_max_bytes=MAX_REPLAY_BYTES)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, letter.offset)
        records = (await consumer.getmany(tp, timeout_ms=10_000)).get(tp, [])
        if not records or records[0].offset != letter.offset:
            raise KeyError(f"the original of this dead letter ({letter.topic}[{letter.partition}]@{letter.offset}) "
                           "is no longer on its topic")
        return records[0].key, records[0].value
    finally:
        await consumer.stop()


async def replay(bootstrap: str, names: TopicNames, ids: list[str]) -> list[Parked]:
    """Re-publish the chosen dead letters' raw records to their original topics, each at most once."""
    by_id = {p.id: p for p in await parked(bootstrap, names)}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise KeyError(f"no dead letter with id {', '.join(missing)} (see `milestones deadletter list`)")
    done = [by_id[i] for i in ids if by_id[i].replayed_at]
    if done:
        raise AlreadyReplayed(f"already replayed: {', '.join(f'{p.id} at {p.replayed_at}' for p in done)}")
    async with producer(bootstrap, max_request_size=MAX_REPLAY_BYTES) as prod:
        for i in ids:
            letter = by_id[i].letter
            key, value = letter.key, letter.value
            if value is None:  # too large to keep in the dead letter: read it where it came from
                key, value = await _original(bootstrap, letter)
            now = datetime.now(UTC).isoformat()
            await prod.send_and_wait(names.deadletter_replays, key=i.encode(), value=now.encode())
            await prod.send_and_wait(letter.topic, key=key, value=value)
    return [by_id[i] for i in ids]


def describe(p: Parked) -> str:
    letter = p.letter
    state = f"  replayed {p.replayed_at}" if p.replayed_at else ""
    return (f"{p.id:<10} {letter.failed_at:%Y-%m-%d %H:%M:%S} {letter.stage:<9} {letter.reason:<20} "
            f"from {letter.topic}[{letter.partition}]@{letter.offset}{state}\n           {letter.error}")
