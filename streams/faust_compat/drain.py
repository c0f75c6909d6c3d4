"""The worker's consume loop: Faust's, except that a batched agent's topic is handed over a fetch at a time.

Why: Faust's loop (`Consumer._drain_messages`) hands every message to the conductor through
`wait_first` (two tasks and an `asyncio.wait` per message); the conductor puts it in a channel's
queue, the stream's iterator takes it out, and `take_events` gathers it again into a batch. On this
machine that path alone costs more per message than Quix Streams' whole usage job (bench/results.md,
issue 13). For a topic registered with `deliver_batches`, `drain` hands each fetch's messages of that
topic to its batch handler directly; every other topic goes through Faust's per-message path as before.

What Faust does per message is kept for both: a message below the last one read of its partition is
dropped, a gap in offsets is recorded for the commit, a message is tracked as pending
(`track_message`: Faust's `wait_empty` waits for it before a rebalance or a stop commits), and offsets
are committed every `broker_commit_every` acknowledgements. The batch handler acknowledges each message
(`consumer.ack`) once its batch is applied or dead-lettered, so the ordered consumer's rules (no commit
past a skipped message) hold unchanged. A handler that raises stops the process without committing
(`loops.stop`): its messages are read again after the restart, never acknowledged lost.
"""
from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from faust.transport.consumer import Consumer
from faust.types import AppT, Message
from mode import ServiceT

import milestone_stream.faust_compat as compat
from milestone_stream.faust_compat.events import current
from milestone_stream.faust_compat.loops import BatchStep, Park, batch_or_each, stop
from milestone_stream.observability import PROGRESS

#: a batched agent's handler: applies (or dead-letters) the messages, then acknowledges each
BatchHandler = Callable[[list[Message]], Awaitable[None]]

_HANDLERS: weakref.WeakKeyDictionary[AppT, dict[str, BatchHandler]] = weakref.WeakKeyDictionary()


class Delivered:
    """What a batch step reads of a Faust event: its message (and a weak reference to it: `as_current`)."""

    __slots__ = ("message", "__weakref__")

    def __init__(self, message: Message) -> None:
        self.message = message


def deliver_batches(app: AppT, topic: str, agent: str, step: BatchStep, size: int, park: Park) -> None:
    """Hand `topic`'s messages to `step` a fetch at a time, in batches of at most `size` (before the worker
    starts). As `loops.batches_in_order` does with a stream's batches: only messages of the current group
    generation, admitted in partition order, are applied (asked again for each batch); a batch that
    raises is taken again one message at a time and only the one that raises is parked. Then each
    batch's messages are acknowledged — those left out too, as Faust's stream does (the ordered
    consumer keeps the commit before them)."""

    async def handle(messages: list[Message]) -> None:
        ack = app.consumer.ack
        for start in range(0, len(messages), size):
            batch = messages[start:start + size]
            # asked for each batch, not once per fetch: a fetch can hold tens of thousands of messages, and
            # once a rebalance begins none of the rest may be applied (their rows would not be written,
            # and the next batch would fire again from the unwritten rows)
            taken = [event for event in map(Delivered, batch)
                     if current(app, event.message) and compat.admit(app, event)]  # type: ignore[arg-type]
            if taken:
                with PROGRESS.record(agent, len(taken)):
                    await batch_or_each(step, taken, agent, park)  # type: ignore[arg-type]
            for message in batch:
                ack(message)

    _HANDLERS.setdefault(app, {})[topic] = handle


def handlers(app: AppT) -> dict[str, BatchHandler]:
    return _HANDLERS.get(app, {})


async def drain(consumer: Consumer, fetcher: ServiceT) -> None:
    """Read until the consumer or its fetcher stops (the body of the fetcher's task, as Faust's own)."""
    try:
        await _drain(consumer, fetcher)
    except consumer.consumer_stopped_errors:
        if not consumer.app.should_stop:
            raise
    except asyncio.CancelledError:  # as Faust's loop: a stop cancels the fetcher; anything else is a crash
        if not consumer.app.should_stop:
            raise


async def _drain(consumer: Consumer, fetcher: ServiceT) -> None:
    by_topic = handlers(consumer.app)
    read_offset = consumer._read_offset
    acks_enabled_for = consumer.app.topics.acks_enabled_for
    while not (consumer.should_stop or fetcher.should_stop):
        fetched: list[tuple[Any, Message]] = [item async for item in consumer.getmany(timeout=1.0)]
        await consumer.sleep(0)  # (as Faust: a fetch that returns at once must still let other tasks run)
        batches: dict[str, list[Message]] = {}
        for tp, message in fetched:
            offset, last = message.offset, read_offset[tp]
            if last is not None and offset < last:
                continue  # read already (a fetch that raced a seek back)
            if last and offset - last > 1 and acks_enabled_for(message.topic):
                await consumer._add_gap(tp, last + 1, offset)  # offsets no message will ever acknowledge
            if tp.topic in by_topic:
                consumer.track_message(message)
                batches.setdefault(tp.topic, []).append(message)
            else:
                await _commit_if_due(consumer)
                await consumer.wait_first(consumer.callback(message), consumer.suspend_flow.wait())
            read_offset[tp] = offset
        for topic, batch in batches.items():
            try:
                await by_topic[topic](batch)
            except asyncio.CancelledError:  # a stop: what was not applied is not acknowledged, nor waited for
                for message in batch:
                    if not message.acked:
                        consumer._unacked_messages.discard(message)
                raise
            except Exception as exc:  # the handler parks what it cannot apply: this is the engine failing
                stop(batch[0], exc)
            await _commit_if_due(consumer)


async def _commit_if_due(consumer: Consumer) -> None:
    """Faust's `broker_commit_every`: commit once that many messages were acknowledged since the last."""
    every = consumer._commit_every
    if every is not None and consumer._n_acked >= every:
        consumer._n_acked = 0
        await consumer.commit()
