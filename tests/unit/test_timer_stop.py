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
