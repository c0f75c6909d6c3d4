"""Calls spaced to a target's rate limit, and held back while it says so (429 `Retry-After`).

Why spacing rather than a burst budget: Gainsight documents 200 single-insert calls per minute without
saying how the window is counted; one call every 60/200 s stays within any window's count, and a
held-back stage never makes a burst after a pause either.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Pace:
    def __init__(self, calls_per_minute: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if calls_per_minute <= 0:
            raise ValueError("calls_per_minute must be > 0")
        self.interval = 60.0 / calls_per_minute
        self.clock, self.sleep = clock, sleep
        self.next_at = float("-inf")  # the earliest moment the next call may start

    def hold(self, seconds: float) -> None:
        """No call before `seconds` from now (a 429's Retry-After, or a backoff)."""
        self.next_at = max(self.next_at, self.clock() + max(seconds, 0.0))

    async def wait(self) -> None:
        """Return when the next call may start, and count it."""
        while (delay := self.next_at - self.clock()) > 0:
            await self.sleep(delay)
        self.next_at = self.clock() + self.interval
