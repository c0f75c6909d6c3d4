"""Stopping the long-running services cleanly: SIGTERM (a supervisor) and SIGINT (Ctrl-C) end them.

Two phases. While a service imports and starts (from the moment `milestones` has read its command),
nothing has been read or written that a stop would have to finish, so a SIGTERM ends it at once with
status 0 (`exit_until_started`). Without that a stop in this window kills the process by the signal
(status -15), which a supervisor or a test reads as a crash. `os._exit`, not `SystemExit`: an exception
raised in a finalizer or under a broad `except` would be dropped, and the stop lost.
Once running, each service hands the signals to its event loop: Faust's worker in its first start, the
other services through `stop_on_signals`.
`exit_within` puts a deadline on a stop: the worker arms it as its stop begins (faust_compat/worker.py).
Faust's stop once waited for good on aiokafka's coordinator when a rebalance reached a stopping worker,
and once a cleanly stopped worker's interpreter never exited (a non-daemon thread or an exit handler).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)


def exit_until_started() -> None:
    """Until the service's loop takes SIGTERM over, a SIGTERM exits with status 0."""
    signal.signal(signal.SIGTERM, _exit_cleanly)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    _exit_now(0)


def exit_within(seconds: float, status: Callable[[], int]) -> None:
    """As a stop begins: if the process has not exited `seconds` from now (a stop that waits for good, a
    thread or an exit handler that never returns), log where each thread is and exit with what `status()`
    says then (a crash during the stop turns it into a failure)."""
    timer = threading.Timer(seconds, _exit_stuck, args=(seconds, status))
    timer.daemon = True  # it must not hold the exit it watches
    timer.start()


def _exit_stuck(seconds: float, status: Callable[[], int]) -> None:
    code = status()
    me = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}
    frames = sys._current_frames()  # noqa: SLF001 -- documented in the sys module, underscore and all
    stacks = [f"thread {names.get(ident, ident)}:\n" + "".join(traceback.format_stack(frame))
              for ident, frame in frames.items() if ident != me]
    log.warning("the service did not stop and exit within %s s; exiting with status %s", seconds, code,
                extra={"error": "\n".join(stacks)})
    _exit_now(code)


def _exit_now(status: int) -> None:
    for stream in (sys.stdout, sys.stderr):  # log handlers flush each record themselves
        with contextlib.suppress(Exception):  # e.g. a flush interrupted mid-write by this very signal
            stream.flush()
    os._exit(status)


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
