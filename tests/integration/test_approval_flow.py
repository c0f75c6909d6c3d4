"""End to end on the real broker: milestone → drafted approval request → CSM notification → one-tap
decision → exactly one email on a real SMTP server; and every way a link can be misused."""
import asyncio
import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from yarl import URL

from milestone_stream.agents.drafter.agent import approval_id
from milestone_stream.ids import milestone_id
from milestone_stream.kafka_io import read_topic, wait_for
from milestone_stream.schemas.records import ApprovalRequest, Contact, CrmChange, Evidence, FieldChange, Milestone
from milestone_stream.sinks.approvals.view import ApprovalView
from milestone_stream.topics import ensure_topics

from support.helpers import Worker, publish
from support.messages_api import MODEL, MessagesAPI
from support.stack import (
    SECRET,
    ApprovalStack,
    SmtpServer,
    approval_request,
    csrf_in,
    links_in,
    outcomes,
    until_outcome,
)

NOW = datetime.now(UTC)


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
    return [ApprovalRequest.from_avro(r.value)
            for r in await read_topic(bootstrap, topics.approval_requests, idle_ms=500)]


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
        assert sent["To"] == "Jane Doe <jane@acme.example>"
        assert sent["From"] == "Samantha Rivera <sam.rivera@vendor.example>"  # the CRM's name
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
            forged = json.dumps({**claims, "a": theirs.approval_id}).encode()
            forged_body = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
            cases = {
                "forged signature": (f"{body}.{mac[:-2]}xx", 403),
                "claims edited": (f"{forged_body}.{mac}", 403),
                "expired": (s.link_token(mine.approval_id, mine.csm_email, "send",
                                         (NOW - timedelta(minutes=1)).timestamp()), 410),
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
                other_csrf = s.csrf("another-session", mine.approval_id)
                async with browser.post(f"{stack.url}/r/{mine.approval_id}/decide",
                                        data={"action": "send", "csrf": other_csrf}) as r:
                    assert r.status == 403  # a CSRF token from another session
                async with browser.get(f"{stack.url}/") as r:
                    inbox = await r.text()
                assert "Account 7" in inbox and "Account 8" not in inbox
                assert re.search(r"pending", inbox)
            assert stack.view.decisions == {}
    finally:
        smtp.stop()
    assert smtp.mailbox.customer_emails() == []


def signed_with_our_key(payload: bytes) -> str:
    """A token in the UI's format, signed with the stack's key, around any payload: what a bug of ours,
    or a leaked key, could produce — it must still be refused cleanly."""
    body = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    mac = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


async def raw_status(url: str, request: bytes) -> int:
    """Send bytes no HTTP client library would (invalid UTF-8 in a header) and read the status code."""
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return int((await reader.readline()).split()[1])
    finally:
        writer.close()


async def test_non_ascii_or_malformed_tokens_cookies_and_csrf_fields_are_refused_never_a_500(kafka_bootstrap, topics):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    smtp = SmtpServer().start()
    mine = approval_request(10)
    later = int((NOW + timedelta(days=1)).timestamp())
    try:
        async with ApprovalStack(kafka_bootstrap, topics, smtp.port) as stack:
            await publish(kafka_bootstrap, topics.approval_requests, [mine])
            await wait_for(lambda: mine.approval_id in stack.view.requests, 30, what="the UI to see the request")
            good = stack.signer.link_token(mine.approval_id, mine.csm_email, "send", later)
            body, mac = good.split(".")
            link = {"a": mine.approval_id, "c": mine.csm_email, "x": "send", "p": "link", "e": later}
            tokens = {
                "non-ASCII signature": f"{body}.{'ä' * len(mac)}",
                "non-ASCII body": f"Jäné.{mac}",
                "percent-encoded bytes that are not UTF-8": f"{body}.%FF%FE%C3",
                "emoji": "🎉.🎉",
                "no signature": body,
                "JSON list": signed_with_our_key(json.dumps([link]).encode()),
                "JSON null": signed_with_our_key(b"null"),
                "no expiry": signed_with_our_key(json.dumps({k: v for k, v in link.items() if k != "e"}).encode()),
                "expiry a string": signed_with_our_key(json.dumps({**link, "e": "tomorrow"}).encode()),
                "expiry true": signed_with_our_key(json.dumps({**link, "e": True}).encode()),
                "expiry NaN": signed_with_our_key(b'{"a":"x","c":"y","x":"send","p":"link","e":NaN}'),
                "no action": signed_with_our_key(json.dumps({k: v for k, v in link.items() if k != "x"}).encode()),
                "unknown action": signed_with_our_key(json.dumps({**link, "x": "delete"}).encode()),
                "approval id a number": signed_with_our_key(json.dumps({**link, "a": 7}).encode()),
                "not JSON": signed_with_our_key(b"\xff\xfe not json"),
                "not base64": "a." + base64.urlsafe_b64encode(
                    hmac.new(SECRET.encode(), b"a", hashlib.sha256).digest()).rstrip(b"=").decode(),
            }
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                for name, token in tokens.items():
                    for kind in ("t", "s"):  # a one-tap link, a sign-in link
                        async with browser.get(f"{stack.url}/{kind}/{token}") as r:
                            assert r.status == 403, f"{kind}: {name}: {r.status}"
                async with browser.get(f"{stack.url}/s/{signed_with_our_key(b'[1, 2]')}") as r:
                    assert r.status == 403
                for cookie in ("ä" * 40, f"{body}.{'ö' * len(mac)}", f"Jäné.{mac}",
                               signed_with_our_key(json.dumps({"p": "session", "e": later}).encode())):  # no "c"
                    for path in ("/", f"/r/{mine.approval_id}"):
                        async with browser.get(f"{stack.url}{path}", headers={"Cookie": f"ms_session={cookie}"}) as r:
                            assert r.status == 401, f"{cookie!r} on {path}: {r.status}"  # not signed in
                async with browser.get(f"{stack.url}/t/{good}") as r:  # now signed in, with a real session
                    assert r.status == 200
                    real_csrf = csrf_in(await r.text())
                decide = f"{stack.url}/r/{mine.approval_id}/decide"
                for csrf in ("ä" * 43, "🎉", real_csrf[:-1] + "é"):
                    async with browser.post(decide, data={"csrf": csrf, "action": "send"}) as r:
                        assert r.status == 403, f"{csrf!r}: {r.status}"
                session = browser.cookie_jar.filter_cookies(URL(stack.url))["ms_session"].value
                raw_form = b"csrf=%FF%FE%C3&action=send"
                assert await raw_status(stack.url, (
                    f"POST /r/{mine.approval_id}/decide HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    f"Cookie: ms_session={session}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    f"Content-Length: {len(raw_form)}\r\n\r\n").encode() + raw_form) == 403
            for raw_cookie in (b"\xff\xfe" + body.encode(), body.encode() + b"." + mac.encode()[:-2] + b"\xc3\xa4"):
                assert await raw_status(stack.url, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                                   b"Cookie: ms_session=" + raw_cookie + b"\r\n\r\n") == 401
            assert stack.view.decisions == {}
    finally:
        smtp.stop()
    assert smtp.mailbox.customer_emails() == []


async def test_the_recipient_form_takes_one_plain_address_and_a_cleaned_name(kafka_bootstrap, topics):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    smtp = SmtpServer().start()
    req = approval_request(11, recipients=())  # no executive contact on record: the CSM chooses
    try:
        async with ApprovalStack(kafka_bootstrap, topics, smtp.port) as stack:
            await publish(kafka_bootstrap, topics.approval_requests, [req])
            await wait_for(lambda: req.approval_id in stack.view.requests, 30, what="the UI to see the request")
            edit = stack.signer.link_token(req.approval_id, req.csm_email, "edit",
                                           (NOW + timedelta(days=1)).timestamp())
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                async with browser.get(f"{stack.url}/t/{edit}") as r:  # signs in, then the edit page
                    assert r.status == 200 and "Recipient email" in (page := await r.text())
                form = {"csrf": csrf_in(page), "action": "send", "subject": req.subject, "body_text": req.body_text}
                decide = f"{stack.url}/r/{req.approval_id}/decide"
                for email in ("Jane <jane@acme.example>", "jane@acme.example, evil@attacker.example",
                              "jane@acme.example\r\nBcc: evil@attacker.example",
                              "jane@acme.example; evil@attacker.example",
                              '"evil@attacker.example" <jane@acme.example>', "jäne@acme.example", "jane", ""):
                    async with browser.post(decide, data={**form, "recipient_name": "Jane Doe",
                                                          "recipient_email": email}) as r:
                        assert r.status == 400, f"{email!r}: {r.status}"
                async with browser.post(decide, data={**form, "recipient_name": "\r\n\x00\u202e",
                                                      "recipient_email": "jane@acme.example"}) as r:
                    assert r.status == 400  # nothing of the name is left once cleaned
                assert stack.view.decisions == {}
                hostile_name = "Björn <evil@attacker.example>,\r\nBcc: x@y"
                async with browser.post(decide, data={**form, "recipient_email": " bjorn@acme.example ",
                                                      "recipient_name": hostile_name}) as r:
                    assert r.status == 200 and str(r.url).endswith(f"/r/{req.approval_id}")
            await until_outcome(kafka_bootstrap, topics, req.approval_id, "sent")
            [chosen] = stack.view.decisions[req.approval_id].recipients
            assert (chosen.name, chosen.email) == ("Björn <evil@attacker.example>, Bcc: x@y", "bjorn@acme.example")
    finally:
        smtp.stop()
    [(message, envelope)] = [(m, env) for m, env in zip(smtp.mailbox.received, smtp.mailbox.envelopes, strict=True)
                             if m in smtp.mailbox.customer_emails()]
    assert envelope == (req.csm_email, ["bjorn@acme.example"])
    [to] = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Björn <evil@attacker.example>, Bcc: x@y", "bjorn@acme.example")
    assert [a.addr_spec for a in message["From"].addresses] == [req.csm_email] and message["Bcc"] is None
