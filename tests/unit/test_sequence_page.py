"""The request page of an anniversary sequence's step: the sequence as a timeline (steps 1 to 3 with
their dates and states, the current one in bold, links to the others), the "Send this and the
follow-ups" button on steps 1 and 2 only, hostile titles escaped; and the form's follow-ups choice
reaches the decision. No broker: the UI runs in this process on a view filled by hand."""
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from aiohttp.test_utils import TestClient, TestServer
from test_risk_page import HOSTILE, Parsed, View

from milestone_stream.agents.drafter import sequence as sq
from milestone_stream.agents.drafter.sequence_rules import AnniversarySequence
from milestone_stream.sinks.approvals.signing import Signer
from milestone_stream.sinks.approvals.web import CSP, ApprovalUI

from support.stack import approval_request

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
ANNIVERSARY = "ann-1"
STEP1 = approval_request(1, milestone_ids=[ANNIVERSARY, "m-other"], created_at=NOW - timedelta(days=8),
                         expires_at=NOW + timedelta(days=7),
                         policy_notes=sq.step1_notes(NOW - timedelta(days=8), AnniversarySequence()))
STEP2 = approval_request(2, approval_id=sq.step_id(ANNIVERSARY, "2"), account_id=STEP1.account_id,
                         milestone_ids=[ANNIVERSARY], created_at=NOW - timedelta(hours=1),
                         expires_at=NOW + timedelta(days=7), milestone_titles=[
                             f"Anniversary sequence, step 2: a forward-looking note {HOSTILE}"],
                         policy_notes=["anniversary sequence: step 2 of 3, a forward-looking note (x)"])


class Followed(View):
    async def caught_up_to(self, topic, partition, offset, timeout=10):
        return None


async def client_for(*requests, published=None):
    signer = Signer(b"k" * 40)

    async def publish(d):
        if published is not None:
            published.append(d)
        return SimpleNamespace(topic="t", partition=0, offset=0)

    ui = ApprovalUI(Followed(*requests), signer, publish, clock=lambda: NOW)
    return TestClient(TestServer(ui.app())), {"Cookie": f"ms_session={signer.session(STEP1.csm_email)}"}, signer


async def test_the_timeline_shows_each_step_and_its_state_escaped_without_script():
    client, cookie, _ = await client_for(STEP1, STEP2)
    async with client:
        r = await client.get(f"/r/{STEP2.approval_id}", headers=cookie)
        assert r.status == 200 and r.headers["Content-Security-Policy"] == CSP
        page = await r.text()
        parsed = Parsed(page)
        text = " ".join("".join(parsed.text).split())
        assert f"Step 1: The year in review — drafted {NOW - timedelta(days=8):%Y-%m-%d} pending" in text
        assert "Step 2: A forward-looking note" in text and HOSTILE.split()[0] in text
        assert f"Step 3: Renewal preparation or an advocacy invitation — planned for " \
               f"{NOW - timedelta(days=8) + timedelta(days=14):%Y-%m-%d}" in text
        assert ("a", {"href": f"/r/{STEP1.approval_id}"}) in parsed.tags
        assert "<script" not in page and not any(t == "script" for t, _ in parsed.tags)
        assert "Send this and the follow-ups" in page
        # a request that is no step of a sequence has neither
        other = approval_request(3, created_at=NOW, expires_at=NOW + timedelta(days=7))
    client, cookie, _ = await client_for(other)
    async with client:
        page = await (await client.get(f"/r/{other.approval_id}", headers=cookie)).text()
        assert "Anniversary sequence" not in page and "follow-ups" not in page


async def test_the_follow_ups_button_records_follow_ups_on_the_decision():
    published = []
    client, cookie, signer = await client_for(STEP1, published=published)
    async with client:
        csrf = signer.csrf(signer.session(STEP1.csm_email), STEP1.approval_id)
        r = await client.post(f"/r/{STEP1.approval_id}/decide", headers=cookie, allow_redirects=False,
                              data={"csrf": csrf, "action": "send", "follow_ups": "1"})
        assert r.status == 303
    [d] = published
    assert d.decision == "send" and d.follow_ups is True
