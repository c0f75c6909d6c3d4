"""Pure logic: rules validation, anniversaries, spikes, settings (no broker)."""
import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

from milestone_stream.agents.detector import usage
from milestone_stream.agents.detector.anniversary import anniversary_date, due_now, next_due
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import TelemetryEvent
from milestone_stream.settings import ConfigError, Settings


def test_leap_day_contract_celebrates_on_28_february_in_common_years():
    start = date(2024, 2, 29)
    assert anniversary_date(start, 1) == date(2025, 2, 28)
    assert anniversary_date(start, 4) == date(2028, 2, 29)
    assert due_now(start, [1, 2], set(), today=date(2025, 2, 27)) == ([], [])
    assert due_now(start, [1, 2], set(), today=date(2025, 2, 28)) == ([1], [])
    assert due_now(start, [1, 2], {1}, today=date(2025, 3, 1)) == ([], [])


def test_year_boundary_and_backfilled_contracts():
    start = date(2023, 12, 31)
    assert next_due(start, [1, 2, 3, 5], set()) == (date(2024, 12, 31), 1)
    # 31 Dec 2024 is one year; on 1 Jan 2025 it is a day old: still celebrated
    celebrate, passed = due_now(start, [1, 2], set(), today=date(2025, 1, 1))
    assert (celebrate, passed) == ([1], [])
    celebrate, passed = due_now(date(2019, 6, 1), [1, 2, 3, 5], set(), today=date(2024, 6, 3))
    assert (celebrate, passed) == ([5], [1, 2, 3])  # a backfilled start fires only the recent one


_ids = itertools.count()


class Ids(dict):
    """The event-id table as a dict (`usage.SeenIds`)."""

    def first_offset(self, key):
        return self.get(key)

    def remember(self, key, offset):
        self[key] = offset


def apply(row, event, offset, rules, seen=None):
    """apply_event with its own id table and `now` at the event's time."""
    return usage.apply_event(row, event, offset, rules, Ids() if seen is None else seen, event.occurred_at)


def ev(value, at, metric="active_users"):
    return TelemetryEvent(event_id=f"e{next(_ids)}", account_id="a", metric=metric, value=value, occurred_at=at,
                          source="s")


def test_spike_fires_once_per_window_above_the_minimum_base():
    rules = Rules()
    row, week = usage.UsageRow(), timedelta(days=7)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    start = datetime.fromtimestamp((base.timestamp() // week.total_seconds()) * week.total_seconds(), tz=UTC)
    offset = iter(range(100))
    seen = Ids()

    def step(v, at):
        return apply(row, ev(v, at), next(offset), rules, seen)[1]

    assert step(40, start) == []                          # week 1: 40 active users
    assert step(50, start + week) == []                   # week 2: +25%, under 1.5x
    fired = step(80, start + week + timedelta(days=1))    # week 2 peaks at 80 = 2x
    assert [m.kind for m in fired] == ["adoption_spike"] and "up 100%" in fired[0].title
    assert step(90, start + week + timedelta(days=2)) == []  # once per window
    assert step(5, start + 3 * week) == []                # gap: previous window counts as 0, below min base


def test_tiers_fire_in_order_and_replays_are_skipped():
    rules = Rules()
    row = usage.UsageRow()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    status, fired = apply(row, ev(12000, at, "emails_sent"), 5, rules)
    assert status == usage.APPLIED and [m.threshold for m in fired] == [500, 1000, 5000, 10000]
    assert apply(row, ev(1, at, "emails_sent"), 5, rules) == (usage.REPLAYED, [])


@pytest.mark.parametrize("steps, fired", [
    ([1000], [500, 1000]),          # reaching a tier exactly fires it
    ([999, 1], [500, 1000]),        # ... also when the last event lands on it
    ([1000, 1], [500, 1000]),       # sitting on a tier does not fire it again
    ([499.5, 0.5, 4500], [500, 1000, 5000]),
])
def test_tier_boundaries(steps, fired):
    rules, row = Rules(), usage.UsageRow()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    got = [m.threshold for i, v in enumerate(steps)
           for m in apply(row, ev(v, at, "emails_sent"), i, rules)[1]]
    assert got == fired


@pytest.mark.parametrize("yaml_text, message", [
    ("usage: {emails_sent: {tiers: [1000, 500]}}", "usage.emails_sent.tiers"),
    ("roi_levels: nope", "roi_levels"),
    ("spike: {metric: unknown_thing}", "spike metric 'unknown_thing'"),
    ("bogus_key: 1", "bogus_key"),
    ("usage: [", "not valid YAML"),
])
def test_bad_rules_fail_fast_with_one_line(tmp_path, yaml_text, message):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        Rules.load(path)
    text = err.value.args[0]
    assert message in text and "\n" not in text and err.value.code == 2


def test_bad_setting_fails_fast_with_one_line():
    with pytest.raises(ConfigError, match="MILESTONES_PARTITIONS='zero'"):
        Settings.from_env({"MILESTONES_PARTITIONS": "zero"})
    assert Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "h:1"}).broker_url == "kafka://h:1"


def test_a_late_older_crm_value_does_not_overwrite_a_newer_one_nor_fire():
    from milestone_stream.agents.detector import crm
    from milestone_stream.schemas.records import CrmChange, FieldChange

    def change(n, minute, **fields):
        return CrmChange(change_id=f"c{n}", account_id="acme", source="salesforce", source_record="001A",
                         occurred_at=datetime(2026, 6, 1, 9, minute, tzinfo=UTC),
                         changes=[FieldChange(field=k, value=v) for k, v in fields.items()])

    row, rules, today = crm.ProfileRow(), Rules(), date(2026, 6, 1)
    fired = crm.apply_change(row, change(1, 30, roi_percent=120.0, industry=None), ("crm", 0), rules, today)
    assert [m.threshold for m in fired] == [100]
    # published earlier in the CRM, delivered later (another partition, a backfill)
    fired = crm.apply_change(row, change(2, 10, roi_percent=210.0, industry="retail", name="Acme"), ("crm", 1),
                             rules, today)
    assert fired == [] and row.fields == {"roi_percent": 120.0, "name": "Acme"}  # the cleared industry stays cleared
    fired = crm.apply_change(row, change(3, 45, roi_percent=160.0), ("crm", 2), rules, today)
    assert [m.threshold for m in fired] == [150] and row.field("roi_percent") == 160.0


def test_a_working_copy_of_a_row_leaves_the_stored_row_untouched():
    stored = usage.UsageRow()
    rules = Rules()
    apply(stored, TelemetryEvent(event_id="e1", account_id="a", metric="emails_sent", value=600,
                                 occurred_at=datetime(2026, 6, 1, tzinfo=UTC), source="t"), 0, rules)
    snapshot = repr(stored)
    work = stored.copy()
    status, fired = apply(work, TelemetryEvent(event_id="e2", account_id="a", metric="emails_sent", value=500,
                                               occurred_at=datetime(2026, 6, 2, tzinfo=UTC), source="t"),
                          1, rules)
    assert status == usage.APPLIED and [m.threshold for m in fired] == [1000]
    assert repr(stored) == snapshot and work.total("emails_sent") == 1100


def test_duplicates_are_exact_within_the_horizon_however_many_events_came_between():
    rules, seen, row = Rules(), Ids(), usage.UsageRow()
    at = datetime(2026, 6, 1, tzinfo=UTC)

    def send(event_id, offset, now=at + timedelta(days=1)):
        event = TelemetryEvent(event_id=event_id, account_id="a", metric="emails_sent", value=1, occurred_at=at,
                               source="t")
        return usage.apply_event(row, event, offset, rules, seen, now)[0]

    assert send("e0", 0) == usage.APPLIED
    assert [send(f"e{i}", i) for i in range(1, 50_001)] == [usage.APPLIED] * 50_000
    assert send("e0", 50_001) == usage.DUPLICATE  # 50,000 newer ids later, still recognised
    assert send("e7", 50_002, now=at + timedelta(days=29)) == usage.DUPLICATE
    assert row.total("emails_sent") == 50_001
    # older than the horizon: refused (to be dead-lettered), never counted, even with a new id
    assert send("new", 50_003, now=at + timedelta(days=30, seconds=1)) == usage.BEYOND_HORIZON
    assert row.total("emails_sent") == 50_001
    assert send("e9", 9) == usage.REPLAYED


def test_an_id_written_before_a_crash_lost_the_row_is_this_event_replayed_not_a_duplicate():
    """The id entry and the row are two changelog writes: either may survive a crash alone."""
    rules, at = Rules(), datetime(2026, 6, 1, tzinfo=UTC)
    event = TelemetryEvent(event_id="e1", account_id="a", metric="emails_sent", value=600, occurred_at=at, source="t")
    seen = Ids()
    usage.apply_event(usage.UsageRow(), event, 7, rules, seen, at)  # the id was written, the row was not
    row = usage.UsageRow()
    status, fired = usage.apply_event(row, event, 7, rules, seen, at)  # read again after the restart
    assert status == usage.APPLIED and [m.threshold for m in fired] == [500] and row.total("emails_sent") == 600
    assert usage.apply_event(row, event, 8, rules, seen, at)[0] == usage.DUPLICATE  # a real re-send
    # the row was written, the id was not: the replay (offset at or below the row's) writes the id again
    lost = Ids()
    assert usage.apply_event(row, event, 7, rules, lost, at)[0] == usage.REPLAYED
    assert lost == {usage.id_key("a", "e1"): 7}


def test_rows_of_the_recent_ids_format_are_read_and_lose_the_old_list():
    stored = {"t": {}, "o": -1, "r": "AAAAAAAA", "w": {}}
    assert "r" not in usage.UsageRow.from_stored(stored).copy().to_stored()


def test_values_above_the_configured_bound_are_refused():
    rules = Rules.model_validate({"max_event_value": 1000})
    at = datetime(2026, 6, 1, tzinfo=UTC)
    big = TelemetryEvent(event_id="e", account_id="a", metric="emails_sent", value=1e308, occurred_at=at, source="t")
    assert usage.rejection(big, rules, at)[0] == "value_out_of_range"
    assert usage.rejection(big.model_copy(update={"value": 1000.0}), rules, at) is None
    with pytest.raises(ValueError):
        TelemetryEvent(event_id="e", account_id="a", metric="emails_sent", value=float("nan"), occurred_at=at,
                       source="t")


def test_a_parked_event_keeps_its_id_free_for_the_replay_of_its_dead_letter():
    """A parked event (a rule raised, or beyond the horizon) was never counted: read again after a
    crash it must not be taken for an applied one, and its replay at a new offset counts once."""
    rules, seen, row = Rules(), Ids(), usage.UsageRow()
    at = datetime(2026, 6, 1, tzinfo=UTC)
    poison = TelemetryEvent(event_id="p", account_id="a", metric="emails_sent", value=600, occurred_at=at, source="t")
    good = poison.model_copy(update={"event_id": "g", "value": 1.0})
    row.mark_parked(10)  # the agent parked the event at offset 10
    assert apply(row, good, 11, rules, seen)[0] == usage.APPLIED
    assert apply(row, poison, 10, rules, seen)[0] == usage.REPLAYED  # read again after a crash
    assert usage.id_key("a", "p") not in seen
    status, fired = apply(row, poison, 500, rules, seen)  # the dead letter replayed
    assert status == usage.APPLIED and [m.threshold for m in fired] == [500] and row.total("emails_sent") == 601
    old = poison.model_copy(update={"event_id": "old"})
    assert usage.apply_event(row, old, 501, rules, seen, at + timedelta(days=31))[0] == usage.BEYOND_HORIZON
    assert apply(row, old, 501, rules, seen)[0] == usage.REPLAYED and usage.id_key("a", "old") not in seen
    assert 501 in row.parked and 10 in row.parked


def test_an_adapters_re_published_copy_is_a_duplicate_by_its_event_id():
    rules, seen, row = Rules(), Ids(), usage.UsageRow()
    at = datetime(2026, 6, 1, tzinfo=UTC)
    first = TelemetryEvent(event_id="msg-1", account_id="a", metric="emails_sent", value=5, occurred_at=at,
                           source="segment", origin={"topic": "segment.events", "partition": 0, "offset": 7})
    assert apply(row, first, 1, rules, seen)[0] == usage.APPLIED
    assert apply(row, first, 2, rules, seen)[0] == usage.DUPLICATE  # re-published after the adapter's crash
    assert row.total("emails_sent") == 5


def test_crm_values_that_are_no_count_or_no_date_mark_no_milestone():
    from milestone_stream.agents.detector import crm
    from milestone_stream.schemas.records import CrmChange, FieldChange

    at = datetime(2026, 6, 1, tzinfo=UTC)

    def marks(field, value):
        change = CrmChange(change_id=f"c-{field}-{value}", account_id="a", source="crm", occurred_at=at,
                           changes=[FieldChange(field=field, value=value)])
        return crm.apply_change(crm.ProfileRow(), change, ("crm", 1), Rules(), at.date())

    assert marks("certification.admin", -7) == [] and marks("certification.admin", 2.5) == []
    assert [m.title for m in marks("certification.admin", 5)] == ["5 certified in admin"]
    assert marks("qbr_completed_at", "<img src=x>") == [] and marks("qbr_completed_at", 17) == []
    assert [m.title for m in marks("qbr_completed_at", "2026-05-01T10:00:00Z")] == ["QBR completed on 2026-05-01"]
