"""A stop that lands while a timer is sending ends the tick quietly; the same error while running is raised."""
import asyncio
from types import SimpleNamespace

import pytest
from faust.exceptions import NotReady

from milestone_stream.faust_compat.events import quiet_on_stop


def test_not_ready_during_a_stop_ends_the_tick_and_otherwise_is_raised() -> None:
    app = SimpleNamespace(should_stop=False)

    async def tick() -> None:
        raise NotReady("Producer service not yet started")

    quietly = quiet_on_stop(app, tick)  # type: ignore[arg-type]
    with pytest.raises(NotReady):
        asyncio.run(quietly())
    app.should_stop = True  # the worker is stopping: its producer is gone
    asyncio.run(quietly())


def test_a_tick_runs_only_on_a_settled_assignment() -> None:
    from milestone_stream.faust_compat.events import when_settled

    recovered = SimpleNamespace(is_set=lambda: True)
    app = SimpleNamespace(should_stop=False, rebalancing=True, tables=SimpleNamespace(
        recovery=SimpleNamespace(completed=recovered)))
    ran = []

    async def tick() -> None:
        ran.append(1)

    settled_tick = when_settled(app, tick)  # type: ignore[arg-type]
    asyncio.run(settled_tick())
    assert ran == []  # a rebalance under way: tables may be half restored
    app.rebalancing = False
    asyncio.run(settled_tick())
    assert ran == [1]
