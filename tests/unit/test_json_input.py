"""Telemetry and CRM changes as JSON documents: detection, the contract, hostile documents, and the
shipped JSON Schema files (pure logic, no broker)."""
import json
import random
from datetime import UTC, datetime

import jsonschema
import pytest

from milestone_stream.schemas import json_input, json_schema
from milestone_stream.schemas.codec import CodecError
from milestone_stream.schemas.json_input import (
    DocumentTooLarge,
    InvalidDocument,
    MalformedJson,
    accepts_json,
    decode,
    is_json,
)
from milestone_stream.schemas.records import Contact, CrmChange, FieldChange, Milestone, TelemetryEvent

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def event_doc(**kw) -> dict:
    return {"event_id": "e1", "account_id": "acme", "metric": "emails_sent", "value": 12,
            "occurred_at": "2026-11-24T12:00:00Z", "source": "platform.mailer", "attributes": {"campaign": "q4"},
            **kw}


def change_doc(**kw) -> dict:
    return {"change_id": "c1", "account_id": "acme", "occurred_at": "2026-11-24T13:00:00+01:00",
            "source": "hubspot",
            "changes": [{"field": "name", "value": "Acme"}, {"field": "roi_percent", "value": 152},
                        {"field": "adoption.sso", "value": True}, {"field": "plan", "value": None}],
            "contacts": [{"name": "Jane Doe", "email": "jane@acme.example", "role": "executive_sponsor"}], **kw}


def as_bytes(doc: dict | str) -> bytes:
    return (doc if isinstance(doc, str) else json.dumps(doc)).encode()


def test_the_first_byte_tells_json_from_avro():
    avro = TelemetryEvent(**{**event_doc(), "occurred_at": NOW}).to_avro()
    assert is_json(b'{"a": 1}') and is_json(b' \r\n\t{"a": 1}')
    assert not is_json(avro) and not is_json(b"") and not is_json(b"[1]") and not is_json(b"\x00\x00\x00\x00\x01")
    assert not is_json(b"\xef\xbb\xbf{}")  # a byte-order mark is not JSON whitespace (RFC 8259 §8.1)
    # only the product's inputs may come as JSON: a milestone is the worker's own, always Avro
    assert accepts_json(TelemetryEvent, b"{}") and accepts_json(CrmChange, b"{}")
    assert not accepts_json(Milestone, b"{}")


def test_a_json_event_reads_exactly_as_the_same_event_sent_as_avro():
    from_json = decode(TelemetryEvent, as_bytes(event_doc(occurred_at="2026-11-24T14:00:00.123456+02:00")))
    avro = TelemetryEvent(**{**event_doc(), "value": 12.0, "occurred_at": NOW.replace(microsecond=123000)})
    assert from_json == TelemetryEvent.from_avro(avro.to_avro())
    assert from_json.occurred_at.utcoffset().total_seconds() == 0  # in UTC, to the millisecond like Avro


def test_a_json_crm_change_keeps_every_value_type():
    change = decode(CrmChange, as_bytes(change_doc()))
    assert change.changes == [FieldChange(field="name", value="Acme"), FieldChange(field="roi_percent", value=152),
                              FieldChange(field="adoption.sso", value=True), FieldChange(field="plan", value=None)]
    assert change.contacts == [Contact(name="Jane Doe", email="jane@acme.example", role="executive_sponsor")]
    assert change.occurred_at == datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("document", "error", "names"), [
    ('{"event_id": "e1", "value": NaN}', MalformedJson, "NaN"),
    ('{"event_id": "e1", "value": Infinity}', MalformedJson, "Infinity"),
    ('{"event_id": "e1", "value": -Infinity}', MalformedJson, "-Infinity"),
    ('{"event_id": "e1", "value": 1e999}', MalformedJson, "1e999"),
    ('{"event_id": "e1", "event_id": "e2"}', MalformedJson, "duplicate key 'event_id'"),
    ('{"attributes": {"a": "1", "a": "2"}}', MalformedJson, "duplicate key 'a'"),
    ('{"event_id": "e1",', MalformedJson, "not a JSON document"),
    ('{"v": ' + "9" * 5000 + "}", MalformedJson, "not a JSON document"),
    ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", MalformedJson, "nested too deeply"),
    (json.dumps(event_doc(value="12")), InvalidDocument, "value: Input should be a valid number"),
    (json.dumps(event_doc(value=True)), InvalidDocument, "value: Input should be a valid number"),
    (json.dumps(event_doc(value=-1)), InvalidDocument, "value: Value error, value must be a finite number >= 0"),
    (json.dumps(event_doc(account_id="")), InvalidDocument, "account_id: String should have at least 1 character"),
    (json.dumps(event_doc(account_id=7)), InvalidDocument, "account_id: Input should be a valid string"),
    (json.dumps(event_doc(attributes={"n": 5})), InvalidDocument, "attributes.n: Input should be a valid string"),
    (json.dumps(event_doc(occurred_at="yesterday")), InvalidDocument, "occurred_at: Input should be a valid datetime"),
    (json.dumps(event_doc(occurred_at=1764000000)), InvalidDocument, "occurred_at: Input should be a valid datetime"),
    (json.dumps(event_doc(occurred_at="2026-11-24T12:00:00")), InvalidDocument, "occurred_at: a time needs its UTC"),
    (json.dumps(event_doc(occurred_at="0001-01-01T00:00:00+01:00")), InvalidDocument, "does not fit the Avro"),
    (json.dumps(event_doc(origin={"topic": "t", "partition": 2**40, "offset": 0})), InvalidDocument,
     "does not fit the Avro"),
    (json.dumps(event_doc(surprise=1)), InvalidDocument, "surprise: Extra inputs are not permitted"),
    (json.dumps({k: v for k, v in event_doc().items() if k != "metric"}), InvalidDocument, "metric: Field required"),
    ('{"event_id": "\\ud800"}', InvalidDocument, "Invalid JSON"),  # a lone surrogate: no Python str survives it
    (json.dumps(change_doc(changes=[{"field": "n", "value": 1e300}])), InvalidDocument, "changes.0.value"),
    (json.dumps(change_doc(changes=[{"field": "n", "value": [1]}])), InvalidDocument, "changes.0.value"),
])
def test_a_bad_document_is_refused_with_its_reason_and_field(document, error, names):
    record_type = CrmChange if '"change_id"' in document else TelemetryEvent
    with pytest.raises(error) as caught:
        decode(record_type, document.encode())
    assert names in str(caught.value)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 1_100


def test_bad_utf8_and_oversized_documents_are_refused_before_parsing():
    with pytest.raises(MalformedJson):
        decode(TelemetryEvent, b'{"event_id": "\xff\xfe"}')
    huge = as_bytes(event_doc(source="x" * json_input.MAX_DOCUMENT_BYTES))
    with pytest.raises(DocumentTooLarge, match="over the 1,000,000 read") as caught:
        decode(TelemetryEvent, huge)
    assert caught.value.reason == "too_large"


def test_an_error_message_stays_short_however_many_fields_fail():
    many = change_doc(changes=[{"field": "", "value": "x" * 3000, "k" * 100_000: 1}]
                      + [{"field": "", "value": "x" * 3000}] * 255)
    with pytest.raises(InvalidDocument) as caught:
        decode(CrmChange, as_bytes(many))
    message = str(caught.value)
    assert message.startswith("crm_change: changes.0.") and "changes.1.value: Value error, text values" in message
    assert "more)" in message and len(message) <= 1_100 and "k" * 100 not in message


def test_hostile_documents_are_refused_never_raised_past_the_codec():
    """Mutations of valid documents: each decodes to a valid record or raises a CodecError (a dead
    letter with its reason), never anything else."""
    rng = random.Random(16)
    hostile_values = [None, True, -1, 0, 1e308, -1e308, 2**64, 2**1000, "", "x" * 5000, "\r\n<script>", "\u2028",
                      [], {}, [[[[]]]], {"a": {"b": {}}}, "2026-13-45T99:00:00Z", "NaN", 1.5]
    outcomes = {"ok": 0, "refused": 0}
    for i in range(3000):
        doc = event_doc() if i % 2 else change_doc()
        record_type = TelemetryEvent if i % 2 else CrmChange
        for _ in range(rng.randint(1, 3)):
            key = rng.choice([*doc.keys(), "origin", "extra"])
            doc[key] = rng.choice(hostile_values)
        text = json.dumps(doc)
        if rng.random() < 0.2:  # and some byte-level damage
            cut = rng.randrange(len(text))
            text = text[:cut] + rng.choice(["", "NaN", "Infinity", '"', "{", "\\", "\x00"]) + text[cut + 1:]
        try:
            record = decode(record_type, text.encode())
        except CodecError as exc:
            assert exc.reason in ("malformed_json", "invalid", "too_large")
            outcomes["refused"] += 1
        else:
            assert isinstance(record, record_type)
            outcomes["ok"] += 1
    assert outcomes["refused"] > 2000 and outcomes["ok"] > 50, outcomes


# --- the shipped JSON Schema files -------------------------------------------------------------------------

@pytest.mark.parametrize("record_type", json_input.JSON_RECORDS, ids=lambda t: t.schema_name)
def test_the_shipped_json_schema_is_what_the_models_generate(record_type):
    shipped = (json_schema.folder() / json_schema.file_name(record_type)).read_text(encoding="utf-8")
    assert shipped == json_schema.render(record_type), (
        f"schemas/json/{json_schema.file_name(record_type)} is out of date: run `milestones json-schema`")


def test_the_shipped_schemas_accept_what_the_worker_accepts_and_refuse_wrong_types():
    checks = [(TelemetryEvent, event_doc()), (CrmChange, change_doc())]
    for record_type, doc in checks:
        schema = json.loads((json_schema.folder() / json_schema.file_name(record_type)).read_text())
        validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
        validator.validate(doc)
        decode(record_type, as_bytes(doc))
        # (not a malformed time: jsonschema checks the date-time format only with rfc3339-validator installed)
        for broken in ({**doc, "account_id": 5}, {**doc, "extra": 1}, {**doc, "occurred_at": 1764000000},
                       {k: v for k, v in doc.items() if k != "account_id"}):
            assert list(validator.iter_errors(broken)), broken
            with pytest.raises(InvalidDocument):
                decode(record_type, as_bytes(broken))


def test_json_schema_writes_the_files_it_checks(tmp_path):
    written = json_schema.write(tmp_path)
    assert sorted(p.name for p in written) == ["crm_change.schema.json", "telemetry_event.schema.json"]
    for path in written:
        assert json.loads(path.read_text())["$schema"] == json_schema.DIALECT


def test_a_byte_order_mark_or_an_array_is_read_as_json_and_refused_saying_what_is_wrong():
    doc = as_bytes(event_doc())
    # not Avro with a wrong marker: what a JSON producer got wrong, named in the dead letter
    assert accepts_json(TelemetryEvent, b"\xef\xbb\xbf" + doc) and accepts_json(TelemetryEvent, b" [" + doc + b"]")
    assert not accepts_json(TelemetryEvent, TelemetryEvent(**{**event_doc(), "occurred_at": NOW}).to_avro())
    with pytest.raises(MalformedJson, match="byte-order mark"):
        decode(TelemetryEvent, b"\xef\xbb\xbf" + doc)
    with pytest.raises(InvalidDocument, match="a JSON array: send one document"):
        decode(TelemetryEvent, b"[" + doc + b"]")


def test_the_document_bound_is_the_one_the_worker_is_given():
    padded = as_bytes(event_doc())[:-1] + b" " * 1_100_000 + b"}"  # valid, over the default bound
    with pytest.raises(DocumentTooLarge):
        decode(TelemetryEvent, padded)
    assert decode(TelemetryEvent, padded, max_bytes=2_000_000).event_id == event_doc()["event_id"]
