"""Faust's aiokafka consumer, corrected: each partition applied in order, and a bounded fetch wait.

Why a subclass that touches private names: the two corrections live where Faust decides what it
commits (`ack`, `_new_offset`, `_unacked_messages`) and where it builds aiokafka's consumer
(`_new_consumer_thread`, `_create_worker_consumer`, `_fetch_max_wait_ms`); no public hook reaches
them. Every private name used here is declared in `private.PRIVATE_NAMES` and checked by
tests/unit/test_faust_compat.py, so a Faust or aiokafka upgrade that moves one fails in CI.

- Around a rebalance a Faust stream skips messages it had already fetched (flow control paused, or
  fetched under an older group generation) and still acknowledges them. Left alone, two things
  lose input: (a) the commit can pass a skipped message — Faust lets the first acked offset sit one
  above the committed one, so a single skipped message at the head is committed past; (b) later
  messages of the same partition can be applied before the skipped one comes back, and the account
  row's offset check then takes the skipped one for a replay (accounts ended one event short).
  `OrderedConsumer` records the lowest skipped offset per partition; until that message comes back
  no later one of the partition is applied (`admit`) nor counted for the commit (`ack`), and the
  partition is sought back to it, so each partition is applied in order, without holes.
- aiokafka sends one fetch request per broker at a time, and Faust lets the broker hold it 1.5 s
  for partitions with no new data; partitions whose records were still buffered when it left wait
  behind it, so the worker idled 1-1.5 s at a time under steady load. `_ConsumerThread` bounds the hold.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer
from faust.transport.drivers.aiokafka import (
    AIOKafkaConsumerThread,
    Consumer as FaustAIOKafkaConsumer,
    Transport as FaustAIOKafkaTransport,
)
from faust.types import TP, AppT, EventT, Message
from mode import ServiceT

from milestone_stream.faust_compat import drain
from milestone_stream.faust_compat.events import current
from milestone_stream.observability import REBALANCE_SKIPS

RESEEK_SECONDS = 2.0  # a seek-back raced by an in-flight fetch is repeated after this long
FETCH_WAIT_SECONDS = 0.1  # longest time the broker may hold a fetch request waiting for new data

log = logging.getLogger("milestone_stream.faust_compat")  # the logger name from before the split


class OrderedConsumer(FaustAIOKafkaConsumer):
    """Faust's consumer, applying each partition in order: nothing passes a skipped message."""

    @property
    def holes(self) -> dict[TP, int]:
        """tp → lowest offset skipped and not yet back."""
        return self.__dict__.setdefault("_ms_holes", {})

    def ack(self, message: Message) -> bool:
        app, tp, offset = self.app, message.tp, message.offset
        skipped = not current(app, message)
        # a message of an older generation needs no hole: each assignment starts its partitions afresh from
        # the committed offset (aiokafka resets every position), which is at or before it
        if skipped and message.generation_id == app.consumer_generation_id and tp in self.assignment():
            if tp not in self.holes:
                REBALANCE_SKIPS.inc()
                log.info("a message was skipped around a rebalance; its partition waits for it",
                         extra={"origin": f"{tp.topic}[{tp.partition}]@{offset}"})
            self.holes[tp] = min(self.holes.get(tp, offset), offset)
        if skipped or offset > self.holes.get(tp, offset):
            message.acked = True  # released, but not counted: the commit stays before the hole
            self._unacked_messages.discard(message)
            return False
        return super().ack(message)

    def admit(self, message: Message) -> bool:
        """May this message be applied now? Not while an earlier one of its partition is missing."""
        tp, offset = message.tp, message.offset
        hole = self.holes.get(tp)
        if hole is None or offset < hole:
            return True
        if offset == hole:
            del self.holes[tp]
            return True
        sought = self.__dict__.setdefault("_ms_sought", {})
        if time.monotonic() - sought.get((tp, hole), 0.0) > RESEEK_SECONDS:
            sought[(tp, hole)] = time.monotonic()
            log.warning("re-reading a partition from a skipped message",
                        extra={"origin": f"{tp.topic}[{tp.partition}]@{hole}"})
            asyncio.ensure_future(self.seek_on_its_thread(tp, hole))
        return False

    async def seek_on_its_thread(self, tp: TP, offset: int) -> None:
        """Seek where aiokafka's consumer lives. Faust's `seek` calls it from this event loop while the
        consumer thread may be inside aiokafka's `fetched_records`, which then failed on a partition the
        seek had just cleared (KeyError), crashing the worker's fetcher; `seek_wait` runs on that thread."""
        await self._thread.seek_wait({tp: offset})

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        """Fetch for a snapshot of the active partitions, and for none when there are none. Faust passes its
        own set, which recovery empties and refills while the fetch waits on the consumer thread, and aiokafka
        reads an empty set as "every partition": a fetch in that moment took up to 5,000 records of an input
        partition not yet active, Faust dropped them as inactive, and with no committed offset to seek back
        to the partition went on after them — those events were never counted (a two-worker kill test,
        2026-11-26: 81 milestones missing, all from the first 5,000 offsets of one partition)."""
        if active_partitions is not None:
            active_partitions = set(active_partitions)
            if not active_partitions:
                return {}
            changelogs = self.app.tables.changelog_topics
            inputs = {tp for tp in active_partitions if tp.topic not in changelogs}
            if inputs and len(inputs) < len(active_partitions):
                return await self._inputs_beside_changelogs(inputs, active_partitions - inputs, timeout)
        return await super()._getmany(active_partitions, timeout)

    async def _inputs_beside_changelogs(self, inputs: set[TP], changelogs: set[TP], timeout: float) -> Any:
        """What is buffered for the input partitions and for the changelog partitions, each asked for apart.
        aiokafka hands out a fetch's records partition by partition in the order they arrived, up to the
        fetch's bound, so a worker that joined and read the others' changelogs as standby took its input
        behind them. Each side now gets its share of every round; only when neither has anything does the
        fetch wait. Two workers, from the second's start to all committed: 52.8 s before, 40.4 s after
        (bench/results.md, one run each)."""
        records = dict(await super()._getmany(inputs, 0))
        records.update(await super()._getmany(changelogs, 0))
        return records or await super()._getmany(inputs | changelogs, timeout)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """Faust's consume loop, or `drain.drain` when a batched agent takes its topic a fetch at a time."""
        if drain.handlers(self.app):
            await drain.drain(self, fetcher)
        else:
            await super()._drain_messages(fetcher)

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: TP) -> int | None:
        hole = self.holes.get(tp)
        offset = super()._new_offset(tp)
        if hole is not None and offset is not None and offset > hole:
            return None  # never commit past a message that was not applied (acks above it are re-made on re-read)
        return offset

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self.holes.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """A new generation starts each partition from its committed offset, which never passed a hole: a hole
        recorded since the revoke (a late acknowledgement) is dropped, or it would send the partition back to
        an offset another worker may since have committed past (identical milestones fired again, once)."""
        for tp in assigned:
            self.holes.pop(tp, None)
        await super().on_partitions_assigned(assigned, generation_id)


class _ConsumerThread(AIOKafkaConsumerThread):
    """aiokafka keeps one fetch request per broker in flight, and Faust lets the broker hold it up to
    1.5 s when its partitions have no new data. Partitions whose records were still buffered when it
    was sent wait for it: the worker fetched nothing for 1-1.5 s at a time and, at 5,000 events/s,
    never caught up (bench/). A shorter hold bounds that wait."""

    def _create_worker_consumer(self, transport: FaustAIOKafkaTransport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = int(FETCH_WAIT_SECONDS * 1000)  # read by aiokafka when it starts its fetcher
        return consumer


def admit(app: AppT, event: EventT) -> bool:
    """False for a message that must wait for an earlier, skipped one of its partition (it will be read again)."""
    consumer = app.consumer
    return consumer.admit(event.message) if isinstance(consumer, OrderedConsumer) else True


def install(app: AppT) -> None:
    """Make `app` build its consumer as an `OrderedConsumer` (before the worker starts it)."""
    # Set on this app's transport instance on purpose, not on Faust's class (another app in the process, e.g.
    # a test's, keeps Faust's consumer); Faust types `Consumer` as a ClassVar of TransportT, hence the ignore.
    app.transport.Consumer = OrderedConsumer  # type: ignore[misc]
