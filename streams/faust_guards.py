"""Where Faust logs a failure and goes on, the worker corrects it or stops loudly.

Failure modes seen in this project's crash tests, and what `install` does about them:
- Around a rebalance a Faust stream skips messages it had already fetched (flow control paused, or
  fetched under an older group generation) and still acknowledges them. Left alone, two things
  lose input: (a) the commit can pass a skipped message — Faust lets the first acked offset sit one
  above the committed one, so a single skipped message at the head is committed past; (b) later
  messages of the same partition can be applied before the skipped one comes back, and the account
  row's offset check then takes the skipped one for a replay (accounts ended one event short).
  `OrderedConsumer` records the lowest skipped offset per partition; until that message comes back
  no later one of the partition is applied (`admit`) nor counted for the commit (`ack`), and the
  partition is sought back to it, so each partition is applied in order, without holes.
- Changelog recovery catches every error per record and logs "Error in recovery" as a warning,
  leaving a table partly restored (a worker then counts from wrong totals). `install` adds a log
  filter that turns that warning into an immediate, non-zero exit, so a supervisor sees it and
  nothing is computed from a half-restored table.
- aiokafka sends one fetch request per broker at a time, and Faust lets the broker hold it 1.5 s
  for partitions with no new data; partitions whose records were still buffered when it left wait
  behind it, so the worker idled 1-1.5 s at a time under steady load. `_ConsumerThread` bounds the hold.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from typing import Any, NoReturn

from faust.streams import _current_event
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer as FaustAIOKafkaConsumer

from milestone_stream.deadletter import is_outage
from milestone_stream.observability import PROGRESS, REBALANCE_SKIPS, RUNNING

#: park(agent, message, exc): dead-letter an input whose processing raised
Park = Callable[[str, Any, Exception], Awaitable[object]]

RECOVERY_ERROR_EXIT = 70
DEAD_LETTER_EXIT = 71  # an outage, or a record that could be neither processed nor dead-lettered
RESEEK_SECONDS = 2.0  # a seek-back raced by an in-flight fetch is repeated after this long
FETCH_WAIT_SECONDS = 0.1  # longest time the broker may hold a fetch request waiting for new data

log = logging.getLogger(__name__)


class OrderedConsumer(FaustAIOKafkaConsumer):
    """Faust's consumer, applying each partition in order: nothing passes a skipped message."""

    @property
    def holes(self) -> dict:
        """tp → lowest offset skipped and not yet back."""
        return self.__dict__.setdefault("_ms_holes", {})

    def ack(self, message) -> bool:
        app, tp, offset = self.app, message.tp, message.offset
        skipped = not current(app, message)
        if skipped and tp in self.assignment():
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

    def admit(self, message) -> bool:
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
            log.warning("re-reading a partition from a skipped message", extra={"origin": f"{tp.topic}[{tp.partition}]@{hole}"})
            asyncio.ensure_future(self.seek(tp, hole))
        return False

    def _new_consumer_thread(self):
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp):
        hole = self.holes.get(tp)
        offset = super()._new_offset(tp)
        if hole is not None and offset is not None and offset > hole:
            return None  # never commit past a message that was not applied (acks above it are re-made on re-read)
        return offset

    async def on_partitions_revoked(self, revoked) -> None:
        for tp in revoked:
            self.holes.pop(tp, None)
        await super().on_partitions_revoked(revoked)


class _ConsumerThread(AIOKafkaConsumerThread):
    """aiokafka keeps one fetch request per broker in flight, and Faust lets the broker hold it up to
    1.5 s when its partitions have no new data. Partitions whose records were still buffered when it
    was sent wait for it: the worker fetched nothing for 1-1.5 s at a time and, at 5,000 events/s,
    never caught up (bench/). A shorter hold bounds that wait."""

    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = int(FETCH_WAIT_SECONDS * 1000)  # read by aiokafka when it starts its fetcher
        return consumer


class _StopOnRecoveryError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Error in recovery"):
            print(f"milestones: table recovery failed, stopping the worker: {record.getMessage()}",
                  file=sys.stderr, flush=True)
            logging.shutdown()
            os._exit(RECOVERY_ERROR_EXIT)
        return True


def install(app) -> None:
    """Apply both guards to `app` (before the worker starts it)."""
    app.transport.Consumer = OrderedConsumer
    logging.getLogger("faust.tables.recovery").addFilter(_StopOnRecoveryError())


async def each_in_order(app, stream, agent: str, step, park: Park) -> None:
    """The loop of every agent: each event admitted in partition order, then `step(event)`, measured.

    A step that raises parks its event as a dead letter (`park`) and the loop goes on: Faust would
    otherwise restart the agent and acknowledge the event, losing it without a trace."""
    with RUNNING.loop(agent):
        async for event in stream.events():
            try:
                if admit(app, event):
                    with PROGRESS.record(agent):
                        await step(event)
            except Exception as exc:
                await park_or_stop(park, agent, event.message, exc)


async def batches_in_order(app, stream, agent: str, step, size: int, within: float, park: Park) -> None:
    """The loop of a batched agent: up to `size` events (or what came within `within` seconds), those
    of the current group generation admitted in partition order, then `step(events)`, measured.

    Faust acknowledges a batch's events only after `step` returns; an event of an older generation
    (fetched before a rebalance) is left out, exactly as Faust's own per-event loop skips it. A batch
    whose step raises is taken again one event at a time, so the others are applied and only the
    event that raises is parked (a step writes nothing before its milestones are acknowledged, and
    the rows' input offsets make the second pass skip what the first one already wrote)."""
    with RUNNING.loop(agent):
        async for events in stream.take_events(size, within=within):
            taken = [e for e in events if current(app, e.message) and admit(app, e)]
            if taken:
                with PROGRESS.record(agent, len(taken)):
                    await _batch_or_each(step, taken, agent, park)


async def _batch_or_each(step, taken: list, agent: str, park: Park) -> None:
    try:
        return await step(taken)
    except Exception as exc:
        if is_outage(exc):
            stop(taken[0].message, exc)
        log.warning("a batch raised; taking it again one event at a time", extra={"agent": agent})
    for event in taken:
        try:
            await step([event])
        except Exception as exc:
            await park_or_stop(park, agent, event.message, exc)


async def park_or_stop(park: Park, agent: str, message, exc: Exception) -> None:
    """Dead-letter `message`; on an outage (the broker, the network: not the record's fault), or if even
    the dead letter fails, stop the process at once: an exit commits nothing, where letting the
    exception reach Faust would acknowledge (and later commit) the message."""
    if is_outage(exc):
        stop(message, exc)
    try:
        await park(agent, message, exc)
    except Exception as fatal:
        stop(message, exc, fatal)


def stop(message, exc: BaseException, fatal: BaseException | None = None) -> NoReturn:
    """Exit now, committing nothing: the record is read again after the restart."""
    why = f"{type(exc).__name__}: {exc}" + (f"; its dead letter failed too ({type(fatal).__name__}: {fatal})"
                                           if fatal else " (an outage, not the record's fault)")
    print(f"milestones: stopping without committing {message.topic}[{message.partition}]@{message.offset}: "
          f"{why}", file=sys.stderr, flush=True)
    logging.shutdown()
    os._exit(DEAD_LETTER_EXIT)


def current(app, message) -> bool:
    """Was the message fetched under the group generation in force, with no rebalance under way (Faust
    suspends the flow when one begins)? Faust skips, yet acknowledges, the messages for which this is
    false: the guard does not count them, and a batch writes no rows for them — by then their
    partition may be another worker's, and a late write would land in its changelog."""
    return message.generation_id == app.consumer_generation_id and app.flow_control.is_active()


@contextmanager
def as_current(event):
    """Make `event` Faust's current event: a table write takes its changelog partition from it."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def admit(app, event) -> bool:
    """False for a message that must wait for an earlier, skipped one of its partition (it will be read again)."""
    consumer = app.consumer
    return consumer.admit(event.message) if isinstance(consumer, OrderedConsumer) else True


def settled(app) -> bool:
    """Timers that read tables act only on a settled assignment whose tables are fully recovered."""
    return not app.rebalancing and app.tables.recovery.completed.is_set()
