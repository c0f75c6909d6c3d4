"""Dates and instants written as text, read one way everywhere.

`iso_date`: "an ISO date, or a datetime whose date is taken as written", for every stage that reads
a date field from the CRM. Why one function: `contract_start` is read by the detector (which
anniversaries fire) and by the drafter (the note's "customer since"); if each parsed it its own way,
a note could cite a start date the detector never celebrated, or the reverse.

`iso_instant`: ISO-8601 instant text where no zone means UTC, for the injected clock
(`MILESTONES_NOW`) and the ingestion adapters; one place states that rule.

Pure: no clock, no conversion between zones.
"""
from __future__ import annotations

from datetime import UTC, date, datetime


def iso_date(text: str) -> date | None:
    """The date an ISO-8601 date or datetime text starts with, as written: "2024-06-01",
    "2024-06-01T23:30:00-05:00" and "2024-06-01 garbage" → 2024-06-01 (the date in the text, not
    converted to UTC); None when the first ten characters are not a valid date ("2024-13-01", "")."""
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def iso_instant(text: str) -> datetime:
    """An aware datetime from ISO-8601 text ("Z" or an offset kept as written; no zone means UTC);
    raises ValueError when the text is not one."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
