"""Slack approval buttons, end to end on the real broker: the sender posts each request to the CSM's
Slack DM (a local server speaking the Web API's shapes, errors and 429s), the UI's interaction endpoint
takes signed taps (as Slack signs them) through the same decision path as the web form, and the
message is updated once decided."""
import json
import time

import aiohttp
import pytest

from milestone_stream.kafka_io import read_topic
from milestone_stream.schemas.records import ApprovalDecision
from milestone_stream.topics import ensure_topics

from support.helpers import publish
from support.slack_api import SlackApi, block_actions, signed_headers
from support.stack import ApprovalStack, SmtpServer, approval_request, dead_letters, outcomes, until_outcome

CSM = "sam.rivera@vendor.example"
SAM, EVE = "U0SAM", "U0EVE"


@pytest.fixture
async def approval_topics(kafka_bootstrap, topics):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    return topics


@pytest.fixture
async def slack():
    api = await SlackApi({SAM: CSM, EVE: "eve@vendor.example"}).start()
    yield api
    await api.stop()


async def decisions(bootstrap, topics) -> list[ApprovalDecision]:
    return [ApprovalDecision.from_avro(r.value) for r in await read_topic(bootstrap, topics.approval_decisions,
                                                                          idle_ms=500)]


def texts(blocks) -> list[str]:
    """Every text a message shows: section texts, context elements, button labels."""
    found = []
    for b in blocks:
        if "text" in b:
            found.append(b["text"]["text"])
        for e in b.get("elements", []):
            found.append(e["text"] if isinstance(e.get("text"), str) else e.get("text", {}).get("text", ""))
    return found


async def test_request_slack_post_signed_send_tap_decision_and_updated_message(kafka_bootstrap, approval_topics,
                                                                                slack):
    smtp = SmtpServer().start()
    req = approval_request(1, csm=CSM, account_name="<!channel> *Acme* & <@U999|boss> ~x~ `y`")
    try:
        async with ApprovalStack(kafka_bootstrap, approval_topics, smtp.port, slack_url=slack.url) as stack:
            await publish(kafka_bootstrap, approval_topics.approval_requests, [req])
            await until_outcome(kafka_bootstrap, approval_topics, req.approval_id, "sent", purpose="csm_slack")
            [post] = slack.posted()
            assert [c[0] for c in slack.calls[:3]] == ["users.lookupByEmail", "conversations.open", "chat.postMessage"]
            assert post["channel"] == "D0SAM"
            shown = texts(post["blocks"])
            assert not any("<" in t or ">" in t.replace("\n>", "\n") for t in shown), shown  # no mention, no link
            assert "&lt;!channel&gt;" in shown[0] and "&amp;" in shown[0] and "*Acme*" not in shown[0]
            buttons = {e["action_id"]: e for b in post["blocks"] if b["type"] == "actions" for e in b["elements"]}
            assert set(buttons) == {"send", "edit", "dont_send"}
            assert buttons["send"]["value"] == req.approval_id
            ts = next(iter(slack.messages))[1]

            async with aiohttp.ClientSession() as client:
                url = f"{stack.url}/slack/interactions"
                # the "Edit draft" button opens the signed one-tap edit link
                async with client.get(buttons["edit"]["url"], allow_redirects=False) as r:
                    assert r.status == 303 and r.headers["Location"] == f"/r/{req.approval_id}/edit"
                # forged: signed with another secret; stale: signed correctly six minutes ago
                body = block_actions(SAM, "send", req.approval_id, "D0SAM", ts)
                forged = signed_headers(body, secret="not-the-secret")  # noqa: S106 — the wrong secret on purpose
                async with client.post(url, data=body, headers=forged) as r:
                    assert r.status == 401
                async with client.post(url, data=body, headers=signed_headers(body, int(time.time()) - 360)) as r:
                    assert r.status == 401
                tampered = block_actions(SAM, "send", req.approval_id + "x", "D0SAM", ts)
                async with client.post(url, data=tampered, headers=signed_headers(body)) as r:
                    assert r.status == 401  # a body edited after signing
                # someone else's tap (a valid Slack request): refused, nothing decided
                other = block_actions(EVE, "send", req.approval_id, "D0SAM", ts)
                async with client.post(url, data=other, headers=signed_headers(other)) as r:
                    assert r.status == 403
                assert await decisions(kafka_bootstrap, approval_topics) == []
                # the CSM taps Send; the same signed request replayed is a second tap
                headers = signed_headers(body)
                async with client.post(url, data=body, headers=headers) as r:
                    assert r.status == 200 and (await r.json())["decided"] is True
                async with client.post(url, data=body, headers=headers) as r:
                    assert r.status == 200 and (await r.json())["decided"] is False
                dont = block_actions(SAM, "dont_send", req.approval_id, "D0SAM", ts)
                async with client.post(url, data=dont, headers=signed_headers(dont)) as r:
                    assert r.status == 200 and (await r.json())["decided"] is False

            await until_outcome(kafka_bootstrap, approval_topics, req.approval_id, "sent")
            await until_outcome(kafka_bootstrap, approval_topics, req.approval_id, "sent", purpose="csm_slack_update")
    finally:
        smtp.stop()
    [decided] = await decisions(kafka_bootstrap, approval_topics)
    assert decided.decision == "send" and decided.csm_email == CSM and decided.recipients == req.recipients
    assert len(smtp.mailbox.customer_emails()) == 1
    [update] = slack.posted("chat.update")
    assert (update["channel"], update["ts"]) == ("D0SAM", ts)
    assert not any(b["type"] == "actions" for b in update["blocks"])  # no buttons left
    assert "Approved" in texts(update["blocks"])[0]


async def test_a_decision_in_the_web_ui_updates_the_slack_message_too(kafka_bootstrap, approval_topics, slack):
    smtp = SmtpServer().start()
    req = approval_request(2, csm=CSM)
    try:
        async with ApprovalStack(kafka_bootstrap, approval_topics, smtp.port, slack_url=slack.url) as stack:
            await publish(kafka_bootstrap, approval_topics.approval_requests, [req])
            await until_outcome(kafka_bootstrap, approval_topics, req.approval_id, "sent", purpose="csm_slack")
            a = await stack.view.request(req.approval_id)
            assert await stack.ui.take(a, CSM, "dont_send", {"reason": "bad <timing>"})
            await until_outcome(kafka_bootstrap, approval_topics, req.approval_id, "sent", purpose="csm_slack_update")
    finally:
        smtp.stop()
    [update] = slack.posted("chat.update")
    shown = texts(update["blocks"])
    assert "Not sent" in shown[0] and "bad &lt;timing&gt;" in shown[0]
    assert smtp.mailbox.customer_emails() == []


async def test_slack_429_is_retried_after_retry_after_and_errors_are_recorded(kafka_bootstrap, approval_topics, slack):
    smtp = SmtpServer().start()
    limited = approval_request(3, csm=CSM)
    stranger = approval_request(4, csm="nobody@vendor.example")  # no Slack account: users_not_found
    slack.fail("chat.postMessage", 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "2"})
    try:
        async with ApprovalStack(kafka_bootstrap, approval_topics, smtp.port, slack_url=slack.url):
            await publish(kafka_bootstrap, approval_topics.approval_requests, [limited, stranger])
            sent = await until_outcome(kafka_bootstrap, approval_topics, limited.approval_id, "sent",
                                       purpose="csm_slack")
            await until_outcome(kafka_bootstrap, approval_topics, stranger.approval_id, "failed", purpose="csm_slack")
    finally:
        smtp.stop()
    trail = [o for o in await outcomes(kafka_bootstrap, approval_topics, "csm_slack")
             if o.approval_id == limited.approval_id]
    assert [o.outcome for o in trail] == ["attempting", "retrying", "attempting", "sent"], trail
    assert "429 ratelimited" in trail[1].detail
    assert (trail[2].recorded_at - trail[1].recorded_at).total_seconds() >= 1.9  # Retry-After honoured
    assert len(slack.posted()) == 2 and json.loads(sent[0].detail)["channel"] == "D0SAM"
    failed = [o for o in await outcomes(kafka_bootstrap, approval_topics, "csm_slack")
              if o.approval_id == stranger.approval_id and o.outcome == "failed"]
    assert "users_not_found" in failed[0].detail
    assert any(d.reason == "delivery_failed" and stranger.approval_id in d.error
               for d in await dead_letters(kafka_bootstrap, approval_topics))
    assert len(smtp.mailbox.notifications()) == 2  # the email notifications are independent of Slack


async def test_malformed_or_unsigned_interactions_are_4xx_never_a_500_and_decide_nothing(kafka_bootstrap,
                                                                                          approval_topics, slack):
    req = approval_request(5, csm=CSM, recipients=())  # no recipient: Send is not offered, a forged one is refused
    await publish(kafka_bootstrap, approval_topics.approval_requests, [req])
    good = block_actions(SAM, "send", req.approval_id)
    now = str(int(time.time()))
    cases = [
        (good, {}, 401),                                                              # no signature at all
        (good, {**signed_headers(good), "X-Slack-Request-Timestamp": "soon"}, 401),   # not an integer
        (good, {**signed_headers(good), "X-Slack-Signature": "v0=é" + "0" * 63}, 401),  # non-ASCII
        (good, {**signed_headers(good), "X-Slack-Signature": "v1=" + "0" * 64}, 401),
        (b"payload=%FF%FE\xff", signed_headers(b"payload=%FF%FE\xff"), 401),          # not UTF-8 (as signed)
        (b"payload=not-json", signed_headers(b"payload=not-json"), 400),
        (b"payload=%5B%5D", signed_headers(b"payload=%5B%5D"), 400),                  # JSON, not an object
        (b"other=1", signed_headers(b"other=1"), 400),
        (b"", {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0="}, 401),
    ]
    wrong_kind = block_actions(SAM, "send", req.approval_id).replace(b"block_actions", b"view_submission")
    cases.append((wrong_kind, signed_headers(wrong_kind), 400))
    missing = block_actions(SAM, "send", "no-such-approval")
    cases.append((missing, signed_headers(missing), 404))
    cases.append((good, signed_headers(good), 400))  # a signed Send for a request without a recipient
    edit = block_actions(SAM, "edit", req.approval_id)
    cases.append((edit, signed_headers(edit), 200))  # a link button: Slack opens the URL, nothing to do
    smtp = SmtpServer().start()
    try:
        async with ApprovalStack(kafka_bootstrap, approval_topics, smtp.port, slack_url=slack.url) as stack:
            await stack.view.request(req.approval_id)
            async with aiohttp.ClientSession() as client:
                for body, headers, status in cases:
                    async with client.post(f"{stack.url}/slack/interactions", data=body, headers=headers) as r:
                        assert r.status == status, (body[:60], headers, r.status, await r.text())
    finally:
        smtp.stop()
    assert await decisions(kafka_bootstrap, approval_topics) == []
