"""A risk alert becomes one Gainsight CS Timeline activity (ExternalId: the episode's signal_id), on
the real broker with the real sender, a real SMTP server and a local Timeline API: the opening
delivered twice, one alert, one activity; hostile text is escaped in the notes."""
import asyncio
import html
from datetime import UTC, datetime, timedelta

from milestone_stream.kafka_io import read_topic, wait_for
from milestone_stream.schemas.records import Evidence, RiskSignal
from milestone_stream.sinks.gainsight.outcomes import ActivityOutcome
from milestone_stream.sinks.gainsight.service import ActivityStage
from milestone_stream.sinks.gainsight.timeline import TimelineClient
from milestone_stream.topics import ensure_topics

from support.gainsight_api import ACCESS_KEY, TimelineAPI
from support.helpers import publish
from support.stack import ApprovalStack, SmtpServer, until_outcome

CSM = "sam.rivera@vendor.example"
NOW = datetime.now(UTC)
TITLE = "Logins down 42% <script>alert(1)</script>\r\nBcc: x@evil.example"


def opening(sid: str) -> RiskSignal:
    return RiskSignal(signal_id=sid, account_id="acct-1", kind="usage_drop", level="orange", state="open",
                      title=TITLE, opened_at=NOW - timedelta(hours=1), at=NOW - timedelta(hours=1),
                      evidence=[Evidence(source="platform.logins", record="<b>daily logins</b> & more",
                                         occurred_at=NOW)],
                      playbook=["Call the champion within 48 hours"], csm_email=CSM, account_name="Account 1")


async def test_a_risk_alert_sent_becomes_one_timeline_activity_keyed_by_its_signal_id(kafka_bootstrap, topics):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    api = await TimelineAPI(users={CSM}, companies={"Account 1": "1C00A"}).start()
    smtp = SmtpServer().start()
    stage = ActivityStage(kafka_bootstrap, topics, f"{topics.prefix}gainsight",
                          TimelineClient(api.url, ACCESS_KEY, timeout=5), retry_seconds=60, backoff=(0.2, 1.0))
    stop = asyncio.Event()
    task = asyncio.create_task(stage.run(stop))
    try:
        async with ApprovalStack(kafka_bootstrap, topics, smtp.port):
            await publish(kafka_bootstrap, topics.risks, [opening("sig-t"), opening("sig-t")])  # delivered twice
            await until_outcome(kafka_bootstrap, topics, "sig-t", "sent", purpose="risk_alert")

            async def recorded():
                found = [ActivityOutcome.from_avro(r.value)
                         for r in await read_topic(kafka_bootstrap, topics.activity_outcomes, idle_ms=300)]
                return [o for o in found if o.approval_id == "sig-t" and o.outcome == "sent"]
            [done] = await wait_for(recorded, 60, what="the alert's Timeline activity")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await api.stop()
        smtp.stop()
    assert done.external_id == "sig-t" and api.posts_for("sig-t") == 1 and len(api.activities) == 1
    [call] = api.requests
    record = call["body"]["records"][0]
    assert (record["ExternalId"], record["Author"], record["companyName"]) == ("sig-t", CSM, "Account 1")
    assert "\n" not in record["Subject"] and record["Subject"].startswith("Risk alert: Logins down 42%")
    assert "<script>" not in record["Notes"] and "<b>" not in record["Notes"]
    assert html.escape("platform.logins: <b>daily logins</b> & more") in record["Notes"]
    assert "Risk alert sent to the CSM sam.rivera@vendor.example (Message-ID &lt;risk.sig-t@" in record["Notes"]
    assert "Call the champion within 48 hours" in record["Notes"]
