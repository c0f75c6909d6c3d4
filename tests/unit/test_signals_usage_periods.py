"""The usage row's per-month totals (every metric, last 13 months: the notes' "past year") and per-day
totals (the metrics risk signals read, as many days as their rules need), by event time in UTC.

Why: the signals agent reads the day totals when events stop arriving, and the notes writer reads the
month totals; both must be bounded per account and rows written before these keys existed must read
as empty, not fail.
"""
from datetime import UTC, date, datetime, timedelta

from milestone_stream.agents.detector import usage
from milestone_stream.agents.detector.usage import UsageRow
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import TelemetryEvent

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
RULES = Rules(usage={"emails_sent": {"tiers": [1e12]}}, gauges=["active_users"], spike=None,
              signals={"counters": ["logins", "support_tickets", "new_users"],
                       "usage_drop": {"metric": "logins", "window_days": 3},
                       "ticket_surge": {"window_days": 5}, "no_new_users": {"period_days": 2}},
              dedupe={"horizon_days": 3660})


class Ids(dict):
    def first_offset(self, key):
        return self.get(key)

    def remember(self, key, offset):
        self[key] = offset


def apply(row: UsageRow, metric: str, value: float, at: datetime, offset: list[int] = [0]) -> None:  # noqa: B006
    offset[0] += 1
    event = TelemetryEvent(event_id=f"e{offset[0]}", account_id="a", metric=metric, value=value, occurred_at=at,
                           source="t")
    status, _ = usage.apply_event(row, event, offset[0], RULES, Ids(), NOW)
    assert status == usage.APPLIED


def test_monthly_totals_sum_a_count_and_keep_a_gauges_maximum():
    row = UsageRow()
    apply(row, "emails_sent", 10, datetime(2026, 5, 31, 23, 59, tzinfo=UTC))
    apply(row, "emails_sent", 5, datetime(2026, 6, 1, 0, 0, tzinfo=UTC))   # the next UTC month
    apply(row, "emails_sent", 2.5, datetime(2026, 6, 14, tzinfo=UTC))
    apply(row, "active_users", 40, datetime(2026, 6, 2, tzinfo=UTC))
    apply(row, "active_users", 25, datetime(2026, 6, 3, tzinfo=UTC))
    assert row.monthly("emails_sent") == {"2026-05": 10.0, "2026-06": 7.5}
    assert row.monthly("active_users") == {"2026-06": 40.0}
    assert row.monthly("calls") == {}
    assert row.total("emails_sent") == 17.5


def test_monthly_totals_keep_the_last_13_months_and_ignore_older_late_events():
    row = UsageRow()
    months = [(2025, m) for m in range(2, 13)] + [(2026, m) for m in range(1, 6)]   # 16 months
    for y, m in months:
        apply(row, "emails_sent", m, datetime(y, m, 10, tzinfo=UTC))
    kept = row.monthly("emails_sent")
    assert list(kept) == [f"{y:04d}-{m:02d}" for y, m in months[-13:]]
    apply(row, "emails_sent", 100, datetime(2025, 3, 1, tzinfo=UTC))   # late, older than every month kept
    assert row.monthly("emails_sent") == kept
    assert row.total("emails_sent") == sum(m for _, m in months) + 100  # the cumulative total still counts it


def test_daily_totals_only_for_the_metrics_signals_read_and_only_the_days_they_need():
    row = UsageRow()
    start = datetime(2026, 6, 1, 12, tzinfo=UTC)
    for day in range(10):
        apply(row, "logins", day + 1, start + timedelta(days=day))
        apply(row, "logins", 1, start + timedelta(days=day, hours=11, minutes=59))  # 23:59 UTC: the same day
    apply(row, "emails_sent", 3, start)
    assert row.daily("emails_sent") == {}  # no signal reads it: months only
    # usage_drop with 3-day windows needs 2 x 3 + 1 = 7 days
    assert row.daily("logins") == {date(2026, 6, 1) + timedelta(days=d): float(d + 2) for d in range(3, 10)}
    apply(row, "logins", 50, datetime(2026, 6, 2, tzinfo=UTC))   # late, older than the days kept
    assert len(row.daily("logins")) == 7 and date(2026, 6, 2) not in row.daily("logins")
    apply(row, "support_tickets", 1, datetime(2026, 6, 9, 23, 59, 59, tzinfo=UTC))
    apply(row, "support_tickets", 1, datetime(2026, 6, 10, 0, 0, tzinfo=UTC))
    assert row.daily("support_tickets") == {date(2026, 6, 9): 1.0, date(2026, 6, 10): 1.0}
    assert RULES.signals is not None
    assert RULES.signals.daily_days == {"logins": 7, "support_tickets": 5, "new_users": 3}


def test_rows_written_before_the_period_totals_read_as_empty_and_copies_share_nothing():
    old = {"t": {"emails_sent": 5.0}, "o": 7, "w": {}}
    row = UsageRow.from_stored(old)
    assert row.monthly("emails_sent") == {} and row.daily("logins") == {}
    assert row.to_stored() == old  # written without the new keys until something is counted
    work = row.copy()
    apply(work, "logins", 2, datetime(2026, 6, 14, tzinfo=UTC))
    assert row.to_stored() == old and work.daily("logins") == {date(2026, 6, 14): 2.0}
    again = work.copy()
    apply(again, "logins", 2, datetime(2026, 6, 14, tzinfo=UTC))
    assert work.daily("logins") == {date(2026, 6, 14): 2.0} and again.daily("logins") == {date(2026, 6, 14): 4.0}
    assert work.monthly("logins") == {"2026-06": 2.0} and again.monthly("logins") == {"2026-06": 4.0}


def test_unreadable_period_parts_read_as_empty():
    row = UsageRow.from_stored({"t": {}, "o": 1, "w": {}, "m": {"a": {"2026-06": "many", "2026-05": 3}, "b": []},
                                "d": {"a": {"x": 1, "20600": float("nan"), "20601": 2}, "b": 5}})
    assert row.monthly("a") == {"2026-05": 3.0} and row.monthly("b") == {}
    assert row.daily("a") == {date(1970, 1, 1) + timedelta(days=20601): 2.0} and row.daily("b") == {}
    assert UsageRow.from_stored({"m": "x", "d": 3}).monthly("a") == {}
