"""Hostile data is normal data: CRM text and producer values that crashed stages now go through.

Each value here once crashed or stalled a stage: an account name with CR/LF or of 2,000
characters, a blank contact name, `open_escalations: "many"` (the drafter, for good), a 1 MB
account name (the whole worker, on the changelog write), `value: 1e308` (every tier at once).
"""
from datetime import UTC, datetime, timedelta

from milestone_stream.dev.kafka_local import free_port
from milestone_stream.kafka_io import producer, read_topic, wait_for
from milestone_stream.schemas.records import ApprovalRequest, Contact, CrmChange, FieldChange, TelemetryEvent
from milestone_stream.topics import ensure_topics

from support.helpers import Worker, dead_letters, milestones, publish

NOW = datetime.now(UTC).replace(microsecond=0)
CSM = {"csm_email": "sam@vendor.example", "csm_name": "Sam Rivera"}


def change(account: str, i: int, contacts=None, **fields) -> CrmChange:
    return CrmChange(change_id=f"{account}-{i}", account_id=account, source="salesforce",
                     occurred_at=NOW - timedelta(minutes=10) + timedelta(seconds=i),
                     changes=[FieldChange(field=k, value=v) for k, v in fields.items()], contacts=contacts)


def ev(account: str, i: int, value: float) -> TelemetryEvent:
    return TelemetryEvent(event_id=f"{account}-{i}", account_id=account, metric="emails_sent", value=value,
                          occurred_at=NOW - timedelta(minutes=5) + timedelta(seconds=i), source="platform.mailer")


async def test_hostile_crm_text_and_values_are_drafted_bounded_or_dead_lettered(kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    port = free_port()
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, MILESTONES_WEB_PORT=str(port),
                    MILESTONES_GATHER_SECONDS="0.2", MILESTONES_DRAFTER_INTERVAL="0.2").start()
    blank = Contact(name="  ", email="ceo@crlf.example", role="executive_sponsor")
    hostile = {
        "crlf": change("crlf", 1, [blank], name="Acme\r\nBcc: Evil Corp", open_escalations="many", **CSM),
        "long": change("long", 1, [Contact(name="Ann " + "B" * 250, email="ann@long.example", role="ceo")],
                       name="L" * 2000, health=17, roi_percent="lots", **CSM),
        "markup": change("markup", 1, [Contact(name="<script>x</script>", email="m@markup.example", role="vp")],
                         name="<b>Bold</b> & Co", industry="\u202eevil", **CSM),
    }
    # the worker's own clock field, from a CRM: it would mark anniversaries passed, or fire one early
    reserved = change("crlf", 2, anniversary_due=(NOW + timedelta(days=400)).date().isoformat())
    fixed = change("huge", 1, name="Huge Inc", **CSM)  # under the broker's limit, over the field bound:
    huge = fixed.model_copy(update={"changes": [FieldChange.model_construct(field="name", value="H" * 1_000_000),
                                                *fixed.changes[1:]]})
    try:
        async with producer(kafka_bootstrap, max_request_size=2_000_000) as prod:
            for c in [*hostile.values(), huge, reserved]:
                await prod.send_and_wait(topics.crm, key=c.account_id.encode(), value=c.to_avro())
        await publish(kafka_bootstrap, topics.crm, [change("huge", 2, name="Huge Inc", **CSM)])  # fixed in the CRM
        await publish(kafka_bootstrap, topics.telemetry,
                      [ev(a, 1, 600.0) for a in [*hostile, "huge"]] + [ev("big", 1, 1e308), ev("big", 2, 1e308)])

        async def all_requests():
            found = [ApprovalRequest.from_avro(r.value) for r in await read_topic(
                kafka_bootstrap, topics.approval_requests, idle_ms=300)]
            return found if {r.account_id for r in found} >= {*hostile, "huge"} else None
        requests = {r.account_id: r for r in await wait_for(all_requests, 90, interval=0.5, what="four requests")}
        for account, request in requests.items():
            assert "\r" not in request.subject and "\n" not in request.subject and len(request.subject) <= 70
            assert request.guard_verdict.startswith("passed"), (account, request.guard_verdict)
        assert requests["crlf"].body_text.splitlines()[0] in ("Dear Acme Bcc: Evil Corp team,", "Hello,")  # blank name
        assert any("many" in note for note in requests["crlf"].policy_notes)  # the CSM is told what was unreadable
        assert "<script>" not in requests["markup"].body_html and "&lt;b&gt;" in requests["markup"].body_html
        assert len(requests["long"].account_name) < 2000
        assert requests["huge"].account_name == "Huge Inc"

        async def letters():
            found = await dead_letters(kafka_bootstrap, topics.deadletter)
            return found if len(found) >= 4 else None
        found = await wait_for(letters, 60, interval=0.5, what="four dead letters")
        assert sorted((d.stage, d.reason) for d in found) == [
            ("crm", "invalid"), ("crm", "reserved_field"), ("usage", "value_out_of_range"),
            ("usage", "value_out_of_range")]
        [too_long] = [d for d in found if d.reason == "invalid"]
        assert "at most 2,000 characters" in too_long.error
        assert too_long.value is None and "too large to keep here" in too_long.error  # a replay reads its origin
        assert not [m for m in await milestones(kafka_bootstrap, topics.milestones) if m.account_id == "big"]
        assert worker.alive()
    finally:
        assert worker.stop() == 0
