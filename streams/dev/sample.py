"""A small, fixed sample data set for `milestones up`: three accounts that cross real milestones.

Ids are fixed, so publishing it twice fires nothing new (that is the exactly-once promise).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from milestone_stream.schemas.records import Contact, CrmChange, FieldChange, TelemetryEvent


def sample(now: datetime) -> tuple[list[CrmChange], list[TelemetryEvent]]:
    # everything in the recent past (the usage agent dead-letters events from the future), and the
    # contracts started a year ago today, so the first anniversary is due now
    day = now.replace(second=0, microsecond=0) - timedelta(minutes=30)
    year_ago = now.replace(year=now.year - 1) if not (now.month == 2 and now.day == 29) else now - timedelta(days=365)
    profiles = [
        ("acme", "Acme Corp", "financial services", 152.0, "jane.doe@acme.example", "Jane Doe"),
        ("hope", "Hope Foundation", "nonprofit", 90.0, "ravi.patel@hope.example", "Ravi Patel"),
        ("globex", "Globex", "software", 210.0, "li.wong@globex.example", "Li Wong"),
    ]
    changes = [
        CrmChange(change_id=f"sample-crm-{acct}", account_id=acct, source="salesforce",
                  source_record=f"001SAMPLE{acct.upper()}", occurred_at=day - timedelta(hours=1),
                  changes=[FieldChange(field="name", value=name), FieldChange(field="industry", value=industry),
                           FieldChange(field="csm_email", value="csm@milestone.example"),
                           FieldChange(field="csm_name", value="Sam Rivera"),
                           FieldChange(field="contract_start", value=year_ago.date().isoformat()),
                           FieldChange(field="roi_percent", value=roi),
                           FieldChange(field="adoption.automation_sequences", value=True)],
                  contacts=[Contact(name=sponsor, email=email, role="executive_sponsor")])
        for acct, name, industry, roi, email, sponsor in profiles
    ]
    events = [
        TelemetryEvent(event_id=f"sample-{acct}-{i}", account_id=acct, metric="emails_sent", value=amount,
                       occurred_at=day + timedelta(minutes=i), source="platform.mailer")
        for acct, amount in (("acme", 450.0), ("hope", 130.0), ("globex", 2600.0))
        for i in range(24)
    ]
    return changes, events
