"""Small aiokafka helpers shared by the CLI, the tests and the benchmark."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord


@asynccontextmanager
async def producer(bootstrap_servers: str, **config: Any) -> AsyncIterator[AIOKafkaProducer]:
    """An idempotent producer (acks=all), stopped on exit."""
    prod = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=True, acks="all",
                            linger_ms=config.pop("linger_ms", 5), **config)
    await prod.start()
    try:
        yield prod
    finally:
        await prod.stop()


async def read_topic(bootstrap_servers: str, topic: str, *, idle_ms: int = 1500,
                     isolation_level: str = "read_committed") -> list[ConsumerRecord]:
    """Every record now in `topic` from the beginning, read_committed, without a consumer group.

    Stops when every partition has reached the end offset seen at start (or after `idle_ms` of silence).
    """
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap_servers, group_id=None,
                                enable_auto_commit=False, isolation_level=isolation_level,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = await wait_for(consumer.assignment, timeout=10, what=f"partitions of {topic}")
        end = await consumer.end_offsets(list(partitions))
        records: list[ConsumerRecord] = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=idle_ms)
            if not batch:
                break
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


T = TypeVar("T")


async def wait_for(predicate: Callable[[], T | Awaitable[T]], timeout: float, interval: float = 0.2,
                   what: str = "condition") -> T:
    """Await until `predicate()` (sync or async) returns a truthy value, or fail after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return cast(T, result)  # awaited above when predicate is async
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)
