"""The Faust worker of `milestones worker`, without Faust's progress spinner.

Why: with a spinner, Faust's `on_setup_root_logger` turns the root logger to DEBUG whenever the
level is WARN or above, so every debug record of aiokafka and Faust is built (a tenth of the
worker's time). `quiet=True` silences the banner but keeps the spinner; only `spinner = None` removes
it. This is the one place that handles it (`Worker.spinner` is declared in `private.PRIVATE_NAMES`).
"""
from __future__ import annotations

import asyncio

import faust


def worker(app: faust.App, *, loop: asyncio.AbstractEventLoop, loglevel: str,
           logging_config: dict | None = None) -> faust.Worker:
    """A quiet worker for `app` (logging through `logging_config`, e.g. logs.config), with no spinner.
    `milestones worker` and bench/faust_floor.py start theirs here."""
    w = faust.Worker(app, loop=loop, loglevel=loglevel, quiet=True, logging_config=logging_config)
    w.spinner = None
    return w
