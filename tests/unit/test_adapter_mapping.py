"""The adapters' mapping rules, without a broker: Segment Spec and Salesforce CDC payloads in, records out."""
import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest

from milestone_stream.agents.ingest import salesforce_cdc, segment
from milestone_stream.agents.ingest.mapping import Rejected, Skipped, calendar_date
from milestone_stream.schemas.records import CrmChange, FieldChange, Origin, ResyncNeeded, TelemetryEvent

from support.payloads import ACCOUNT_CHANGE_EVENT_SCHEMA, cdc, config, group, track

ORIGIN = Origin(topic="segment.events", partition=2, offset=41)
KAFKA_TIME = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
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
    assert seg(track("m", "a")).occurred_at == datetime(2026, 6, 1, 9, 0, 1, 500000, tzinfo=UTC)
    # a device clock a day slow: the event still lands when it happened by the server's clock
    slow = track("m", "a", timestamp="2026-05-31T09:00:00Z", sentAt="2026-05-31T09:00:02Z",
                 receivedAt="2026-06-01T09:00:03Z")
    assert seg(slow).occurred_at == datetime(2026, 6, 1, 9, 0, 1, tzinfo=UTC)
    # Segment already corrected `timestamp` when `originalTimestamp` is present
    assert seg(track("m", "a", originalTimestamp="2026-05-31T09:00:00Z")).occurred_at == \
        datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
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
    assert change.occurred_at == datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
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


def test_a_mapping_to_a_metric_the_rules_do_not_know_stops_start_up_with_one_line(tmp_path):
    from milestone_stream.agents.ingest.config import AdaptersConfig
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


# --- dates, bitmaps, nested traits, hostile input ---------------------------------------------------------

def test_a_date_is_iso_text_epoch_days_or_epoch_milliseconds():
    # the event that was lost: a Pub/Sub API date as epoch ms (2025-03-01T00:00Z) raised OverflowError
    [change] = sf(cdc("UPDATE", ["001N"], {"Contract_Start_Date__c": 1740787200000},
                      changed=["Contract_Start_Date__c"]))
    assert fields(change) == {"contract_start": "2025-03-01"}
    for value, day in ((19782, "2024-02-29"), (19782.0, "2024-02-29"), (0, "1970-01-01"), (-1, "1969-12-31"),
                       (-719162, "0001-01-01"), (2932896, "9999-12-31"),              # days: the whole calendar
                       (10_000_000, "1970-01-01"), (-10_000_000, "1969-12-31"),       # ms from the threshold on
                       (1740787200000, "2025-03-01"), (1740873599999, "2025-03-01"),  # ms: the UTC date
                       (253402214400000, "9999-12-31"), (-62135596800000, "0001-01-01"),
                       ("2024-02-29", "2024-02-29"), ("2024-02-29T23:30:00-05:00", "2024-02-29"),
                       ("2024-02-29T10:00:00Z", "2024-02-29")):
        assert calendar_date(value, "d") == day, value
    for bad in (True, False, None, float("nan"), float("inf"), float("-inf"), 19782.5, 2932897, 9_999_999,
                -719163, 253402300800000, -62135596800001, 10 ** 30, -(10 ** 30), 10 ** 400, 2 ** 63,
                "2024-13-01", "yesterday", "", "0x10", [], {}, [19782], {"date": 19782}):
        with pytest.raises(Rejected) as err:
            calendar_date(bad, "d")
        assert err.value.reason == "invalid_value", bad


def test_a_datetime_field_is_iso_text_or_epoch_milliseconds_and_anything_else_is_an_invalid_value():
    cdc_config = salesforce_cdc.CdcConfig(topic="t", fields={"LastModifiedDate": {"to": "crm_modified_at",
                                                                                "type": "datetime"}})

    def modified(value):
        [change] = salesforce_cdc.map_event(cdc("UPDATE", ["001A"], {"LastModifiedDate": value},
                                                changed=["LastModifiedDate"]), cdc_config, ORIGIN)
        return fields(change)["crm_modified_at"]

    assert modified(1740787200000) == modified("2025-03-01T00:00:00Z") == "2025-03-01T00:00:00+00:00"
    assert modified("2025-03-01T01:00:00+01:00") == "2025-03-01T00:00:00+00:00"
    for bad in (True, float("nan"), float("inf"), 10 ** 30, 10 ** 400, 2 ** 63, "soon", "0001-01-01T00:00:00+01:00",
                "9999-12-31T23:59:59-01:00", [], {"at": 1}):
        with pytest.raises(Rejected) as err:
            modified(bad)
        assert err.value.reason == "invalid_value", bad


SCHEMA_CDC = config(schema_file=str(ACCOUNT_CHANGE_EVENT_SCHEMA)).salesforce_cdc


def sfs(message, cdc_config=SCHEMA_CDC):
    return salesforce_cdc.map_event(message, cdc_config, Origin(topic="sf.accounts", partition=0, offset=8))


def test_bitmap_fields_are_decoded_by_position_in_the_configured_schema():
    layout = SCHEMA_CDC.layout
    assert layout.top[:5] == ("ChangeEventHeader", "Name", "Type", "ParentId", "BillingAddress")
    # bit i, counted from the least significant (the end of the hex string), is field i
    assert salesforce_cdc.decode_fields(["0x2080"], layout) == {"Industry", "LastModifiedDate"}  # 2^7 + 2^13
    assert salesforce_cdc.decode_fields(["0x102000"], layout) == {"ROI_Percent__c", "LastModifiedDate"}  # 2^20 + 2^13
    assert salesforce_cdc.decode_fields(["0x10008A"], layout) == {  # 2+8+128+2^20
        "Name", "ParentId", "Industry", "ROI_Percent__c"}
    # "4-0x12": the compound at position 4 (BillingAddress), its fields 1 (City) and 4 (Country)
    assert salesforce_cdc.decode_fields(["0x0", "4-0x12"], layout) == {"BillingAddress.City", "BillingAddress.Country"}
    # ShippingAddress reuses the named type Address: its parts are read from the same record
    assert salesforce_cdc.decode_fields(["5-0x2"], layout) == {"ShippingAddress.City"}
    assert salesforce_cdc.decode_fields(["Name", "BillingAddress.City"], layout) == {"Name", "BillingAddress.City"}
    assert salesforce_cdc.decode_fields([], layout) == set()

    [change] = sfs(cdc("UPDATE", ["001A"], {"ROI_Percent__c": 152.5}, changed=["0x102000"]))
    assert fields(change) == {"roi_percent": 152.5}  # Name and Industry are null in the event but unchanged
    [change] = sfs(cdc("UPDATE", ["001A"], {"Contract_Start_Date__c": 1740787200000}, changed=["0x42000"]))
    assert fields(change) == {"contract_start": "2025-03-01"}  # 2^18 + 2^13
    [change] = sfs(cdc("UPDATE", ["001A"], {"BillingAddress": {"City": "Paris"}}, changed=["0x2000", "4-0x2"]))
    assert fields(change) == {"billing_city": "Paris"}


def test_nulled_bitmaps_clear_the_field_and_diff_fields_are_left_out():
    # Industry set to null: changed Industry + LastModifiedDate, nulled Industry
    [change] = sfs(cdc("UPDATE", ["001A"], changed=["0x2080"], nulled=["0x80"]))
    assert fields(change) == {"industry": None}
    # a part of a compound set to null, nested bitmap alone or after an empty top-level one
    for nulled in (["4-0x2"], ["0x0", "4-0x2"]):
        [change] = sfs(cdc("UPDATE", ["001A"], {"BillingAddress": {"City": None, "Street": "1 Main St"}},
                           changed=["0x2000", "4-0x3"], nulled=nulled))
        assert fields(change) == {"billing_city": None}, nulled
    # every part nulled at once: the compound itself is named (bit 4)
    [change] = sfs(cdc("UPDATE", ["001A"], changed=["0x2010"], nulled=["0x10"]))
    assert fields(change) == {"billing_city": None}
    # a long text sent as a diff (Description, bit 24) is a patch, not the text: not applied
    with_notes = config(schema_file=str(ACCOUNT_CHANGE_EVENT_SCHEMA),
                        fields={"Description": "notes", "ROI_Percent__c": {"to": "roi_percent", "type": "number"}})
    event = cdc("UPDATE", ["001A"], {"Description": "@@ -1,4 +1,5 @@\n-Old\n+New", "ROI_Percent__c": 9.5},
                changed=["0x1102000"])
    event["ChangeEventHeader"]["diffFields"] = ["0x1000000"]
    [change] = sfs(event, with_notes.salesforce_cdc)
    assert fields(change) == {"roi_percent": 9.5}
    event["ChangeEventHeader"]["diffFields"] = []
    [change] = sfs(event, with_notes.salesforce_cdc)
    assert fields(change) == {"roi_percent": 9.5, "notes": "@@ -1,4 +1,5 @@\n-Old\n+New"}


def test_a_bitmap_the_schema_cannot_explain_is_dead_lettered_as_a_schema_mismatch():
    for changed in (["0x2000000"],          # bit 25: the schema has 25 fields (0-24)
                    ["0x2000", "9-0x1"],    # NumberOfEmployees is not a compound field
                    ["0x2000", "99-0x1"],   # no field 99
                    ["0x2000", "4-0x800"]):  # Address has 11 fields (0-10)
        with pytest.raises(Rejected) as err:
            sfs(cdc("UPDATE", ["001A"], {"Name": "x"}, changed=changed))
        assert err.value.reason == "schema_mismatch", changed


def test_an_event_decoded_from_avro_with_the_schema_maps_like_its_json():
    """The bridge's view: the Pub/Sub API's Avro payload decoded with the schema (enum as text, unions as values)."""
    import io
    import json

    import fastavro

    schema = fastavro.parse_schema(json.loads(ACCOUNT_CHANGE_EVENT_SCHEMA.read_text()))
    event = cdc("UPDATE", ["001xx000003DGb2AAG"], {"ROI_Percent__c": 152.5, "Contract_Start_Date__c": 1740787200000,
                                                   "BillingAddress": {"City": "Lyon"},
                                                   "LastModifiedDate": 1780300800000},
                changed=["0x142000", "4-0x2"], nulled=["0x80"])
    event["ChangeEventHeader"]["changedFields"][0] = "0x142080"  # Industry (7) changed too: to null
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, event)
    decoded = fastavro.schemaless_reader(io.BytesIO(buffer.getvalue()), schema)
    assert decoded["ChangeEventHeader"]["changeType"] == "UPDATE"
    [change] = sfs(json.loads(json.dumps(decoded)))
    assert fields(change) == {"roi_percent": 152.5, "contract_start": "2025-03-01", "billing_city": "Lyon",
                              "industry": None}


def test_without_a_schema_bitmaps_fall_back_to_the_values_present():
    event = cdc("UPDATE", ["001A"], {"ROI_Percent__c": 2.0, "BillingAddress": {"City": "Paris"}},
                changed=["0x2000", "4-0x2"], nulled=["0x80"])
    [change] = sf(event)
    # every mapped field with a value; the nulled bitmap cannot be read, so Industry is left as it was
    assert fields(change) == {"roi_percent": 2.0, "billing_city": "Paris"}


def test_a_schema_file_is_checked_at_start_up_with_one_line(tmp_path):
    from milestone_stream.agents.ingest.config import AdaptersConfig
    from milestone_stream.rules import Rules
    from milestone_stream.settings import ConfigError

    path = tmp_path / "adapters.yaml"
    not_json, not_avro = tmp_path / "a.avsc", tmp_path / "b.avsc"
    not_json.write_text("{not json")
    not_avro.write_text('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "decimalish"}]}')
    other = Path(__file__).resolve().parents[2] / "schemas" / "crm_change.avsc"
    for schema_file, fields_yaml, message in (
            (tmp_path / "missing.avsc", "{Name: name}", "cannot be read"),
            (not_json, "{Name: name}", "is not JSON"),
            (not_avro, "{Name: name}", "is not an Avro schema"),
            (other, "{Name: name}", "is not a change event schema"),
            (ACCOUNT_CHANGE_EVENT_SCHEMA, "{Name: name, BillingAddress.Town: town, Revenue__c: revenue}",
             r"fields not in the change event schema .*\['BillingAddress.Town', 'Revenue__c'\]")):
        path.write_text(f"salesforce_cdc: {{topic: s, schema_file: '{schema_file}', fields: {fields_yaml}}}\n")
        with pytest.raises(ConfigError, match=message) as err:
            AdaptersConfig.load(path, Rules())
        assert "\n" not in str(err.value) and "salesforce_cdc" in str(err.value)
    path.write_text(f"salesforce_cdc: {{topic: s, schema_file: '{ACCOUNT_CHANGE_EVENT_SCHEMA}', "
                    "fields: {Name: name, BillingAddress.City: billing_city}}\n")
    assert AdaptersConfig.load(path, Rules()).salesforce_cdc.layout.nested[4][1] == "City"


def test_group_traits_map_by_dotted_path_and_only_scalars_are_taken():
    nested = SEG.model_copy(update={"group_traits": {"address.city": "city", "name": "name", "plan": "plan"}})

    def grp(**traits):
        return segment.map_message(group("g-9", "acct-1", **traits), nested, ORIGIN, KAFKA_TIME)

    change = grp(address={"city": "Lyon", "country": "FR"}, name="Acme")
    assert change.changes == [FieldChange(field="city", value="Lyon"), FieldChange(field="name", value="Acme")]
    assert grp(**{"address.city": "Nice"}).changes == [FieldChange(field="city", value="Nice")]  # a flat dotted key
    assert grp(address={"city": None}).changes == [FieldChange(field="city", value=None)]  # null clears
    # an object or a list is not a profile value: not taken
    assert grp(address={"city": {"name": "Lyon"}}, plan=["pro"]) == Skipped("no_mapped_traits")
    assert grp(address="12 rue de la Paix, Lyon") == Skipped("no_mapped_traits")
    long_name = "A" * 1500
    assert grp(name=long_name).changes == [FieldChange(field="name", value=long_name)]  # strings as they are
    for bad in (float("nan"), float("inf"), 10 ** 30):
        with pytest.raises(Rejected) as err:
            grp(name=bad)
        assert err.value.reason == "invalid_value"
    for traits in ([["name", "Acme"]], "name", 7):
        with pytest.raises(Rejected) as err:
            seg({"type": "group", "messageId": "g", "groupId": "acct-1", "traits": traits})
        assert err.value.reason == "malformed"


HOSTILE = [None, True, False, 0, -1, 2 ** 63, -(2 ** 63) - 1, 10 ** 30, 10 ** 400, -(10 ** 400), 1e308, -1e308,
           float("nan"), float("inf"), float("-inf"), 0.5, "", "x", "0x", "0xZZ", "0x" + "F" * 4000, "4-0x2",
           "999999-0x1", "-0x1", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2024-02-30", "NaN",
           "\x00", "A" * 10_000, [], [None], [1, "x"], [[[]]], ["0x10", {"a": 1}], {}, {"a": None},
           {"": {"": {}}}, {"ChangeEventHeader": {}}, {"0x10": [1]}]


def _hostile_documents(count: int, seed: int = 11):
    """Valid Segment and CDC documents with nodes swapped for hostile values, plus junk documents."""
    import random

    rng = random.Random(seed)
    seeds = [track("m", "acct-1", "Emails Delivered", {"count": 3}), group("g", "acct-1", name="Acme"),
             cdc("UPDATE", ["001A"], {"ROI_Percent__c": 1.0, "BillingAddress": {"City": "Lyon"}},
                 changed=["0x102000", "4-0x2"], nulled=["0x80"]),
             cdc("UPDATE", ["001A"], {"Contract_Start_Date__c": 1740787200000}, changed=["Contract_Start_Date__c"]),
             cdc("CREATE", ["001A", "001B"], {"Name": "N", "Uses_Automation__c": True}, envelope="cometd"),
             cdc("GAP_UPDATE", ["001A"])]
    yield from HOSTILE

    def nodes(doc, path=()):
        yield path
        children = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
        for key, child in children:
            yield from nodes(child, path + (key,))

    for _ in range(count):
        doc = copy.deepcopy(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            paths = list(nodes(doc))
            deep = [p for p in paths if len(p) >= 2]  # mostly values inside the envelope, sometimes the envelope
            path = rng.choice(deep if deep and rng.random() < 0.8 else paths)
            if not path:
                doc = rng.choice(HOSTILE)
                break
            parent = doc
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = copy.deepcopy(rng.choice(HOSTILE))
        yield doc


def test_hostile_json_only_ever_maps_to_records_skips_or_rejections():
    """Wrong types everywhere, huge and non-finite numbers, nested junk, non-objects: a mapper answers with
    records (each one publishable as Avro), a Skipped, a Rejected — or pydantic's ValidationError from
    building a record, which the agent dead-letters as `invalid` — and never with any other exception."""
    from pydantic import ValidationError

    mappers = {"segment": seg, "salesforce_cdc": sf, "salesforce_cdc+schema": sfs}
    outcomes = {name: {} for name in mappers}
    for doc in _hostile_documents(3000):
        for name, mapper in mappers.items():
            try:
                result = mapper(doc)
            except Rejected as exc:
                kind = f"rejected:{exc.reason}"
            except ValidationError:
                kind = "invalid"
            else:
                if isinstance(result, Skipped):
                    kind = f"skipped:{result.reason}"
                else:
                    records = result if isinstance(result, list) else [result]
                    assert records and all(isinstance(r, (TelemetryEvent, CrmChange, ResyncNeeded)) for r in records)
                    for record in records:
                        record.to_avro()  # publishable: no value the Avro schema cannot hold
                    kind = type(records[0]).__name__
            outcomes[name][kind] = outcomes[name].get(kind, 0) + 1
    # the documents reach every branch: records, skips and rejections for each adapter
    for kinds in outcomes.values():
        assert any(k.startswith("rejected:") for k in kinds) and any(k.startswith("skipped:") for k in kinds), kinds
        assert set(kinds) & {"TelemetryEvent", "CrmChange", "ResyncNeeded"}, kinds
