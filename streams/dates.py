"""Calendar dates written as text: one reading of "an ISO date, or a datetime whose date is taken as
written", shared by every stage that reads a date field from the CRM.

Why one function: `contract_start` is read by the detector (which anniversaries fire) and by the
drafter (the note's "customer since"); if each parsed it its own way, a note could cite a start date
the detector never celebrated, or the reverse. Pure: no clock, no time zone conversion.
"""
from __future__ import annotations

from datetime import date


def iso_date(text: str) -> date | None:
    """The date an ISO-8601 date or datetime text starts with, as written: "2024-06-01",
    "2024-06-01T23:30:00-05:00" and "2024-06-01 garbage" → 2024-06-01 (the date in the text, not
    converted to UTC); None when the first ten characters are not a valid date ("2024-13-01", "")."""
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None
