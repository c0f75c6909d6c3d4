"""The record loop of an outbox stage (the sender, the Gainsight stage): each input record handled in
order, then its offset committed.

Why one loop: both stages keep the same promise, and it lives in these few lines. A record whose
handling raises is a poison pill: dead-lettered under the stage's name, and the stream goes on. An
outage (the broker, the network) is raised instead, so the process stops with nothing committed and
reads the record again after its restart. A commit refused because the partition moved in a
rebalance ends the batch: the new owner reads the record again and recognises it from its outcome.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import CommitFailedError, IllegalStateError

from milestone_stream.deadletter import DeadLetters, is_outage

log = logging.getLogger("milestone_stream.sinks")


def stage_consumer(bootstrap: str, group_id: str, retry_seconds: float) -> AIOKafkaConsumer:
    """An outbox stage's consumer: committed by hand after each record, read_committed, from the start;
    one record may be retried for `retry_seconds`, so a rebalance must not wait for the poll interval."""
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
                            auto_offset_reset="earliest", isolation_level="read_committed",
                            max_poll_interval_ms=int((retry_seconds + 600) * 1000),
                            rebalance_timeout_ms=30_000, session_timeout_ms=10_000)


async def handle_each(consumer: AIOKafkaConsumer, stage: str, handle: Callable[[ConsumerRecord], Awaitable[object]],
                      dead: DeadLetters, loaded: asyncio.Event, stop: asyncio.Event) -> None:
    """Until `stop`: each record fetched is handled (once the stage's state is `loaded`), or dead-lettered,
    then committed."""
    while not stop.is_set():
        batch = await consumer.getmany(timeout_ms=500)
        if batch:
            await loaded.wait()
        for tp, records in batch.items():
            for r in records:
                try:
                    await handle(r)
                except Exception as exc:  # a poison pill: parked, and the stream goes on
                    if is_outage(exc):
                        raise  # the broker or network: stop uncommitted, read it again after
                    await dead.failed(stage, r, exc)
                try:
                    await consumer.commit({tp: r.offset + 1})
                except (CommitFailedError, IllegalStateError) as exc:
                    log.warning("commit refused after a rebalance; the record will be seen again "
                                "and recognised from its outcome", extra={"stage": stage, "error": str(exc)})
                    break
