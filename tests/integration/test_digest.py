"""The CSM's daily digest on the real broker, a real SMTP server and the injected clock: one email (and
one Slack message) per CSM per day, from the configured hour on, listing pending requests older than a
day and requests about to expire — never twice, across ticks and restarts; the next day, a new one."""
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from milestone_stream.clock import Clock
from milestone_stream.kafka_io import producer, wait_for
from milestone_stream.sinks.sender.digest import digest_id
from milestone_stream.topics import ensure_topics

from support.helpers import publish
from support.slack_api import TOKEN, SlackApi
from support.stack import DOMAIN, SECRET, ApprovalStack, SmtpServer, approval_request, decision, outcomes, until_outcome

T0 = datetime(2026, 11, 26, 8, 59, 58, tzinfo=UTC)  # two seconds before the digest hour
SAM, ANN = "sam.rivera@vendor.example", "ann@vendor.example"


@pytest.fixture
async def approval_topics(kafka_bootstrap, topics):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    return topics


def digests(smtp) -> list:
    return [m for m in smtp.mailbox.received if m["Message-ID"].startswith("<digest.")]


def body(message) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


async def ticks(stack, n: int) -> None:
    start = stack.sender.digest.ticks
    await wait_for(lambda: stack.sender.digest.ticks >= start + n, 30, interval=0.1, what=f"{n} digest checks")


async def test_one_digest_per_csm_per_day_from_the_hour_on(kafka_bootstrap, approval_topics):
    day = timedelta(days=1)
    waiting = approval_request(1, csm=SAM, account_name="Waiting Co", created_at=T0 - 2 * day,
                               expires_at=T0 + 5 * day)
    expiring = approval_request(2, csm=SAM, account_name="Expiring Co", created_at=T0 - 6 * day,
                                expires_at=T0 + timedelta(hours=12))
    fresh = approval_request(3, csm=SAM, account_name="Fresh Co", created_at=T0 - timedelta(hours=1),
                             expires_at=T0 + 7 * day)
    decided = approval_request(4, csm=SAM, account_name="Decided Co", created_at=T0 - 3 * day, expires_at=T0 + 4 * day)
    expired = approval_request(5, csm=SAM, account_name="Expired Co", created_at=T0 - 8 * day,
                               expires_at=T0 - timedelta(hours=1))
    hostile = approval_request(6, csm=ANN, account_name="Evil\r\nBcc: x@evil.example\r\n<b>Co</b>",
                               created_at=T0 - 2 * day, expires_at=T0 + 5 * day)
    quiet = approval_request(7, csm="eve@vendor.example", created_at=T0 - timedelta(hours=2), expires_at=T0 + 7 * day)
    await publish(kafka_bootstrap, approval_topics.approval_requests,
                  [waiting, expiring, fresh, decided, expired, hostile, quiet])
    async with producer(kafka_bootstrap) as prod:
        d = decision(decided, "dont_send")
        await prod.send_and_wait(approval_topics.approval_decisions, key=d.approval_id.encode(), value=d.to_avro())

    smtp = SmtpServer().start()
    slack = await SlackApi({"U0SAM": SAM, "U0ANN": ANN}).start()
    sam_today = digest_id(SAM, "2026-11-26")
    try:
        async with ApprovalStack(kafka_bootstrap, approval_topics, smtp.port, slack_url=slack.url, digest_hour=9,
                                 clock=Clock(T0 - timedelta(hours=1)).now) as stack:
            await ticks(stack, 3)  # before the hour: nothing
        assert digests(smtp) == [] and await outcomes(kafka_bootstrap, approval_topics, "csm_digest") == []
        async with ApprovalStack(kafka_bootstrap, approval_topics, smtp.port, slack_url=slack.url, digest_hour=9,
                                 clock=Clock(T0).now) as stack:
            await until_outcome(kafka_bootstrap, approval_topics, sam_today, "sent", purpose="csm_digest")
            await until_outcome(kafka_bootstrap, approval_topics, sam_today, "sent", purpose="csm_digest_slack")
            await until_outcome(kafka_bootstrap, approval_topics, digest_id(ANN, "2026-11-26"), "sent",
                                purpose="csm_digest")
            await ticks(stack, 3)  # more checks the same day: nothing more
        assert len(digests(smtp)) == 2
        async with ApprovalStack(kafka_bootstrap, approval_topics, smtp.port, slack_url=slack.url, digest_hour=9,
                                 clock=Clock(T0 + timedelta(seconds=30)).now) as stack:
            await ticks(stack, 3)  # a restarted sender finds today's digests in the outcomes
        assert len(digests(smtp)) == 2
        async with ApprovalStack(kafka_bootstrap, approval_topics, smtp.port, slack_url=slack.url, digest_hour=9,
                                 clock=Clock(T0 + day + timedelta(seconds=3)).now):
            await until_outcome(kafka_bootstrap, approval_topics, digest_id(SAM, "2026-11-27"), "sent",
                                purpose="csm_digest")
    finally:
        smtp.stop()
        await slack.stop()

    first = [o for o in await outcomes(kafka_bootstrap, approval_topics, "csm_digest") if o.approval_id == sam_today]
    assert [o.outcome for o in first] == ["attempting", "sent"]
    assert first[0].recorded_at >= datetime(2026, 11, 26, 9, tzinfo=UTC), "sent before the digest hour"

    sam, ann, sam_next = _by_recipient(digests(smtp))
    assert sam["Message-ID"] == f"<digest.{sam_today}@{DOMAIN}>"
    assert sam["Subject"] == "Your approvals digest for 2026-11-26: 2 waiting"
    text = body(sam)
    waiting_part, expiring_part = text.split("Expiring within a day (1):")
    assert "Waiting for you for more than a day (1):" in waiting_part and "Waiting Co" in waiting_part
    assert "Expiring Co" in expiring_part
    for absent in ("Fresh Co", "Decided Co", "Expired Co"):
        assert absent not in text
    assert "Open your approvals: http://127.0.0.1:" in text and "/s/" in text

    assert "Bcc" not in ann and ann["To"] == ANN
    assert "- Evil Bcc: x@evil.example <b>Co</b>: " in body(ann)  # one line, shown as text

    assert sam_next["Subject"] == "Your approvals digest for 2026-11-27: 2 waiting"
    assert "Expiring Co" not in body(sam_next) and "Fresh Co" in body(sam_next)  # expired; a day old now

    [posted] = [p for p in slack.posted() if "need you" in p["text"] and p["channel"] == "D0SAM"
                and "2026-11-26" in p["text"]]
    assert "Waiting Co" in posted["blocks"][1]["text"]["text"]


def _by_recipient(messages) -> tuple:
    """(Sam's first digest, Ann's, Sam's next day's)."""
    sams = sorted((m for m in messages if m["To"] == SAM), key=lambda m: m["Subject"])
    [ann] = [m for m in messages if m["To"] == ANN and "2026-11-26" in m["Subject"]]
    assert len(sams) == 2, [m["Subject"] for m in sams]
    return sams[0], ann, sams[1]


async def test_the_sender_process_posts_to_slack_and_sends_the_digest_as_configured(kafka_bootstrap, approval_topics,
                                                                                    tmp_path):
    """`milestones sender` configured only by the environment: MILESTONES_NOW, the digest hour and Slack."""
    waiting = approval_request(11, csm=SAM, account_name="Waiting Co", created_at=T0 - timedelta(days=2),
                               expires_at=T0 + timedelta(days=5))
    await publish(kafka_bootstrap, approval_topics.approval_requests, [waiting])
    smtp = SmtpServer().start()
    slack = await SlackApi({"U0SAM": SAM}).start()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "MILESTONES_TOPIC_PREFIX": approval_topics.prefix,
           "MILESTONES_APP_ID": f"{approval_topics.prefix}app", "MILESTONES_SECRET": SECRET,
           "MILESTONES_SMTP_PORT": str(smtp.port), "MILESTONES_MESSAGE_ID_DOMAIN": DOMAIN,
           "MILESTONES_NOW": "2026-11-26T09:30:00Z", "MILESTONES_DIGEST_HOUR": "9",
           "MILESTONES_DIGEST_INTERVAL": "0.5", "MILESTONES_SLACK_BOT_TOKEN": TOKEN,
           "MILESTONES_SLACK_API_URL": slack.url}
    sender = subprocess.Popen([sys.executable, "-m", "milestone_stream.cli", "sender"], env=env,
                              stdout=open(tmp_path / "sender.log", "ab"), stderr=subprocess.STDOUT)
    try:
        await until_outcome(kafka_bootstrap, approval_topics, waiting.approval_id, "sent", purpose="csm_slack")
        await until_outcome(kafka_bootstrap, approval_topics, digest_id(SAM, "2026-11-26"), "sent",
                            purpose="csm_digest")
        await until_outcome(kafka_bootstrap, approval_topics, digest_id(SAM, "2026-11-26"), "sent",
                            purpose="csm_digest_slack")
    finally:
        sender.send_signal(signal.SIGTERM)
        assert sender.wait(30) == 0, (tmp_path / "sender.log").read_text()[-2000:]
        smtp.stop()
        await slack.stop()
    [digest] = digests(smtp)
    assert digest["Subject"] == "Your approvals digest for 2026-11-26: 1 waiting" and "Waiting Co" in body(digest)
    assert [p["channel"] for p in slack.posted()] == ["D0SAM", "D0SAM"]  # the request, then the digest
