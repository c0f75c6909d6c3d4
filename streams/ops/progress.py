"""A one-line progress bar with rate and ETA for long operator commands (`milestones publish`).

Why our own: it is twenty lines, and the project has no terminal UI dependency. It draws only on a
terminal (a pipe or a log file gets the command's plain summary alone) and at most ten times a
second, so it costs nothing next to the work it reports.
"""
from __future__ import annotations

import time
from typing import TextIO

WIDTH = 24
REDRAW_SECONDS = 0.1


class Progress:
    """`update(done, count)` with `done` out of `total` units (bytes read; None when unknown, e.g.
    stdin: then no bar and no ETA) and `count` items handled (the rate is in items)."""

    def __init__(self, out: TextIO, total: int | None, unit: str = "lines", enabled: bool | None = None) -> None:
        self.out = out
        self.total = total or None
        self.unit = unit
        self.enabled = out.isatty() if enabled is None else enabled
        self.started = time.monotonic()
        self._drawn = 0.0
        self._width = 0

    def update(self, done: int, count: int, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._drawn < REDRAW_SECONDS):
            return
        self._drawn = now
        elapsed = max(now - self.started, 1e-6)
        line = f"{count:,} {self.unit}  {count / elapsed:,.0f}/s"
        if self.total:
            share = min(done / self.total, 1.0)
            filled = int(share * WIDTH)
            eta = elapsed * (1 - share) / share if share > 0 else None
            line = (f"[{'#' * filled}{' ' * (WIDTH - filled)}] {share:4.0%}  {line}"
                    f"  ETA {_clock(eta) if eta is not None else '?'}")
        self.out.write("\r" + line.ljust(self._width))
        self._width = len(line)
        self.out.flush()

    def close(self) -> None:
        """Clear the bar, so the summary that follows starts on a clean line."""
        if self.enabled and self._width:
            self.out.write("\r" + " " * self._width + "\r")
            self.out.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
