"""The Timeline client's pure parts and the stage's pace, without a broker or a server."""
import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from milestone_stream import schemas
from milestone_stream.schemas.records import Contact
from milestone_stream.settings import ConfigError
from milestone_stream.sinks.gainsight.config import GainsightSettings
from milestone_stream.sinks.gainsight.outcomes import ActivityOutcome
from milestone_stream.sinks.gainsight.pace import Pace
from milestone_stream.sinks.gainsight.target import NotRecorded, SentEmail
from milestone_stream.sinks.gainsight.timeline import NOTES_MAX, TimelineClient, _outcome, notes, retry_after, subject

SENT = datetime(2026, 6, 1, 9, 30, 15, 123456, tzinfo=UTC)


def email(**kw) -> SentEmail:
    fields = dict(approval_id="ap-1", account_id="001A", account_name="Acme Corp", csm_email="sam@vendor.example",
                  csm_name="Sam Rivera", subject="Congratulations, Acme", body_text="Dear Jane,\n\nWell done.",
                  sent_at=SENT, message_id="<ap-1@milestones.test>",
                  recipients=[Contact(name="Jane Doe", email="jane@acme.example", role="executive_sponsor")])
    return SentEmail(**{**fields, **kw})


def test_the_request_body_has_the_documented_fields_and_lookups():
    body = TimelineClient("https://acme.gainsightcloud.com/", "k").body(email())
    assert body["records"] == [{
        "ContextName": "Company", "TypeName": "Email", "ExternalId": "ap-1", "Subject": "Congratulations, Acme",
        "Notes": notes(email()), "ActivityDate": "2026-06-01T09:30:15.123+00:00", "Author": "sam@vendor.example",
        "companyName": "Acme Corp"}]
    assert body["lookups"] == {
        "AuthorId": {"fields": {"Author": "Email"}, "lookupField": "Gsid", "objectName": "GsUser",
                     "multiMatchOption": "FIRSTMATCH", "onNoMatch": "ERROR"},
        "GsCompanyId": {"fields": {"companyName": "Name"}, "lookupField": "Gsid", "objectName": "Company",
                        "multiMatchOption": "FIRSTMATCH", "onNoMatch": "ERROR"}}
    by_id = TimelineClient("https://x.example", "k", company_field="SfdcAccountId").body(email())
    assert by_id["records"][0]["companyKey"] == "001A"
    assert by_id["lookups"]["GsCompanyId"]["fields"] == {"companyKey": "SfdcAccountId"}
    assert TimelineClient("https://x.example/", "k").url == "https://x.example/v1/ant/es/activity"


def test_subject_is_one_bounded_line_and_notes_are_escaped_and_bounded():
    assert subject("Hi\r\nBcc: x\u2028y\x00z\t ") == "Hi Bcc: x y z"
    assert subject("") == "(no subject)" and len(subject("a" * 1000)) == 255
    rich = notes(email(body_text="<script>x</script>\n\nA & B \"quoted\"", csm_name=None))
    assert "<script>" not in rich and "&lt;script&gt;x&lt;/script&gt;" in rich
    assert "A &amp; B &quot;quoted&quot;" in rich
    assert "by sam@vendor.example" in rich and rich.startswith("<p>Milestone congratulations sent to Jane Doe")
    huge = notes(email(body_text="\n\n".join(["<" * 1000] * 500)))
    assert len(huge) <= NOTES_MAX and huge.endswith("<p>[…]</p>")


def test_retry_after_seconds_or_http_date_bounded():
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert retry_after("7") == 7.0 and retry_after(" 0.5 ") == 0.5 and retry_after("-3") == 0.0
    assert retry_after("999999") == 3600.0 and retry_after("nan") is None and retry_after(None) is None
    assert retry_after("Mon, 01 Jun 2026 00:00:30 GMT", now) == 30.0
    assert retry_after("soon") is None


def test_answers_are_classified_as_the_sender_does():
    assert _outcome(200, json.dumps({"result": True, "data": {"records": [{"Gsid": "1P"}]}, "requestId": "r1"}),
                    None).startswith("200 ")
    cases = [(429, None, False, 4.0, {"Retry-After": "4"}), (503, "", False, None, {}),
             (400, '{"result": false, "errorCode": "GS_X", "errorDesc": "no Company"}', True, None, {}),
             (401, "", True, None, {}), (404, "<html>", True, None, {}),
             (200, '{"result": false, "errorCode": "GS_Y", "errorDesc": "lookup failed"}', True, None, {})]
    for status, text, permanent, after, headers in cases:
        with pytest.raises(NotRecorded) as err:
            _outcome(status, text or "", headers.get("Retry-After"))
        assert (err.value.permanent, err.value.retry_after) == (permanent, after), status
    with pytest.raises(NotRecorded, match="GS_X no Company"):
        _outcome(400, '{"result": false, "errorCode": "GS_X", "errorDesc": "no Company"}', None)


def test_the_pace_spaces_calls_and_holds_for_retry_after():
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    pace = Pace(200, clock=lambda: now[0], sleep=sleep)

    async def calls(n):
        starts = []
        for _ in range(n):
            await pace.wait()
            starts.append(now[0])
        return starts
    starts = asyncio.run(calls(3))
    assert starts == pytest.approx([0.0, 0.3, 0.6])
    pace.hold(5)  # a 429 with Retry-After: 5 at t=0.6
    assert asyncio.run(calls(1)) == pytest.approx([5.6])
    pace.hold(0.01)  # a shorter hold never shortens the pace
    assert asyncio.run(calls(1)) == pytest.approx([5.9])
    with pytest.raises(ValueError):
        Pace(0)


def test_settings_from_the_environment():
    assert not GainsightSettings.from_env({}).enabled
    on = GainsightSettings.from_env({"MILESTONES_GAINSIGHT_URL": "https://acme.gainsightcloud.com",
                                     "MILESTONES_GAINSIGHT_ACCESS_KEY": "secret-key"})
    assert on.enabled and on.calls_per_minute == 200 and on.activity_type == "Email" and on.company_field == "Name"
    with pytest.raises(ConfigError, match="ACCESS_KEY must be set"):
        GainsightSettings.from_env({"MILESTONES_GAINSIGHT_URL": "https://acme.gainsightcloud.com"})
    for bad in ({"MILESTONES_GAINSIGHT_URL": "acme.gainsightcloud.com"}, {"MILESTONES_GAINSIGHT_RATE": "500"},
                {"MILESTONES_GAINSIGHT_RATE": "0"}, {"MILESTONES_GAINSIGHT_COMPANY_FIELD": "Name; DROP"}):
        with pytest.raises(ConfigError):
            GainsightSettings.from_env({"MILESTONES_GAINSIGHT_ACCESS_KEY": "k", **bad})


def test_the_outcome_schema_documents_every_field_and_matches_its_model():
    raw = schemas.load("activity_outcome")
    assert raw["doc"] and all(f.get("doc") for f in raw["fields"])
    assert [f["name"] for f in raw["fields"]] == list(ActivityOutcome.model_fields)
    o = ActivityOutcome(approval_id="ap-1", target="gainsight_timeline", external_id="ap-1", outcome="retrying",
                        attempt=2, detail="429", recorded_at=SENT - timedelta(microseconds=SENT.microsecond % 1000))
    assert ActivityOutcome.from_avro(o.to_avro()) == o and not o.terminal
