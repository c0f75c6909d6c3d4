"""What the ingestion adapters share: their verdicts and the small readers of foreign JSON.

Why a verdict type rather than exceptions everywhere: an adapter has three honest outcomes for a
message — records to publish, a counted skip (an event nobody mapped), or a rejection that goes to
the dead-letter topic with its reason — and the caller must handle each one explicitly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

@dataclass(frozen=True)
class Skipped:
    """A well-formed message this configuration does not map (counted, not dead-lettered)."""

    reason: str


class Rejected(Exception):
    """A message that cannot be mapped: dead-lettered with `reason` (machine-friendly) and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def dig(document: object, path: str):
    """The value at a dotted path (`context.groupId`), or None when any step is missing."""
    for step in path.split("."):
        if not isinstance(document, dict):
            return None
        document = document.get(step)
    return document


def number(value, what: str) -> float:
    """A finite number >= 0 (booleans and numeric strings are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Rejected("invalid_value", f"{what} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise Rejected("invalid_value", f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def instant(value, what: str) -> datetime:
    """An aware UTC datetime from ISO-8601 text or epoch milliseconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise Rejected("invalid_timestamp", f"{what} {value!r} is out of range") from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Rejected("invalid_timestamp", f"{what} {value!r} is not ISO-8601") from None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    raise Rejected("invalid_timestamp", f"{what} {value!r} is not a timestamp")


def calendar_date(value, what: str) -> str:
    """An ISO date from `2024-02-29`, a datetime text, or days since the epoch (Avro `date`)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (date(1970, 1, 1) + timedelta(days=value)).isoformat()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            pass
    raise Rejected("invalid_value", f"{what} {value!r} is not a date")
