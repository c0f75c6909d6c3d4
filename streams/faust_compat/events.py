"""Which event a table write belongs to, and whether a message or a timer may act now.

Why here: a Faust table write takes its changelog partition from Faust's *current event*, held in
the private context variable `faust.streams._current_event`. A batched agent (and a timer) writes
outside Faust's own per-event loop, so it sets that variable itself (`as_current`). This is the only
module that names it; `private.PRIVATE_NAMES` declares its shape and a unit test checks it.
`current` and `settled` read public state only, and sit here because the other modules ask them.
"""
from __future__ import annotations

import functools
import weakref
from collections.abc import Awaitable, Callable
from contextvars import Token
from typing import cast

from aiokafka.partitioner import DefaultPartitioner
from faust.exceptions import NotReady
from faust.streams import _current_event
from faust.tables.manager import TableManager
from faust.types import AppT, EventT, Message

Tick = Callable[[], Awaitable[None]]


def current(app: AppT, message: Message) -> bool:
    """Was the message fetched under the group generation in force, with no rebalance under way (Faust
    suspends the flow when one begins)? Faust skips, yet acknowledges, the messages for which this is
    false: the guard does not count them, and a batch writes no rows for them — by then their
    partition may be another worker's, and a late write would land in its changelog."""
    return message.generation_id == app.consumer_generation_id and app.flow_control.is_active()


class as_current:  # lower case: used as a function, `with as_current(event):`
    """Make `event` Faust's current event: a table write takes its changelog partition from it, and the
    RocksDB store its partition's database. A class rather than a generator context manager: the usage
    agent enters it for every read and write (a generator's set-up was 5% of the worker's time)."""

    __slots__ = ("_event", "_token")

    def __init__(self, event: EventT) -> None:
        self._event = weakref.ref(event)
        self._token: Token | None = None

    def __enter__(self) -> None:
        self._token = _current_event.set(self._event)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current_event.reset(self._token)


def settled(app: AppT) -> bool:
    """Timers that read tables act only on a settled assignment whose tables are fully recovered, and not
    once the worker is stopping."""
    tables = cast(TableManager, app.tables)  # an app's table manager is Faust's TableManager (typed as its ABC)
    return not app.should_stop and not app.rebalancing and tables.recovery.completed.is_set()


def owned(app: AppT, topic: str, partitions: int) -> Callable[[bytes], bool]:
    """Whether this worker is the active owner of a key's partition of `topic` (keys are partitioned by
    the producer's default partitioner, murmur2, as every keyed send here is). A table's items include
    the standby replicas' rows: a timer that acts on those would act on another worker's accounts."""
    active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
    every = list(range(partitions))
    return lambda key: _PARTITIONER(key, every, every) in active


_PARTITIONER = DefaultPartitioner()


def timer(app: AppT, interval: float) -> Callable[[Tick], object]:
    """`app.timer` for the worker's ticking timers: a tick runs only on a `settled` assignment (the
    timers read tables), and is `quiet_on_stop`."""
    return lambda tick: app.timer(interval=interval)(quiet_on_stop(app, when_settled(app, tick)))


def when_settled(app: AppT, tick: Tick) -> Tick:
    @functools.wraps(tick)
    async def settled_tick() -> None:
        if settled(app):
            await tick()

    return settled_tick


def quiet_on_stop(app: AppT, tick: Tick) -> Tick:
    """A stop that lands mid-tick ends the tick instead of crashing the worker's exit (Faust stops the
    producer while a timer may still be sending: NotReady, exit status 1). Nothing is lost: ticks are
    derived from the tables again at the next start. While the worker runs, NotReady is raised."""

    @functools.wraps(tick)
    async def quietly() -> None:
        try:
            await tick()
        except NotReady:
            if not app.should_stop:
                raise

    return quietly
