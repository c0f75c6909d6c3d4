"""An injectable clock: anniversaries and future-skew checks never read the wall clock directly.

`MILESTONES_NOW=2027-02-28T23:59:00Z` starts the clock at that instant (it then advances in real
time), so tests and demos can stand on any day without waiting.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime

from milestone_stream.dates import iso_instant


class Clock:
    def __init__(self, start: datetime | None = None) -> None:
        self._offset = 0.0 if start is None else start.timestamp() - time.time()

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self._offset, tz=UTC)

    @classmethod
    def from_iso(cls, text: str | None) -> Clock:
        if not text:
            return cls()
        return cls(iso_instant(text))
