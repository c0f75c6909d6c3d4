"""A standard input on which the user presses Ctrl-C: `lines` lines, then KeyboardInterrupt.

Why a pipe of our own: `milestones publish -` reads sys.stdin; the tests need the interrupt to land
while it reads, after a known number of lines."""
from __future__ import annotations

import io
import sys
from collections.abc import Callable


class CtrlC(io.RawIOBase):
    """Line n (from 1) is `line(n)`; after `lines` of them, reading raises KeyboardInterrupt."""

    def __init__(self, lines: int, line: Callable[[int], bytes]) -> None:
        self.left, self.number, self.line = lines, 0, line

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if not self.left:
            raise KeyboardInterrupt
        self.left -= 1
        self.number += 1
        data = self.line(self.number)
        buffer[:len(data)] = data
        return len(data)


def stdin(monkeypatch, lines: int, line: Callable[[int], bytes]) -> None:  # type: ignore[no-untyped-def]
    """Make sys.stdin that pipe (one line per read: the interrupt lands exactly after `lines`)."""
    longest = max(len(line(1)), 64) * 2
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(CtrlC(lines, line), buffer_size=longest)))
