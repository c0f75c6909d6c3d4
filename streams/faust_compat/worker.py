"""The Faust worker of `milestones worker`, without Faust's progress spinner.

Why: with a spinner, Faust's `on_setup_root_logger` turns the root logger to DEBUG whenever the
level is WARN or above, so every debug record of aiokafka and Faust is built (a tenth of the
worker's time). `quiet=True` silences the banner but keeps the spinner; only `spinner = None` removes
it. This is the one place that handles it (`Worker.spinner` is declared in `private.PRIVATE_NAMES`).

And a stop with a deadline: when a rebalance reached a worker that was stopping, Faust's stop waited in
"Wait for streams" while aiokafka retried heartbeats to a coordinator it had marked dead, for good (seen in
CI, tests/integration/test_exactly_once.py); once, too, a worker stopped cleanly and its interpreter never
exited. Mode calls `on_stop` (public) as a stop begins; from there `signals.exit_within` gives the stop
and the exit `stop_seconds` in all.
"""
from __future__ import annotations

import asyncio

import faust

from milestone_stream import signals


class _Worker(faust.Worker):
    """Faust's worker whose stop ends within `stop_seconds` (None: as Faust's, unbounded)."""

    stop_seconds: float | None = None

    async def on_stop(self) -> None:
        if self.stop_seconds is not None:  # a crash before or during the stop still exits as a failure
            signals.exit_within(self.stop_seconds, lambda: 1 if self.crash_reason else 0)
        await super().on_stop()


def worker(app: faust.App, *, loop: asyncio.AbstractEventLoop, loglevel: str,
           logging_config: dict | None = None, stop_seconds: float | None = None) -> faust.Worker:
    """A quiet worker for `app` (logging through `logging_config`, e.g. logs.config), with no spinner, whose
    stop ends within `stop_seconds`. `milestones worker` and bench/faust_floor.py start theirs here."""
    w = _Worker(app, loop=loop, loglevel=loglevel, quiet=True, logging_config=logging_config)
    w.spinner = None
    w.stop_seconds = stop_seconds
    return w
