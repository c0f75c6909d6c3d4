"""End to end on the real broker: milestone → drafted approval request → CSM notification → one-tap
decision → exactly one email on a real SMTP server; and every way a link can be misused."""
import asyncio
import base64
import json
import re
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from milestone_stream.drafter import approval_id
from milestone_stream.ids import milestone_id
from milestone_stream.kafka_io import read_topic, wait_for
from milestone_stream.models import ApprovalRequest, Contact, CrmChange, Evidence, FieldChange, Milestone
from milestone_stream.sinks.approvals import ApprovalView
from milestone_stream.topics import ensure_topics

from helpers import Worker, publish
from messages_api import MODEL, MessagesAPI
from stack import ApprovalStack, SmtpServer, approval_request, csrf_in, links_in, outcomes, until_outcome

NOW = datetime.now(timezone.utc)


def profile(account: str, contacts: list[Contact], **fields) -> CrmChange:
    values = {"name": "Acme Corp", "industry": "financial services", "csm_email": "sam.rivera@vendor.example",
              "csm_name": "Samantha Rivera", "top_use_case": "client onboarding", **fields}
    return CrmChange(change_id=f"profile-{account}", account_id=account, source="salesforce",
                     source_record=f"001{account.upper()}", occurred_at=NOW - timedelta(days=1),
                     changes=[FieldChange(field=k, value=v) for k, v in values.items()], contacts=contacts)


def milestone(account: str, tier: int = 10000) -> Milestone:
    return Milestone(milestone_id=milestone_id(account, "usage_threshold", "emails_sent", tier), account_id=account,
                     kind="usage_threshold", metric="emails_sent", threshold=tier, value=tier + 250.0,
                     title=f"{tier:,} emails sent", reached_at=NOW,
                     evidence=[Evidence(source="platform.mailer", record="event e-9", occurred_at=NOW)])


@pytest.fixture
async def messages_api():
    server = await MessagesAPI().start()
    yield server
    await server.stop()


async def requests_on(bootstrap, topics) -> list[ApprovalRequest]:
    return [ApprovalRequest.from_avro(r.value) for r in await read_topic(bootstrap, topics.approval_requests, idle_ms=500)]


async def test_milestone_to_exactly_one_email_through_a_one_tap_link(kafka_bootstrap, topics, tmp_path, messages_api):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    messages_api.then("tool", {"subject": "Congratulations on 10,000 touchpoints with clients",
                               "paragraphs": ["Your team reached 10,000 touchpoints with clients — 10,250 so far."]})
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, MILESTONES_GATHER_SECONDS="0.3",
                    MILESTONES_DRAFTER_INTERVAL="0.2", ANTHROPIC_API_KEY="test-key",
                    ANTHROPIC_BASE_URL=messages_api.url, MILESTONES_MODEL=MODEL).start()
    smtp = SmtpServer().start()
    jane = Contact(name="Jane Doe", email="jane@acme.example", role="executive_sponsor")
    try:
        await publish(kafka_bootstrap, topics.crm, [profile("acme", [jane])])
        await wait_for(lambda: read_topic(kafka_bootstrap, f"{topics.prefix}detector-profiles-changelog", idle_ms=300),
                       60, what="the profile to be recorded")
        await publish(kafka_bootstrap, topics.milestones, [milestone("acme"), milestone("acme")])  # delivered twice
        [request] = await wait_for(lambda: requests_on(kafka_bootstrap, topics), 90, what="an approval request")
        assert request.approval_id == approval_id([milestone("acme").milestone_id])
        assert request.drafted_by == MODEL and request.guard_verdict.startswith("passed")
        assert request.recipients == [jane] and request.csm_email == "sam.rivera@vendor.example"
        assert request.body_text.startswith("Dear Jane,") and request.body_text.rstrip().endswith("Samantha Rivera")
        assert {c.source for c in request.citations} >= {"platform.mailer"}
        assert '"account": "Acme Corp"' in messages_api.last_prompt().replace('\\"', '"')

        async with ApprovalStack(kafka_bootstrap, topics, smtp.port) as stack:
            await wait_for(smtp.mailbox.notifications, 60, what="the CSM's notification")
            [note] = smtp.mailbox.notifications()
            assert note["To"] == "sam.rivera@vendor.example"
            assert "Heads up! Your customer Acme Corp just hit a milestone: 10,000 emails sent" in \
                note.get_body(("plain",)).get_content()
            links = links_in(note)
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                async with browser.get(links["Send email"]) as tap:  # opens the request, ready to confirm
                    assert tap.status == 200
                    page = await tap.text()
                assert "Confirm: send email" in page and "Jane Doe &lt;jane@acme.example&gt;" in page
                form = {"csrf": csrf_in(page), "action": "send"}
                decide = f"{stack.url}/r/{request.approval_id}/decide"
                double = await asyncio.gather(*(browser.post(decide, data=form) for _ in range(2)))  # double click
                assert sorted(r.status for r in double) == [200, 409]  # the second shows what was decided
                await until_outcome(kafka_bootstrap, topics, request.approval_id, "sent")
                other = ApprovalView(kafka_bootstrap, topics)  # another UI process: the same state from the topics
                await other.start()
                try:
                    await other.caught_up()
                    assert other.status(request.approval_id) == "sent"
                    assert other.decisions[request.approval_id] == stack.view.decisions[request.approval_id]
                finally:
                    await other.stop()
                async with browser.post(decide, data=form) as again:  # the same form, posted again
                    assert again.status == 409
                async with browser.get(links["Send email"]) as replay:  # the link, tapped again
                    assert replay.status == 409 and "chose to send" in await replay.text()
        [sent] = smtp.mailbox.customer_emails()
        assert sent["To"] == "Jane Doe <jane@acme.example>" and sent["From"] == "Samantha Rivera <sam.rivera@vendor.example>"  # the CRM's name
        assert sent["Message-ID"] == f"<{request.approval_id}@milestones.test>"
        assert sent["Subject"] == "Congratulations on 10,000 touchpoints with clients"
        assert [o.outcome for o in await outcomes(kafka_bootstrap, topics)] == ["attempting", "sent"]
        assert len(await requests_on(kafka_bootstrap, topics)) == 1, "a re-delivered milestone drafted twice"
    finally:
        smtp.stop()
        assert worker.stop() == 0, f"worker did not exit cleanly; log: {worker.log}"


async def test_forged_expired_foreign_and_csrf_less_requests_get_4xx_and_send_nothing(kafka_bootstrap, topics):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    smtp = SmtpServer().start()
    mine, theirs = approval_request(7), approval_request(8, csm="someone.else@vendor.example")
    try:
        async with ApprovalStack(kafka_bootstrap, topics, smtp.port) as stack:
            await publish(kafka_bootstrap, topics.approval_requests, [mine, theirs])
            await wait_for(lambda: len(stack.view.requests) == 2, 30, what="the UI to see both requests")
            s = stack.signer
            good = s.link_token(mine.approval_id, mine.csm_email, "send", (NOW + timedelta(days=1)).timestamp())
            body, mac = good.split(".")
            claims = json.loads(base64.urlsafe_b64decode(body + "=="))
            forged_body = base64.urlsafe_b64encode(json.dumps({**claims, "a": theirs.approval_id}).encode()).rstrip(b"=").decode()
            cases = {
                "forged signature": (f"{body}.{mac[:-2]}xx", 403),
                "claims edited": (f"{forged_body}.{mac}", 403),
                "expired": (s.link_token(mine.approval_id, mine.csm_email, "send", (NOW - timedelta(minutes=1)).timestamp()), 410),
                "session token as link": (s.session(mine.csm_email), 403),
            }
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                for name, (token, status) in cases.items():
                    async with browser.get(f"{stack.url}/t/{token}") as r:
                        assert r.status == status, name
                        assert "Nothing was sent" in await r.text() or status == 410
                async with browser.get(f"{stack.url}/") as r:
                    assert r.status == 401  # no session was set by any of them
                async with browser.get(f"{stack.url}/t/{good}") as r:  # a good link signs Sam in
                    assert r.status == 200
                async with browser.get(f"{stack.url}/r/{theirs.approval_id}") as r:
                    assert r.status == 404, "a CSM saw another CSM's request"
                async with browser.post(f"{stack.url}/r/{mine.approval_id}/decide", data={"action": "send"}) as r:
                    assert r.status == 403  # no CSRF token
                async with browser.post(f"{stack.url}/r/{mine.approval_id}/decide",
                                        data={"action": "send", "csrf": s.csrf("another-session", mine.approval_id)}) as r:
                    assert r.status == 403  # a CSRF token from another session
                async with browser.get(f"{stack.url}/") as r:
                    inbox = await r.text()
                assert "Account 7" in inbox and "Account 8" not in inbox
                assert re.search(r"pending", inbox)
            assert stack.view.decisions == {}
    finally:
        smtp.stop()
    assert smtp.mailbox.customer_emails() == []
