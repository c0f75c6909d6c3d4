"""The adapters' mapping rules, without a broker: Segment Spec and Salesforce CDC payloads in, records out."""
from datetime import datetime, timezone

import pytest

from milestone_stream.agents import salesforce_cdc, segment
from milestone_stream.agents.mapping import Rejected, Skipped
from milestone_stream.agents.origins import republished
from milestone_stream.models import CrmChange, FieldChange, Origin, ResyncNeeded, TelemetryEvent

from payloads import cdc, config, group, track

ORIGIN = Origin(topic="segment.events", partition=2, offset=41)
KAFKA_TIME = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
SEG, CDC = config().segment, config().salesforce_cdc


def seg(message):
    return segment.map_message(message, SEG, ORIGIN, KAFKA_TIME)


def test_a_track_call_becomes_one_telemetry_event_with_its_ids_and_origin():
    event = seg(track("ajs-1", "acct-1"))
    assert isinstance(event, TelemetryEvent)
    assert (event.event_id, event.account_id, event.metric, event.value, event.source) == \
        ("ajs-1", "acct-1", "emails_sent", 1.0, "segment")
    assert event.origin == ORIGIN and event.attributes == {"segment_event": "Email Sent"}
    assert seg(track("ajs-1", "acct-1")) == event  # the same message always maps to the same record


def test_a_numeric_property_is_the_value_and_must_be_a_number():
    assert seg(track("m", "a", "Emails Delivered", {"count": 250})).value == 250.0
    for bad in ("250", -3, True, None):
        with pytest.raises(Rejected) as err:
            seg(track("m", "a", "Emails Delivered", {"count": bad}))
        assert err.value.reason == "invalid_value"


def test_device_clock_skew_is_corrected_from_sent_at_and_received_at():
    # sent 5 s after it happened (device clock), received at 09:00:06.5 (Segment's clock): it happened at 09:00:01.5
    assert seg(track("m", "a")).occurred_at == datetime(2026, 6, 1, 9, 0, 1, 500000, tzinfo=timezone.utc)
    # a device clock a day slow: the event still lands when it happened by the server's clock
    slow = track("m", "a", timestamp="2026-05-31T09:00:00Z", sentAt="2026-05-31T09:00:02Z",
                 receivedAt="2026-06-01T09:00:03Z")
    assert seg(slow).occurred_at == datetime(2026, 6, 1, 9, 0, 1, tzinfo=timezone.utc)
    # Segment already corrected `timestamp` when `originalTimestamp` is present
    assert seg(track("m", "a", originalTimestamp="2026-05-31T09:00:00Z")).occurred_at == \
        datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)
    bare = {k: v for k, v in track("m", "a").items() if k not in ("timestamp", "sentAt", "receivedAt")}
    assert seg(bare).occurred_at == KAFKA_TIME
    with pytest.raises(Rejected, match="ISO-8601"):
        seg(track("m", "a", timestamp="yesterday"))


def test_account_comes_from_the_configured_paths_in_order():
    assert seg(track("m", None, properties={"account_id": "from-props"})).account_id == "from-props"
    with pytest.raises(Rejected) as err:
        seg(track("m", None))
    assert err.value.reason == "no_account"


def test_unmapped_and_other_calls_are_skipped_and_malformed_ones_rejected():
    assert seg(track("m", "a", "Page Scrolled")) == Skipped("unmapped_event")
    assert seg({"type": "identify", "userId": "u", "traits": {"email": "x@y.example"}}) == Skipped("identify_call")
    strict = SEG.model_copy(update={"unmapped": "deadletter"})
    with pytest.raises(Rejected) as err:
        segment.map_message(track("m", "a", "Page Scrolled"), strict, ORIGIN, KAFKA_TIME)
    assert err.value.reason == "unmapped_event"
    for bad in ([1, 2], {"type": "teleport"}, {"type": "track"}):
        with pytest.raises(Rejected) as err:
            seg(bad)
        assert err.value.reason == "malformed"


def test_a_group_call_updates_the_profile_from_mapped_traits():
    change = seg(group("g-1", "acct-1", name="Acme Corp", industry="financial services", employees=120))
    assert isinstance(change, CrmChange)
    assert change.change_id == "segment:g-1" and change.account_id == "acct-1"
    assert change.changes == [FieldChange(field="name", value="Acme Corp"),
                              FieldChange(field="industry", value="financial services")]
    assert seg(group("g-2", "acct-1", employees=120)) == Skipped("no_mapped_traits")


def sf(message):
    return salesforce_cdc.map_event(message, CDC, Origin(topic="sf.accounts", partition=0, offset=7))


def fields(change: CrmChange) -> dict:
    return {fc.field: fc.value for fc in change.changes}


def test_update_maps_only_changed_fields_and_nulled_fields_become_null():
    event = cdc("UPDATE", ["001xx000003DGb2AAG"], {"ROI_Percent__c": 152.5, "Industry": None},
                changed=["ROI_Percent__c", "Industry", "LastModifiedDate"], nulled=["Industry"])
    [change] = sf(event)
    assert change.account_id == "001xx000003DGb2AAG"
    assert fields(change) == {"roi_percent": 152.5, "industry": None}  # Name is null but unchanged: untouched
    assert change.occurred_at == datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)
    assert change.change_id == "sfcdc:0002343d-9d90-e395-ed20-cf416ba652ad:1:001xx000003DGb2AAG"
    assert change.source == "salesforce" and change.source_record == "Account 001xx000003DGb2AAG"


def test_an_event_naming_several_records_changes_each_of_them():
    changes = sf(cdc("UPDATE", ["001A", "001B", "001C"], {"Uses_Automation__c": True},
                     changed=["Uses_Automation__c"]))
    assert [c.account_id for c in changes] == ["001A", "001B", "001C"]
    assert all(fields(c) == {"adoption.automation_sequences": True} for c in changes)
    assert len({c.change_id for c in changes}) == 3


def test_create_takes_every_mapped_field_and_converts_types():
    [change] = sf(cdc("CREATE", ["001N"], {"Name": "Globex", "Contract_Start_Date__c": "2024-02-29",
                                           "BillingAddress": {"City": "Lyon", "Country": "FR"}},
                      envelope="cometd"))
    assert fields(change) == {"name": "Globex", "contract_start": "2024-02-29", "billing_city": "Lyon"}
    # Avro `date` fields arrive as days since the epoch from the Pub/Sub API
    [change] = sf(cdc("UPDATE", ["001N"], {"Contract_Start_Date__c": 19782}, changed=["Contract_Start_Date__c"]))
    assert fields(change) == {"contract_start": "2024-02-29"}
    # a compound field's part is changed when the compound is listed with its part
    [change] = sf(cdc("UPDATE", ["001N"], {"BillingAddress": {"City": "Paris"}}, changed=["BillingAddress.City"]))
    assert fields(change) == {"billing_city": "Paris"}


def test_delete_and_undelete_mark_the_profile():
    [deleted] = sf(cdc("DELETE", ["001D"]))
    assert fields(deleted) == {"crm_deleted": True}
    [back] = sf(cdc("UNDELETE", ["001D"], {"Name": "Initech"}))
    assert fields(back) == {"name": "Initech", "crm_deleted": False}


def test_gap_events_are_resync_requests_never_changes():
    gap = sf(cdc("GAP_UPDATE", ["001G", "001H"]))
    assert isinstance(gap, ResyncNeeded)
    assert (gap.entity, gap.record_ids, gap.change_type) == ("Account", ["001G", "001H"], "GAP_UPDATE")
    assert (gap.topic, gap.partition, gap.offset) == ("sf.accounts", 0, 7)
    overflow = sf(cdc("GAP_OVERFLOW", ["000000000000000AAA"]))
    assert isinstance(overflow, ResyncNeeded) and overflow.record_ids == [] and overflow.entity == "Account"


def test_other_entities_unmapped_changes_and_broken_events():
    other = cdc("UPDATE", ["003C"], changed=["Email"])
    other["ChangeEventHeader"]["entityName"] = "Contact"
    assert sf(other) == Skipped("other_entity")
    assert sf(cdc("UPDATE", ["001A"], {"Phone": "555"}, changed=["Phone", "LastModifiedDate"])) == \
        Skipped("no_mapped_fields")
    for bad, reason in (({"Name": "x"}, "malformed"), (cdc("UPSERT", ["001A"]), "malformed"),
                        (cdc("UPDATE", [], {"Name": "x"}, changed=["Name"]), "no_account"),
                        (cdc("UPDATE", ["001A"], {"ROI_Percent__c": "lots"}, changed=["ROI_Percent__c"]),
                         "invalid_value")):
        with pytest.raises(Rejected) as err:
            sf(bad)
        assert err.value.reason == reason


def test_an_adapters_republished_copy_is_recognised_by_its_source_offset():
    marks = {}
    first = [Origin(topic="s", partition=p, offset=o) for p, o in ((0, 5), (1, 2), (0, 9))]
    assert [republished(marks, o) for o in first] == [False, False, False]
    assert republished(marks, Origin(topic="s", partition=0, offset=9))      # the last one again
    assert republished(marks, Origin(topic="s", partition=0, offset=5))      # an earlier one
    assert not republished(marks, Origin(topic="s", partition=1, offset=3))  # new on its partition
    assert not republished(marks, None)                                      # published directly


def test_a_mapping_to_a_metric_the_rules_do_not_know_stops_start_up_with_one_line(tmp_path):
    from milestone_stream.adapters import AdaptersConfig
    from milestone_stream.rules import Rules
    from milestone_stream.settings import ConfigError

    path = tmp_path / "adapters.yaml"
    path.write_text("segment: {topic: s, track: {Tweet Sent: {metric: tweets}}}\n")
    with pytest.raises(ConfigError, match=r"segment.track maps to metrics the rules do not know: \['tweets'\]"):
        AdaptersConfig.load(path, Rules())
    path.write_text("salesforce_cdc: {topic: s, fields: {ROI__c: {to: roi_percent, type: percentage}}}\n")
    with pytest.raises(ConfigError, match="salesforce_cdc.fields.ROI__c.type"):
        AdaptersConfig.load(path, Rules())
    assert AdaptersConfig.load(None, Rules()).source_topics() == []
