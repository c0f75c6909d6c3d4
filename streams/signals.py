"""Stopping the long-running services cleanly: SIGTERM (a supervisor) and SIGINT (Ctrl-C) end them.

Two phases. While a service imports and starts (from the moment `milestones` has read its command),
nothing has been read or written that a stop would have to finish, so a SIGTERM ends it at once with
status 0 (`exit_until_started`). Without that a stop in this window kills the process by the signal
(status -15), which a supervisor or a test reads as a crash. `os._exit`, not `SystemExit`: an exception
raised in a finalizer or under a broad `except` would be dropped, and the stop lost.
Once running, each service hands the signals to its event loop: Faust's worker in its first start, the
other services through `stop_on_signals`.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from types import FrameType


def exit_until_started() -> None:
    """Until the service's loop takes SIGTERM over, a SIGTERM exits with status 0."""
    signal.signal(signal.SIGTERM, _exit_cleanly)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    for stream in (sys.stdout, sys.stderr):  # log handlers flush each record themselves
        with contextlib.suppress(Exception):  # e.g. a flush interrupted mid-write by this very signal
            stream.flush()
    os._exit(0)


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
