"""Telemetry events for the detection and operations tests, dated within the worker's dedupe horizon."""
from datetime import UTC, datetime, timedelta

from milestone_stream.schemas.records import TelemetryEvent

# recent, within the dedupe horizon of the worker's clock
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
TIERS = [500, 1000, 5000, 10000, 50000, 100000]


def ev(account, i, value, metric="emails_sent", at=None):
    return TelemetryEvent(event_id=f"{account}-{i}", account_id=account, metric=metric, value=value,
                          occurred_at=at or T0 + timedelta(seconds=i), source="platform.mailer")
