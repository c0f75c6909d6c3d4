"""The Avro contracts and single-object encoding (pure logic, no broker)."""
import io
import typing
from datetime import UTC, datetime

import pytest
from fastavro import parse_schema, schemaless_writer

from milestone_stream import schemas
from milestone_stream.schemas.codec import (
    MARKER,
    CorruptBody,
    UnknownFingerprint,
    WrongMarker,
    codec,
    schema_fingerprint,
)
from milestone_stream.schemas.records import (
    RECORD_TYPES,
    ApprovalDecision,
    ApprovalRequest,
    EmailOutcome,
    TelemetryEvent,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def event(**kw):
    base = dict(event_id="e1", account_id="acme", metric="emails_sent", value=12.0, occurred_at=NOW,
                source="platform.mailer", attributes={"campaign": "q4"})
    return TelemetryEvent(**{**base, **kw})


def test_round_trip_keeps_every_field():
    e = event()
    data = e.to_avro()
    assert data[:2] == MARKER
    assert TelemetryEvent.from_avro(data) == e


def test_fingerprint_is_crc64_avro_little_endian():
    # Avro spec test vector: CRC-64-AVRO of the schema "null" is 0x63dd24e7cc258f8a.
    assert schema_fingerprint(parse_schema("null")) == (0x63DD24E7CC258F8A).to_bytes(8, "little")


def test_message_written_with_v1_is_read_by_v2_with_defaults():
    v1 = next(s for s in schemas.history() if s["name"] == "TelemetryEvent")
    parsed = parse_schema(v1, named_schemas={})
    out = io.BytesIO()
    out.write(MARKER + schema_fingerprint(parsed))
    schemaless_writer(out, parsed, {"event_id": "old", "account_id": "acme", "metric": "emails_sent",
                                    "value": 5.0, "occurred_at": NOW, "source": "legacy"})
    decoded = TelemetryEvent.from_avro(out.getvalue())
    assert decoded.event_id == "old" and decoded.attributes == {}
    assert schema_fingerprint(parsed) != codec("telemetry_event").fingerprint



def test_a_decision_written_before_csm_name_reads_without_it():
    v2 = next(s for s in schemas.history() if s["name"] == "ApprovalDecision" and "recipients" in str(s)
              and "csm_name" not in str(s))
    parsed = parse_schema(v2, named_schemas={})
    out = io.BytesIO()
    out.write(MARKER + schema_fingerprint(parsed))
    schemaless_writer(out, parsed, {"approval_id": "a1", "decision": "send", "csm_email": "sam@vendor.example",
                                    "decided_at": NOW, "account_id": "acme", "recipients": []})
    decoded = ApprovalDecision.from_avro(out.getvalue())
    assert decoded.approval_id == "a1" and decoded.csm_name is None

def test_a_request_written_before_milestone_titles_reads_without_them():
    v2 = next(s for s in schemas.history() if s["name"] == "ApprovalRequest" and "csm_name" in str(s))
    parsed = parse_schema(v2, named_schemas={})
    out = io.BytesIO()
    out.write(MARKER + schema_fingerprint(parsed))
    cited = {"figure": "milestone: 10,000 emails sent", "source": "platform.mailer",
             "record": "event e-1 (milestone abc)", "as_of": NOW}
    schemaless_writer(out, parsed, {"approval_id": "a1", "milestone_ids": ["m1"], "account_id": "acme",
                                    "account_name": "Acme", "csm_email": "sam@vendor.example", "recipients": [],
                                    "subject": "Congratulations", "body_text": "Dear Jane",
                                    "body_html": "<p>Dear Jane</p>",
                                    "citations": [cited], "drafted_by": "template", "guard_verdict": "passed",
                                    "policy_notes": [], "created_at": NOW, "expires_at": NOW, "csm_name": "Sam"})
    decoded = ApprovalRequest.from_avro(out.getvalue())
    assert decoded.approval_id == "a1" and decoded.csm_name == "Sam"
    assert decoded.milestone_titles == [] and decoded.milestone_sources == []
    assert schema_fingerprint(parsed) != codec("approval_request").fingerprint


def test_wrong_marker_is_a_typed_error():
    data = bytearray(event().to_avro())
    data[0] = 0x01  # (00 is the Confluent wire format's magic byte: tests/unit/test_confluent_wire.py)
    with pytest.raises(WrongMarker, match="marker"):
        TelemetryEvent.from_avro(bytes(data))


def test_unknown_fingerprint_is_a_typed_error():
    data = event().to_avro()
    with pytest.raises(UnknownFingerprint):
        TelemetryEvent.from_avro(MARKER + b"\x00" * 8 + data[10:])


def test_another_topics_schema_is_an_unknown_fingerprint():
    with pytest.raises(UnknownFingerprint):
        codec("crm_change").decode(event().to_avro())


@pytest.mark.parametrize("cut", [0, 5, 10, 14, -1])
def test_truncated_message_is_a_typed_error(cut):
    data = event().to_avro()
    with pytest.raises(CorruptBody):
        TelemetryEvent.from_avro(data[:cut] if cut >= 0 else data[:-1])


def test_trailing_garbage_is_a_typed_error():
    with pytest.raises(CorruptBody, match="trailing"):
        TelemetryEvent.from_avro(event().to_avro() + b"\x00")


@pytest.mark.parametrize("name", schemas.SCHEMA_NAMES)
def test_every_schema_documents_every_field_and_matches_its_model(name):
    raw = schemas.load(name)
    assert raw.get("doc"), f"{name} has no doc"

    def walk(record):
        for f in record["fields"]:
            assert f.get("doc"), f"{name}.{f['name']} has no doc"
            t = f["type"]
            items = t.get("items") if isinstance(t, dict) else None
            if isinstance(items, dict) and items.get("type") == "record":
                walk(items)
    walk(raw)
    model = RECORD_TYPES[name]
    assert [f["name"] for f in raw["fields"]] == list(model.model_fields)


def test_invalid_value_is_rejected_by_the_model():
    with pytest.raises(ValueError, match="finite number"):
        event(value=-1)


def test_terminal_outcomes_are_outcomes_of_the_contract():
    outcomes = set(typing.get_args(EmailOutcome.model_fields["outcome"].annotation))
    assert EmailOutcome.TERMINAL < outcomes and not {"attempting", "retrying"} & EmailOutcome.TERMINAL


def test_a_decision_written_before_follow_ups_reads_as_this_step_only():
    v3 = next(s for s in schemas.history() if s["name"] == "ApprovalDecision" and "csm_name" in str(s))
    parsed = parse_schema(v3, named_schemas={})
    out = io.BytesIO()
    out.write(MARKER + schema_fingerprint(parsed))
    schemaless_writer(out, parsed, {"approval_id": "a1", "decision": "send", "csm_email": "sam@vendor.example",
                                    "decided_at": NOW, "account_id": "acme", "recipients": [], "csm_name": "Sam"})
    decoded = ApprovalDecision.from_avro(out.getvalue())
    assert decoded.csm_name == "Sam" and decoded.follow_ups is False
