"""Dates and instants read from text (pure logic)."""
from datetime import UTC, date, datetime, timedelta

import pytest

from milestone_stream.dates import iso_date, iso_instant


@pytest.mark.parametrize("text, expected", [
    ("2024-06-01", date(2024, 6, 1)),
    ("2024-02-29", date(2024, 2, 29)),
    ("2024-06-01T23:30:00-05:00", date(2024, 6, 1)),   # the date as written, never moved to UTC
    ("2024-06-01T00:00:00Z", date(2024, 6, 1)),
    ("2024-06-01 and more text", date(2024, 6, 1)),
    ("20240601", date(2024, 6, 1)),                     # ISO basic format (Python 3.11's fromisoformat)
])
def test_the_date_an_iso_text_starts_with(text, expected):
    assert iso_date(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "2023-02-29", "2024-13-01", "01/06/2024", "2024-6-1"])
def test_text_that_does_not_start_with_a_date_is_none(text):
    assert iso_date(text) is None


@pytest.mark.parametrize("text, expected", [
    ("2026-06-01T12:00:00Z", datetime(2026, 6, 1, 12, tzinfo=UTC)),
    ("2026-06-01T12:00:00", datetime(2026, 6, 1, 12, tzinfo=UTC)),    # no zone means UTC
    ("2026-06-01", datetime(2026, 6, 1, tzinfo=UTC)),
])
def test_an_instant_without_a_zone_is_utc(text, expected):
    assert iso_instant(text) == expected and iso_instant(text).utcoffset() == timedelta(0)


def test_an_instants_offset_is_kept_as_written():
    assert iso_instant("2026-06-01T12:00:00+02:00").utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize("text", ["", "soon", "2026-13-01T00:00:00Z"])
def test_text_that_is_not_an_instant_raises_value_error(text):
    with pytest.raises(ValueError):
        iso_instant(text)
