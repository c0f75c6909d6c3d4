"""What the ingestion adapters share: their verdicts and the small readers of foreign JSON.

Why a verdict type rather than exceptions everywhere: an adapter has three honest outcomes for a
message — records to publish, a counted skip (an event nobody mapped), or a rejection that goes to
the dead-letter topic with its reason — and the caller must handle each one explicitly. Every
reader here turns a value of the wrong type or out of range into `Rejected`, never into another
exception: the JSON comes from systems we do not control (and Python's `json` even accepts `NaN`,
`Infinity` and integers of any size).

Times and dates, the rules:
- an instant (`instant`, fields typed `datetime`) is ISO-8601 text (no zone means UTC) or epoch
  **milliseconds**, as Salesforce and Segment send them.
- a calendar date (`calendar_date`, fields typed `date`) is ISO text (`2024-02-29`, or a datetime
  text, whose date is taken as written), or an integer: epoch **days** (Avro `date`) when its
  magnitude is below 10,000,000, else epoch **milliseconds** (the UTC date of that instant).
  Why this is unambiguous: days from year 1 to 9999 lie within ±3,000,000, and 10,000,000 ms is only
  1970-01-01 02:46:40 — the one date a midnight-UTC millisecond value below that can name is
  1970-01-01 itself (0), which reads the same as days. An integral float (`19782.0`) counts as that
  integer; booleans, NaN, infinities and values off the calendar (before year 1, after 9999) are
  `Rejected("invalid_value")`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TypeGuard

from milestone_stream.dates import iso_instant
from milestone_stream.deadletter import Unprocessable

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAYS_BELOW = 10_000_000  # |an integer date| below this is epoch days, at or above it epoch milliseconds
INT64 = 2 ** 63  # the profile's Avro `long`: an integer outside ±2^63 cannot be published
MISSING = object()  # `find`'s answer for a path that is not there (as opposed to a JSON null)
Scalar = str | bool | int | float | None  # what a CRM change's field value holds (Avro null|boolean|long|double|string)


@dataclass(frozen=True)
class Skipped:
    """A well-formed message this configuration does not map (counted, not dead-lettered)."""

    reason: str


class Rejected(Unprocessable):
    """A message that cannot be mapped: dead-lettered with `reason` (machine-friendly) and detail."""


def find(document: object, path: str) -> object:
    """The value at a dotted path (`traits.address.city`), or `MISSING` when any step is not there.

    Why not only `dig`: a JSON null is a value (a trait set to null clears the field), a missing key
    is not. A key that itself holds the dots (`{"address.city": ...}`) is taken first.
    """
    if isinstance(document, dict) and path in document:
        return document[path]
    for step in path.split("."):
        if not isinstance(document, dict) or step not in document:
            return MISSING
        document = document[step]
    return document


def dig(document: object, path: str) -> object:
    """The value at a dotted path (`context.groupId`), or None when any step is missing."""
    found = find(document, path)
    return None if found is MISSING else found


def _text(value: object) -> str:
    """A short, safe rendering of a foreign value for a dead letter's detail."""
    try:
        shown = repr(value)
    except (ValueError, RecursionError):  # an integer past Python's digit limit, or nesting past its depth
        shown = f"<{type(value).__name__} too large to show>"
    return shown if len(shown) <= 80 else shown[:77] + "..."


def finite(value: object) -> TypeGuard[int | float]:
    """A JSON number (not a boolean) that fits a double and a long where it is an integer."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, int):
        return -INT64 <= value < INT64
    return math.isfinite(value)


def number(value: object, what: str) -> float:
    """A finite number >= 0 (booleans and numeric strings are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Rejected("invalid_value", f"{what} must be a number, got {_text(value)}")
    if not finite(value) or value < 0:
        raise Rejected("invalid_value", f"{what} must be a finite number >= 0, got {_text(value)}")
    return float(value)


def scalar(value: object, what: str) -> Scalar:
    """A value a profile field can hold as it is: text, boolean, null, or a number that fits.

    Why: the CRM change's Avro value is null|boolean|long|double|string, so a huge integer or NaN
    would fail when published — after the mapper said yes. It is refused here instead.
    """
    if value is None or isinstance(value, (str, bool)) or finite(value):
        return value
    if isinstance(value, (dict, list)):
        raise Rejected("invalid_value", f"{what} is a compound value; map its parts ({what}.<part>)")
    raise Rejected("invalid_value", f"{what} is not a storable value: {_text(value)}")


def _from_millis(value: object, what: str, reason: str) -> datetime:
    if not finite(value):
        raise Rejected(reason, f"{what} {_text(value)} is not a finite epoch-milliseconds value")
    try:
        return EPOCH + timedelta(milliseconds=value)
    except OverflowError:
        raise Rejected(reason, f"{what} {_text(value)} is out of range") from None


def _from_iso(value: str, what: str, reason: str) -> datetime:
    try:
        return iso_instant(value)
    except ValueError:
        raise Rejected(reason, f"{what} {_text(value)} is not ISO-8601") from None


def instant(value: object, what: str, reason: str = "invalid_timestamp") -> datetime:
    """An aware UTC datetime from ISO-8601 text or epoch milliseconds; else `Rejected(reason)`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_millis(value, what, reason)
    if isinstance(value, str):
        parsed = _from_iso(value, what, reason)
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before year 1 in UTC
            raise Rejected(reason, f"{what} {_text(value)} is out of range") from None
    raise Rejected(reason, f"{what} {_text(value)} is not a timestamp")


def calendar_date(value: object, what: str) -> str:
    """An ISO date from ISO text, epoch days or epoch milliseconds (the rule is in the module doc)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= DAYS_BELOW:
            return _from_millis(value, what, "invalid_value").date().isoformat()
        try:
            return (date(1970, 1, 1) + timedelta(days=value)).isoformat()
        except OverflowError:
            raise Rejected("invalid_value", f"{what} {_text(value)} days since the epoch is out of range") from None
    if isinstance(value, str):
        return _from_iso(value, what, "invalid_value").date().isoformat()
    raise Rejected("invalid_value", f"{what} {_text(value)} is not a date")
