"""Compiled-context fixtures for the drafting tests: a milestone and the detector rows behind it
(in their stored form, `stored_rows`, and read as the drafter reads them, `rows`)."""
from datetime import UTC, datetime, timedelta

from milestone_stream.agents.detector.crm import ProfileRow
from milestone_stream.agents.detector.usage import UsageRow
from milestone_stream.ids import milestone_id
from milestone_stream.schemas.records import Evidence, Milestone

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = 86400


def usage_milestone(account="acme", tier=10000, value=10450.0):
    return Milestone(milestone_id=milestone_id(account, "usage_threshold", "emails_sent", tier), account_id=account,
                     kind="usage_threshold", metric="emails_sent", threshold=tier, value=value,
                     title=f"{tier:,} emails sent", reached_at=NOW,
                     evidence=[Evidence(source="platform.mailer", record="event e-77", occurred_at=NOW)])


def stored_rows(industry="financial services", contacts=None, **profile):
    p = {"name": "Acme Corp", "industry": industry, "csm_email": "sam@vendor.example", "csm_name": "Sam Rivera",
         "contract_start": "2024-06-01", "roi_percent": 152, "adoption.automation_sequences": True, **profile}
    src = {f: ["salesforce", "001ACME", "2026-05-01T00:00:00+00:00"] for f in p}
    contacts = contacts if contacts is not None else [
        {"name": "Raj Admin", "email": "raj@acme.example", "role": "admin"},
        {"name": "Jane Doe", "email": "jane@acme.example", "role": "executive_sponsor"}]
    profile_row = {"p": p, "c": contacts, "s": src}
    usage_row = {"t": {"emails_sent": 10450.0},
                 "s": {"emails_sent": [(NOW - timedelta(days=300)).timestamp(), NOW.timestamp()]},
                 "w": {}}
    return profile_row, usage_row


def rows(**kwargs) -> tuple[ProfileRow, UsageRow]:
    """`stored_rows` read from the table as the drafter reads them."""
    profile_row, usage_row = stored_rows(**kwargs)
    return ProfileRow.from_stored(profile_row), UsageRow.from_stored(usage_row)
