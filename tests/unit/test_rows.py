"""Typed table rows: each row class reads and writes exactly the compact form its changelog holds.

Why: changelogs outlive code. A worker restores rows written by earlier versions, and every row is
rewritten often, so the typed classes (UsageRow, ProfileRow, CelebrationRow) must write the same
one-letter keys, in the same order, as the dict rows did — the expected bytes below were produced
by the dict implementation they replace — and must read the older forms still in changelogs.
"""
import json
from datetime import UTC, date, datetime, timedelta

from faust.serializers import codecs

from milestone_stream.agents.detector import crm, usage
from milestone_stream.agents.detector.crm import ProfileRow
from milestone_stream.agents.detector.usage import UsageRow
from milestone_stream.agents.drafter import policy
from milestone_stream.agents.drafter.policy import CelebrationRow
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import (
    Contact,
    CrmChange,
    Evidence,
    FieldChange,
    Milestone,
    Origin,
    TelemetryEvent,
)

AT = datetime(2026, 6, 1, tzinfo=UTC)
RULES = Rules(spike={"metric": "active_users", "window_days": 7, "ratio": 1.5, "min_base": 20},
              gauges=["active_users"])

# written by the dict rows (commit 27154eb) for the same inputs, through Faust's JSON codec
USAGE = (b'{"t":{"emails_sent":612.5},"o":3,"w":{"active_users":{"s":1779926400.0,"m":50.0,"p":30.0,'
         b'"f":1779926400.0}},"s":{"emails_sent":[1780272000.0,1780358400.0]}}')
# rows of dict code before the exact dedupe kept adapters' source offsets in "x" (now dropped when read)
USAGE_ADAPTED = (b'{"t":{"emails_sent":612.5},"o":3,"w":{"active_users":{"s":1779926400.0,"m":50.0,"p":30.0,'
                 b'"f":1779926400.0}},"x":{"segment#0":41},"s":{"emails_sent":[1780272000.0,1780358400.0]}}')
# the same row after an event at offset 9 was parked (dead-lettered instead of applied)
USAGE_PARKED = USAGE.replace(b'"o":3', b'"o":9')[:-1] + b',"k":[9]}'
# the same events counted since the monthly totals ("m", after every older key; a gauge keeps its maximum)
MONTHLY = b',"m":{"emails_sent":{"2026-06":612.5},"active_users":{"2026-05":30.0,"2026-06":50.0}}}'
PROFILE = (b'{"p":{"name":"Acme","roi_percent":160.0,"contract_start":"2024-06-01"},"c":[{"name":"Jane",'
           b'"email":"jane@a.example","role":"executive_sponsor"}],"f":["3310d5424863db2385145f663ab17e45",'
           b'"7435b1970ba433c27a55ca58c5a24a64"],"a":[],"o":{"crm":3},"r":["c1"],"s":{"name":["salesforce",'
           b'"001A","2026-06-01T00:00:00+00:00"],"roi_percent":["salesforce","001A","2026-06-01T00:00:00+00:00"],'
           b'"contract_start":["salesforce","001A","2026-06-01T00:00:00+00:00"]}}')
HELD = (b'{"d":["m1"],"q":[{"m":{"milestone_id":"m1","account_id":"a","kind":"usage_threshold",'
        b'"metric":"emails_sent","threshold":500.0,"value":600.0,"title":"500 emails sent",'
        b'"reached_at":"2026-06-01T00:00:00Z","evidence":[{"source":"t","record":"event e0",'
        b'"occurred_at":"2026-06-01T00:00:00Z"}]},"o":["milestones",0,1]}],"h":"2026-06-01T00:00:00+00:00","l":null}')
CELEBRATED = b'{"d":["m1"],"q":[],"h":null,"l":"2026-06-01T01:00:00+00:00"}'


class Ids(dict):
    def first_offset(self, key):
        return self.get(key)

    def remember(self, key, offset):
        self[key] = offset


def stored(row) -> bytes:
    """The changelog value Faust writes for the row (the tables' value serializer is json)."""
    return codecs.dumps("json", row.to_stored())


def restored(cls, value: bytes):
    return cls.from_stored(codecs.loads("json", value))


def usage_row(adapted: bool = False) -> UsageRow:
    row, seen = UsageRow(), Ids()
    events = [("emails_sent", 600, 0), ("active_users", 30, -7), ("active_users", 50, 0), ("emails_sent", 12.5, 1)]
    for offset, (metric, value, day) in enumerate(events):
        origin = Origin(topic="segment", partition=0, offset=41) if adapted and offset == 0 else None
        event = TelemetryEvent(event_id=f"e{offset}", account_id="a", metric=metric, value=value, origin=origin,
                               occurred_at=AT + timedelta(days=day), source="t")
        usage.apply_event(row, event, offset, RULES, seen, AT + timedelta(days=2))
    return row


def profile_row() -> ProfileRow:
    row = ProfileRow()
    change = CrmChange(change_id="c1", account_id="a", occurred_at=AT, source="salesforce", source_record="001A",
                       changes=[FieldChange(field="name", value="Acme"), FieldChange(field="roi_percent", value=160.0),
                                FieldChange(field="contract_start", value="2024-06-01")],
                       contacts=[Contact(name="Jane", email="jane@a.example", role="executive_sponsor")])
    crm.apply_change(row, change, ("crm", 3), RULES, date(2026, 6, 1))
    return row


def milestone() -> Milestone:
    return Milestone(milestone_id="m1", account_id="a", kind="usage_threshold", metric="emails_sent", threshold=500,
                     value=600.0, title="500 emails sent", reached_at=AT,
                     evidence=[Evidence(source="t", record="event e0", occurred_at=AT)])


def test_each_row_writes_the_bytes_the_dict_rows_wrote():
    assert stored(usage_row()) == USAGE[:-1] + MONTHLY
    assert stored(usage_row(adapted=True)) == USAGE[:-1] + MONTHLY  # an adapter's record leaves no trace
    parked = usage_row()
    parked.mark_parked(9)
    assert stored(parked) == USAGE_PARKED[:-1] + MONTHLY
    assert stored(profile_row()) == PROFILE
    row = CelebrationRow()
    policy.take_in(row, milestone(), ("milestones", 0, 1), AT)
    assert stored(row) == HELD
    policy.mark_celebrated(row, AT + timedelta(hours=1))
    assert stored(row) == CELEBRATED


def test_each_row_round_trips_through_its_stored_form():
    for cls, value in [(UsageRow, USAGE), (UsageRow, USAGE_PARKED), (ProfileRow, PROFILE),
                       (CelebrationRow, HELD), (CelebrationRow, CELEBRATED)]:
        row = restored(cls, value)
        assert stored(row) == value and stored(row.copy()) == value
        assert row == row.copy() and cls.from_stored(row.to_stored()) == row
    for cls in (UsageRow, ProfileRow, CelebrationRow):  # a new row is the row a missing key reads as
        assert cls.from_stored(None) == cls() and cls.from_stored(cls().to_stored()) == cls()
    assert UsageRow().to_stored() == {"t": {}, "o": -1, "w": {}}
    assert ProfileRow().to_stored() == {"p": {}, "c": [], "f": [], "a": [], "o": {}, "r": []}
    assert CelebrationRow().to_stored() == {"d": [], "q": [], "h": None, "l": None}


def test_rows_read_what_other_modules_need_by_name():
    row = restored(UsageRow, USAGE)
    assert row.total("emails_sent") == 612.5 and row.total("calls") is None and row.total("calls", 0.0) == 0.0
    assert row.first_last("emails_sent") == (1780272000.0, 1780358400.0) and row.first_last("calls") is None
    assert row.window_measures() == [("active_users", 1779926400.0, 50.0)]
    profile = restored(ProfileRow, PROFILE)
    assert profile.field("name") == "Acme" and profile.field("csm_email") is None
    assert profile.contacts == [{"name": "Jane", "email": "jane@a.example", "role": "executive_sponsor"}]
    assert profile.provenance("name") == ("salesforce", "001A", AT) and profile.provenance("industry") is None
    assert profile.contract_start() == date(2024, 6, 1)
    held = restored(CelebrationRow, HELD)
    assert policy.held(held) == [(milestone(), ("milestones", 0, 1))]


def test_legacy_forms_are_read():
    # usage rows from before the exact dedupe: recent ids in "r" (a string of hashes, earlier a list); dropped
    for recent in ("AAAAAAAABBBBBBBB", ["0a1b2c3d", "4e5f6a7b"]):
        value = {"t": {"emails_sent": 5.0}, "o": 7, "r": recent, "w": {}}
        row = UsageRow.from_stored(value)
        assert row.copy().to_stored() == {"t": {"emails_sent": 5.0}, "o": 7, "w": {}}
        assert row.total("emails_sent") == 5.0 and row.first_last("emails_sent") is None
    # profile rows from before provenance ("s"): read, and written without it until a field changes
    old = {"p": {"name": "Acme"}, "c": [], "f": [], "a": [1], "o": {"crm": 2}, "r": ["c0"]}
    profile = ProfileRow.from_stored(json.loads(json.dumps(old)))
    assert profile.to_stored() == old and profile.provenance("name") is None and profile.years_done == [1]
    # rows with adapters' source offsets ("x", before or after "s"): read, and written without them
    for order in (("t", "o", "w", "x", "s"), ("t", "o", "w", "s", "x")):
        value = json.loads(USAGE_ADAPTED)
        assert stored(UsageRow.from_stored({k: value[k] for k in order})) == USAGE


def test_a_working_copy_shares_nothing_the_rules_change():
    for cls, value in [(UsageRow, USAGE_PARKED), (ProfileRow, PROFILE), (CelebrationRow, HELD)]:
        original = codecs.loads("json", value)
        work = cls.from_stored(original).copy()
        if cls is UsageRow:
            usage.apply_event(work, TelemetryEvent(event_id="e9", account_id="a", metric="emails_sent", value=1000,
                                                   origin=Origin(topic="segment", partition=0, offset=42),
                                                   occurred_at=AT + timedelta(days=2), source="t"),
                              9, RULES, Ids(), AT + timedelta(days=2))
            work.windows["active_users"]["m"] = 99.0
        elif cls is ProfileRow:
            crm.apply_change(work, CrmChange(change_id="c2", account_id="a", occurred_at=AT + timedelta(days=1),
                                             source="salesforce", changes=[FieldChange(field="roi_percent",
                                                                                       value=210.0)]),
                             ("crm", 4), RULES, date(2026, 6, 2))
        else:
            policy.take_in(work, milestone().model_copy(update={"milestone_id": "m2"}), ("milestones", 0, 2), AT)
            policy.forget_held(work)
        assert stored(work) != value and codecs.dumps("json", original) == value


def test_unreadable_stored_parts_read_as_empty():
    """The drafter reads rows it did not write; a part of the wrong type is no part at all."""
    row = UsageRow.from_stored({"t": "many", "w": [1], "s": "garbage", "k": 3})
    assert (row.totals, row.windows, row.spans, row.parked, row.offset) == ({}, {}, None, None, -1)
    row = UsageRow.from_stored({"t": {}, "w": {"a": [1, 2]}, "s": {"a": "garbage", "b": [1, 2, 3]}})
    assert row.window_measures() == [("a", None, None)] and row.first_last("a") is None
    assert row.first_last("b") is None
    profile = ProfileRow.from_stored({"p": [], "c": "x", "s": {"name": ["a", "b"], "roi": "abc"}})
    assert (profile.fields, profile.contacts) == ({}, [])
    assert profile.provenance("name") is None and profile.provenance("roi") is None
    assert ProfileRow.from_stored("not a row") == ProfileRow()


def test_every_row_class_is_a_stored_row():
    from milestone_stream.tables import StoredRow

    def check(cls: type[StoredRow]) -> None:   # a type checker verifies the classes against the protocol
        assert callable(cls.from_stored) and callable(cls.to_stored) and callable(cls.copy)

    for cls in (UsageRow, ProfileRow, CelebrationRow):
        check(cls)
