"""The loops every agent runs: events in partition order, a failing step parked, never acknowledged lost.

Why these and not Faust's bare `async for`: when a step raises, Faust restarts the agent and
acknowledges the event, losing it without a trace; and around a rebalance it may hand over a message
fetched under an older generation. These loops use only Faust's public stream API plus `current`
(events.py) and `admit` (consumer.py). `admit` is looked up on the package at each call
(`faust_compat.admit`), the seam a test patches to make an agent's loop itself fail
(tests/support/faults.py).
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import faust
from faust.types import AppT, EventT, Message, StreamT

import milestone_stream.faust_compat as compat
from milestone_stream.deadletter import is_outage
from milestone_stream.faust_compat.events import current
from milestone_stream.observability import PROGRESS, RUNNING

#: park(agent, message, exc): dead-letter an input whose processing raised
Park = Callable[[str, Any, Exception], Awaitable[object]]
#: step(event) and step(events): an agent's work on one event or on a batch
Step = Callable[[EventT], Awaitable[object]]
BatchStep = Callable[[list[EventT]], Awaitable[object]]

DEAD_LETTER_EXIT = 71  # an outage, or a record that could be neither processed nor dead-lettered

log = logging.getLogger("milestone_stream.faust_compat")  # the logger name from before the split


async def each_in_order(app: AppT, stream: StreamT, agent: str, step: Step, park: Park) -> None:
    """The loop of every agent: each event admitted in partition order, then `step(event)`, measured.

    A step that raises parks its event as a dead letter (`park`) and the loop goes on: Faust would
    otherwise restart the agent and acknowledge the event, losing it without a trace."""
    with RUNNING.loop(agent):
        async for event in stream.events():
            try:
                if compat.admit(app, event):
                    with PROGRESS.record(agent):
                        await step(event)
            except Exception as exc:
                await park_or_stop(park, agent, event.message, exc)


async def batches_in_order(app: AppT, stream: faust.Stream, agent: str, step: BatchStep, size: int, within: float,
                           park: Park) -> None:
    """The loop of a batched agent: up to `size` events (or what came within `within` seconds), those
    of the current group generation admitted in partition order, then `step(events)`, measured.

    Faust acknowledges a batch's events only after `step` returns; an event of an older generation
    (fetched before a rebalance) is left out, exactly as Faust's own per-event loop skips it. A batch
    whose step raises is taken again one event at a time, so the others are applied and only the
    event that raises is parked (a step writes nothing before its milestones are acknowledged, and
    the rows' input offsets make the second pass skip what the first one already wrote)."""
    with RUNNING.loop(agent):
        async for events in stream.take_events(size, within=within):
            taken = [e for e in events if current(app, e.message) and compat.admit(app, e)]
            if taken:
                with PROGRESS.record(agent, len(taken)):
                    await batch_or_each(step, taken, agent, park)


async def batch_or_each(step: BatchStep, taken: list[EventT], agent: str, park: Park) -> None:
    """`step(taken)`; if it raises, each event again alone, parking only those that raise."""
    try:
        await step(taken)
        return
    except Exception as exc:
        if is_outage(exc):
            stop(taken[0].message, exc)
        log.warning("a batch raised; taking it again one event at a time", extra={"agent": agent})
    for event in taken:
        try:
            await step([event])
        except Exception as exc:
            await park_or_stop(park, agent, event.message, exc)


async def park_or_stop(park: Park, agent: str, message: Message, exc: Exception) -> None:
    """Dead-letter `message`; on an outage (the broker, the network: not the record's fault), or if even
    the dead letter fails, stop the process at once: an exit commits nothing, where letting the
    exception reach Faust would acknowledge (and later commit) the message."""
    if is_outage(exc):
        stop(message, exc)
    try:
        await park(agent, message, exc)
    except Exception as fatal:
        stop(message, exc, fatal)


def stop(message: Message, exc: BaseException, fatal: BaseException | None = None) -> NoReturn:
    """Exit now, committing nothing: the record is read again after the restart."""
    why = f"{type(exc).__name__}: {exc}" + (f"; its dead letter failed too ({type(fatal).__name__}: {fatal})"
                                           if fatal else " (an outage, not the record's fault)")
    halt(f"{message.topic}[{message.partition}]@{message.offset}: {why}")


def halt(why: str) -> NoReturn:
    """Exit now, committing nothing (`os._exit`: no task, no `finally` of Faust's, may commit on the way out)."""
    print(f"milestones: stopping without committing {why}", file=sys.stderr, flush=True)
    logging.shutdown()
    os._exit(DEAD_LETTER_EXIT)
