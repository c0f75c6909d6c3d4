"""Follow topics: one consumer without a group reads them from the beginning (read_committed), hands
each record to the caller's `apply`, and lets anyone wait until what the topics held at a moment has
been applied.

Why its own module: state rebuilt from topics must stay current while the process runs, not only be
read once. The approval UI's view follows the approval topics and the outcomes; each sender process
follows `emails.outcomes`, so it sees what other sender processes record (a Slack post made by one,
whose decision another handles), not only what it recorded itself.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from milestone_stream.kafka_io import wait_for
from milestone_stream.schemas import confluent
from milestone_stream.schemas.codec import CodecError
from milestone_stream.schemas.registry import RegistryUnavailable

log = logging.getLogger(__name__)


class Follower:
    """`apply(record)` for every record of `topics`, in order per partition, from start() until stop()."""

    def __init__(self, bootstrap_servers: str, topics: list[str], apply: Callable[[ConsumerRecord], Awaitable[None]],
                 *, name: str) -> None:
        self.name = name  # for the logs: "approval view", "sender outcomes"
        self._apply = apply
        self._bootstrap, self._topics = bootstrap_servers, topics
        self._consumer: AIOKafkaConsumer | None = None  # made in start(), on the running loop
        self._positions: dict[tuple[str, int], int] = {}
        self.changed = asyncio.Condition()  # notified after each batch applied
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(*self._topics, bootstrap_servers=self._bootstrap, group_id=None,
                                          auto_offset_reset="earliest", isolation_level="read_committed",
                                          enable_auto_commit=False)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(self._consumer))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=500)
            except Exception:  # noqa: BLE001 — keep following through broker hiccups; it says so
                log.exception("%s: fetch failed; retrying", self.name)
                await asyncio.sleep(1)
                continue
            for tp, records in batch.items():
                for r in records:
                    await _schema_of(r.value, self.name)
                    try:
                        await self._apply(r)
                    except Exception:  # noqa: BLE001 — `apply` parks what it cannot apply; this is a last resort
                        log.exception("%s: a record could not be applied", self.name,
                                      extra={"origin": f"{r.topic}[{r.partition}]@{r.offset}"})
                    self._positions[(tp.topic, tp.partition)] = r.offset + 1
            if batch:
                async with self.changed:
                    self.changed.notify_all()

    async def caught_up_to(self, topic: str, partition: int, offset: int, timeout: float = 10) -> None:
        """Wait until the record at `offset` has been applied (read-your-writes)."""
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(
                lambda: self._positions.get((topic, partition), 0) > offset), timeout)

    async def caught_up(self, timeout: float = 30) -> None:
        """Wait until everything in the topics at this moment has been applied."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError(f"{self.name}: caught_up() before start()")
        tps = list(await wait_for(consumer.assignment, timeout, what=f"the partitions {self.name} follows"))
        ends = await consumer.end_offsets(tps)
        for tp, end in ends.items():
            if end:
                await self.caught_up_to(tp.topic, tp.partition, end - 1, timeout)


async def _schema_of(value: bytes | None, name: str) -> None:
    """A Confluent-framed value's writer schema, fetched off the event loop; while the schema registry
    cannot answer, wait and ask again (an outage: the record is not the follower's to park). What is the
    record's fault is left to `apply`, which raises it again and parks the record."""
    while True:
        try:
            await confluent.prefetch(value)
            return
        except CodecError:
            return
        except RegistryUnavailable as exc:
            log.warning("%s: the schema registry cannot answer; retrying", name, extra={"error": str(exc)})
            await asyncio.sleep(2)
