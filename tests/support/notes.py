"""Milestones and detector rows for the note tests (tests/unit/test_note_*.py): an account with a
year of usage and per-month totals, and milestones of each kind the template leads with."""
from datetime import UTC, datetime

from milestone_stream.agents.detector.crm import ProfileRow
from milestone_stream.agents.detector.usage import UsageRow
from milestone_stream.ids import milestone_id
from milestone_stream.rules import Rules, UsageMetric
from milestone_stream.schemas.records import Evidence, Milestone

from support.drafting import NOW, stored_rows

RULES = Rules(usage={"emails_sent": UsageMetric(tiers=[1000, 10000, 50000], label="emails sent"),
                     "campaigns_run": UsageMetric(tiers=[10, 50], label="campaigns run")})


def milestone(kind, title, metric=None, threshold=None, value=None, at=NOW):
    return Milestone(milestone_id=milestone_id("acme", kind, metric, title), account_id="acme", kind=kind,
                     metric=metric, threshold=threshold, value=value, title=title, reached_at=at,
                     evidence=[Evidence(source="salesforce", record="001ACME", occurred_at=at)])


def anniversary(years=2):
    return milestone("anniversary", f"{years} year{'s' if years > 1 else ''} together", "contract_start", years, years)


def roi(level=150, value=152.0):
    return milestone("roi_threshold", f"{level}% ROI achieved", "roi_percent", level, value)


def feature(name="sso"):
    return milestone("feature_adopted", f"First use of {name.replace('_', ' ')}", name)


def year_of_usage(first=datetime(2024, 6, 3, tzinfo=UTC), **profile):
    """Acme since 2024-06-01 with usage counted from 2024-06-03: 47,832 emails and 31 campaigns in all,
    30,100 and 20 of them in the twelve months to June 2026 (2025-05 is outside them)."""
    profile_row, usage_row = stored_rows(**{"industry": "software", **profile})
    usage_row = {"t": {"emails_sent": 47832.0, "campaigns_run": 31.0},
                 "s": {m: [first.timestamp(), NOW.timestamp()] for m in ("emails_sent", "campaigns_run")},
                 "m": {"emails_sent": {"2025-05": 900.0, "2025-07": 10000.0, "2026-01": 12100.0, "2026-06": 8000.0},
                       "campaigns_run": {"2025-05": 2.0, "2025-09": 12.0, "2026-06": 8.0}},
                 "w": {}}
    return ProfileRow.from_stored(profile_row), UsageRow.from_stored(usage_row)
