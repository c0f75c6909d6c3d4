"""Contract anniversaries: which are due, on which date, by an injected `today`.

A contract that started on 29 February celebrates on 28 February in common years.
"""
from __future__ import annotations

from datetime import date


def anniversary_date(start: date, years: int) -> date:
    try:
        return start.replace(year=start.year + years)
    except ValueError:  # 29 February in a common year
        return date(start.year + years, 2, 28)


def next_due(start: date, years: list[int], fired: set[int]) -> tuple[date, int] | None:
    """The earliest configured anniversary not fired yet, with its date."""
    pending = sorted(y for y in years if y not in fired)
    return (anniversary_date(start, pending[0]), pending[0]) if pending else None


def due_now(start: date, years: list[int], fired: set[int], today: date,
            grace_days: int = 7) -> tuple[list[int], list[int]]:
    """(years to celebrate, years too old to celebrate) as of `today`.

    Only anniversaries within `grace_days` of `today` are celebrated: a contract start backfilled
    years late must not fire every past anniversary at once; older ones are marked as passed.
    """
    celebrate: list[int] = []
    passed: list[int] = []
    for y in sorted(set(years) - fired):
        when = anniversary_date(start, y)
        if when > today:
            break
        (celebrate if (today - when).days <= grace_days else passed).append(y)
    return celebrate, passed
