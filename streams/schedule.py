"""When an account of this worker is next due (an anniversary, held milestones), for the timers.

Why one index: the detector's anniversary timer and the drafter's timer both wake every few seconds
and must find the few accounts due without scanning every row. A heap keyed by the due time does
it; re-scheduling an account supersedes its older entry. The index is local to this worker's
partitions, so it is marked stale after a rebalance and rebuilt from the table at the next tick.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Generic, TypeVar

When = TypeVar("When", date, datetime)


class DueIndex(Generic[When]):
    """Accounts by when they are next due; `pop_due` returns each due account once."""

    def __init__(self) -> None:
        self._heap: list[tuple[When, str]] = []
        self._next: dict[str, When] = {}
        self.stale = True

    def schedule(self, account_id: str, when: When | None) -> None:
        """Due at `when` (None: not due at all), replacing any earlier schedule of the account."""
        if when is None:
            self._next.pop(account_id, None)
        elif self._next.get(account_id) != when:
            self._next[account_id] = when
            heapq.heappush(self._heap, (when, account_id))

    def pop_due(self, now: When) -> list[str]:
        accounts = []
        while self._heap and self._heap[0][0] <= now:
            when, account = heapq.heappop(self._heap)
            if self._next.get(account) == when:  # entries superseded by a later schedule are skipped
                del self._next[account]
                accounts.append(account)
        return accounts

    def due_now(self, rows: Callable[[], Iterable[tuple[str, object]]], due: Callable[[object], When | None],
                now: When) -> list[str]:
        """The accounts due at `now`, each once. After a rebalance (this worker's partitions changed) the
        index is first rebuilt from the table's rows; `rows` is called only then, not at every tick."""
        if self.stale:
            self.stale = False
            for account, row in rows():
                self.schedule(account, due(row))
        return self.pop_due(now)

    def clear(self) -> None:
        self._heap.clear()
        self._next.clear()
        self.stale = True
