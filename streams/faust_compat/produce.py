"""Records sent at once: Kafka record batches closed when queued, handed straight to the app's aiokafka producer.

Why: a send through Faust's producer waits out the producer's linger (`MILESTONES_PRODUCER_LINGER`) before
its batch leaves. A step that waits for its records' acknowledgements before it goes on — `Runtime.emit`,
so that no row records a milestone the log lacks — paid that linger once per batch it emitted from: at
11,500 events/s with a milestone every 25 events, 3.5-3.8 s of the worker's 24 s (bench/results.md,
2026-11-26, the 11:59 latency runs). A closed batch is sent without waiting, and the wait is the broker's round trip.

`send_now` partitions as a keyed `send` does (aiokafka's default partitioner over the topic's partitions),
so an account's records keep their partition and their order. `write_many` (tables.py) queues its changelog
batches through `send_in_order` too. Under exactly_once Faust sends through a transactional producer per
partition, so there `send_now` falls back to Faust's `send`. The aiokafka producer is Faust's private
`Producer._ensure_producer` (declared in private.py), the one Faust flushes before it commits offsets.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust.types import AppT, TopicT

_PARTITIONER = DefaultPartitioner()


def aiokafka_producer(app: AppT) -> Any:
    """The app's own aiokafka producer (Faust's private `Producer._ensure_producer`)."""
    return app.producer._ensure_producer()  # type: ignore[attr-defined]


def check_size(key: bytes | None, value: bytes, limit: int, what: str) -> None:
    """Refuse a record over the producer's `max_request_size`, as aiokafka's `send` does (a batch takes any
    first record, whatever its size)."""
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])
    if size > limit:
        raise MessageSizeTooLargeError(f"a {what} record of {size} bytes is over max_request_size {limit}")


def append(producer: Any, builders: list[Any], key: bytes | None, value: bytes) -> None:
    """Add a record to a partition's batches (`builders`), opening another batch when the last is full."""
    if not builders or builders[-1].append(key=key, value=value, timestamp=None) is None:
        builders.append(producer.create_batch())
        builders[-1].append(key=key, value=value, timestamp=None)  # (an empty batch takes any record)


async def send_in_order(producer: Any, topic: str, partition: int, builders: list[Any],
                        then: Callable[[asyncio.Future, int], None] | None = None) -> list[asyncio.Future]:
    """Queue a partition's batches in order (aiokafka waits until the partition's previous batch is drained),
    each closed: sent without waiting out the linger, and no other send can join it. One future per batch;
    `then(future, records in the batch)` is called as each is queued."""
    acks = []
    for builder in builders:
        count = builder.record_count()
        builder.close()
        acks.append(acked := await producer.send_batch(builder, topic, partition=partition))
        if then is not None:
            then(acked, count)
    return acks


async def send_now(app: AppT, topic: TopicT, records: Sequence[tuple[bytes, bytes]]) -> None:
    """Send each (key, value) to `topic` and return once all are acknowledged; the first failure raises."""
    if not records:
        return
    if app.in_transaction:
        pending = [await topic.send(key=key, value=value) for key, value in records]
        for one in pending:
            await one
        return
    producer, name = aiokafka_producer(app), topic.get_topic_name()
    partitions = sorted(await producer.partitions_for(name))
    limit = app.conf.producer_max_request_size
    batches: dict[int, list[Any]] = {}
    for key, value in records:
        check_size(key, value, limit, name)
        partition = _PARTITIONER(key, partitions, partitions)
        append(producer, batches.setdefault(partition, []), key, value)
    sent = await asyncio.gather(*(send_in_order(producer, name, partition, builders)
                                  for partition, builders in batches.items()))
    for acks in sent:
        for ack in acks:
            await ack
