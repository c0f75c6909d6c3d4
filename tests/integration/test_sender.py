"""The sender against the real broker and a real SMTP server: one email per approval, whatever happens."""
import os
import re
import signal
import subprocess
import sys

import pytest
from aiohttp import web

from milestone_stream.dev.kafka_local import free_port
from milestone_stream.kafka_io import producer, wait_for
from milestone_stream.schemas.records import Contact
from milestone_stream.topics import ensure_topics

from support.helpers import publish
from support.stack import (
    DOMAIN,
    SECRET,
    ApprovalStack,
    SmtpServer,
    approval_request,
    dead_letters,
    decision,
    outcomes,
    until_outcome,
)


async def publish_decisions(bootstrap, topics, *decisions):
    async with producer(bootstrap) as prod:
        for d in decisions:
            await prod.send_and_wait(topics.approval_decisions, key=d.approval_id.encode(), value=d.to_avro())


@pytest.fixture
async def approval_topics(kafka_bootstrap, topics):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    return topics


async def test_smtp_down_for_a_while_then_up_sends_once_and_loses_nothing(kafka_bootstrap, approval_topics):
    smtp = SmtpServer()  # its port is reserved but nothing listens yet
    req = approval_request(1)
    async with ApprovalStack(kafka_bootstrap, approval_topics, smtp.port):
        await publish_decisions(kafka_bootstrap, approval_topics, decision(req))
        await until_outcome(kafka_bootstrap, approval_topics, req.approval_id, "retrying")
        smtp.start()
        try:
            await until_outcome(kafka_bootstrap, approval_topics, req.approval_id, "sent")
        finally:
            smtp.stop()
    assert len(smtp.mailbox.customer_emails()) == 1
    trail = [o.outcome for o in await outcomes(kafka_bootstrap, approval_topics)]
    assert trail[0] == "attempting" and "retrying" in trail and trail[-1] == "sent" and trail.count("sent") == 1


async def test_the_email_has_the_right_headers_and_double_decisions_send_once(kafka_bootstrap, approval_topics):
    smtp = SmtpServer().start()
    sent, declined = approval_request(2), approval_request(3)
    try:
        async with ApprovalStack(kafka_bootstrap, approval_topics, smtp.port):
            await publish_decisions(kafka_bootstrap, approval_topics,
                                    decision(sent), decision(sent),                                  # a double tap
                                    decision(declined, "dont_send", reason="bad timing"), decision(declined))
            await until_outcome(kafka_bootstrap, approval_topics, sent.approval_id, "sent")
            await until_outcome(kafka_bootstrap, approval_topics, declined.approval_id, "not_sent")
    finally:
        smtp.stop()
    [message] = smtp.mailbox.customer_emails()
    assert message["Message-ID"] == f"<{sent.approval_id}@{DOMAIN}>"
    assert message["From"] == "Sam Rivera <sam.rivera@vendor.example>"
    assert message["To"] == "Jane Doe <jane@acme.example>"
    assert message["Subject"] == sent.subject
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == sent.body_text
    assert smtp.mailbox.envelopes[-1] == ("sam.rivera@vendor.example", ["jane@acme.example"])
    declined_trail = [o for o in await outcomes(kafka_bootstrap, approval_topics)
                      if o.approval_id == declined.approval_id]
    assert [o.outcome for o in declined_trail] == ["not_sent"] and declined_trail[0].detail == "bad timing"


async def test_permanent_rejection_and_header_injection_fail_visibly_and_are_dead_lettered(kafka_bootstrap,
                                                                                          approval_topics):
    smtp = SmtpServer().start()
    smtp.mailbox.reply = "550 5.7.1 rejected by policy"
    rejected, injected = approval_request(4), approval_request(5)
    try:
        async with ApprovalStack(kafka_bootstrap, approval_topics, smtp.port):
            await publish_decisions(kafka_bootstrap, approval_topics, decision(rejected),
                                    decision(injected, subject="Hello\r\nBcc: everyone@example.com"))
            await until_outcome(kafka_bootstrap, approval_topics, rejected.approval_id, "failed")
            [failed] = await until_outcome(kafka_bootstrap, approval_topics, injected.approval_id, "failed")
    finally:
        smtp.stop()
    assert "CR or LF" in failed.detail
    assert smtp.mailbox.received == []
    letters = {d.error.split()[1].rstrip(":"): d for d in await dead_letters(kafka_bootstrap, approval_topics)}
    assert letters[rejected.approval_id].reason == "delivery_failed" and "550" in letters[rejected.approval_id].error
    assert letters[injected.approval_id].reason == "invalid_email"
    assert letters[injected.approval_id].topic == approval_topics.approval_decisions


async def test_hostile_names_deliver_only_to_the_intended_addresses_and_a_bad_address_is_refused(kafka_bootstrap,
                                                                                                   approval_topics):
    smtp = SmtpServer().start()
    hostile, smuggled = approval_request(30), approval_request(31)
    recipients = [Contact(name="Björn <evil@attacker.example>, ", email="bjorn@acme.example", role="executive_sponsor"),
                  Contact(name="Sämi =?utf-8?q?x=3Cevil=40attacker.example=3E?=\r\nBcc: evil@attacker.example",
                          email="juergen@acme.example", role="executive_sponsor")]
    try:
        async with ApprovalStack(kafka_bootstrap, approval_topics, smtp.port):
            await publish_decisions(kafka_bootstrap, approval_topics,
                                    decision(hostile, csm_name="Sämi <phish@attacker.example>", recipients=recipients),
                                    decision(smuggled, recipients=[Contact(name="Jane", role="executive_sponsor",
                                             email="jane@acme.example, evil@attacker.example")]))
            await until_outcome(kafka_bootstrap, approval_topics, hostile.approval_id, "sent")
            [failed] = await until_outcome(kafka_bootstrap, approval_topics, smuggled.approval_id, "failed")
    finally:
        smtp.stop()
    assert smtp.mailbox.envelopes == [("sam.rivera@vendor.example", ["bjorn@acme.example", "juergen@acme.example"])]
    [message] = smtp.mailbox.customer_emails()
    [sender] = message["From"].addresses
    assert sender.addr_spec == "sam.rivera@vendor.example" and sender.display_name == "Sämi <phish@attacker.example>"
    assert [a.addr_spec for a in message["To"].addresses] == ["bjorn@acme.example", "juergen@acme.example"]
    assert message["Bcc"] is None and message["Reply-To"] is None
    assert "not a single plain email address" in failed.detail
    [letter] = await dead_letters(kafka_bootstrap, approval_topics)
    assert letter.reason == "invalid_email" and smuggled.approval_id in letter.error


async def test_sigkill_while_smtp_has_the_message_records_unknown_and_never_sends_twice(kafka_bootstrap,
                                                                                       approval_topics, tmp_path):
    smtp = SmtpServer().start()
    smtp.mailbox.release.clear()  # hold the DATA reply: the sender is killed while SMTP has the message
    req = approval_request(6)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "MILESTONES_TOPIC_PREFIX": approval_topics.prefix,
           "MILESTONES_APP_ID": f"{approval_topics.prefix}app", "MILESTONES_SECRET": SECRET,
           "MILESTONES_SMTP_PORT": str(smtp.port), "MILESTONES_MESSAGE_ID_DOMAIN": DOMAIN}
    log = open(tmp_path / "sender.log", "ab")

    def start_sender():
        return subprocess.Popen([sys.executable, "-m", "milestone_stream.cli", "sender"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)

    sender = start_sender()
    try:
        await publish_decisions(kafka_bootstrap, approval_topics, decision(req))
        await wait_for(smtp.mailbox.in_data.is_set, 60, what="the sender to hand the message to SMTP")
        sender.send_signal(signal.SIGKILL)  # the server has the message; the sender never hears back
        sender.wait(10)
        smtp.mailbox.release.set()
        sender = start_sender()
        await until_outcome(kafka_bootstrap, approval_topics, req.approval_id, "unknown")
    finally:
        smtp.mailbox.release.set()
        if sender.poll() is None:
            sender.send_signal(signal.SIGTERM)
            assert sender.wait(30) == 0, f"sender did not stop cleanly; log: {tmp_path / 'sender.log'}"
        smtp.stop()
    assert len(smtp.mailbox.customer_emails()) == 1, "the message was sent twice"
    trail = [o.outcome for o in await outcomes(kafka_bootstrap, approval_topics) if o.approval_id == req.approval_id]
    assert trail == ["attempting", "unknown"], trail


async def test_the_slack_compatible_webhook_gets_each_request_once_with_escaped_data(kafka_bootstrap, approval_topics):
    posts = []

    async def hook(request):
        posts.append((await request.json())["text"])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    smtp = SmtpServer().start()
    req = approval_request(20, account_name="R&D <Labs>")
    marker = approval_request(21, account_id=req.account_id)  # same key: processed after the duplicate
    try:
        async with ApprovalStack(kafka_bootstrap, approval_topics, smtp.port, webhook=f"http://127.0.0.1:{port}/hook"):
            await publish(kafka_bootstrap, approval_topics.approval_requests, [req, req, marker])
            await wait_for(lambda: len(posts) >= 2, 60, what="two webhook posts")
            await until_outcome(kafka_bootstrap, approval_topics, marker.approval_id, "sent", purpose="csm_webhook")
    finally:
        smtp.stop()
        await runner.cleanup()
    assert len(posts) == 2, posts
    assert "Heads up! R&amp;D &lt;Labs&gt; just hit a milestone" in posts[0]
    assert re.search(r"<http://127\.0\.0\.1:\d+/t/[\w.-]+\|Send email>", posts[0])
    assert len(smtp.mailbox.notifications()) == 2


async def test_a_milestone_in_two_requests_is_sent_once(kafka_bootstrap, approval_topics):
    """The drafter, replayed after a crash (its request acknowledged, its row not written), can merge an
    already requested milestone with a later one into a second request under another id; approving both
    must not celebrate that milestone twice."""
    smtp = SmtpServer().start()
    first = approval_request(7)
    merged = approval_request(8, milestone_ids=["m-7", "m-8"], approval_id="approval-m7-m8")
    alone = approval_request(9)
    # a later step of an anniversary sequence names its anniversary milestone only to link the sequence
    step = approval_request(10, milestone_ids=["m-7"], approval_id="approval-m7-step-2",
                            policy_notes=["anniversary sequence: step 2 of 3, a forward-looking note (…)"])
    try:
        async with ApprovalStack(kafka_bootstrap, approval_topics, smtp.port):
            async with producer(kafka_bootstrap) as prod:
                for req in (first, merged, alone, step):
                    await prod.send_and_wait(approval_topics.approval_requests, key=req.account_id.encode(),
                                             value=req.to_avro())
            await publish_decisions(kafka_bootstrap, approval_topics, decision(first))
            await until_outcome(kafka_bootstrap, approval_topics, first.approval_id, "sent")
            await publish_decisions(kafka_bootstrap, approval_topics, decision(merged), decision(alone), decision(step))
            [refused] = await until_outcome(kafka_bootstrap, approval_topics, merged.approval_id, "not_sent")
            await until_outcome(kafka_bootstrap, approval_topics, alone.approval_id, "sent")
            await until_outcome(kafka_bootstrap, approval_topics, step.approval_id, "sent")
    finally:
        smtp.stop()
    assert refused.detail.startswith(f"milestone(s) m-7 already celebrated by approval {first.approval_id}")
    assert sorted(m["Message-ID"] for m in smtp.mailbox.customer_emails()) == sorted(
        f"<{r.approval_id}@{DOMAIN}>" for r in (first, alone, step))
