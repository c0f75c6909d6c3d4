"""A held-out request in the approval UI, without a broker (the UI in this process on a view filled by
hand, as tests/unit/test_pages.py does): shown with its status and why, no Send button, and neither the
form, a one-tap link nor the edit page records a decision; the metrics count it; the impact page needs
a signed-in user and escapes CRM text."""
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer

from milestone_stream.schemas.records import CrmChange, FieldChange
from milestone_stream.sinks.approvals import view as approval_view
from milestone_stream.sinks.approvals.signing import Signer
from milestone_stream.sinks.approvals.web import CSP, ApprovalUI
from milestone_stream.sinks.impact.report import build
from milestone_stream.sinks.impact.web import ImpactPage

from support.stack import approval_request, decision

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
CSM = "sam.rivera@vendor.example"
NOTE = "measurement: held out (cohort c-0123456789ab; usage_threshold): drafted so you can see it; it is never sent"


class View:
    def __init__(self) -> None:
        self.requests, self.decisions, self.outcomes = {}, {}, defaultdict(list)

    def status(self, approval_id, now=None):
        return approval_view.status(self.requests[approval_id], self.decisions.get(approval_id),
                                    self.outcomes.get(approval_id, []), now or NOW)

    def inbox(self, csm_email):
        return list(self.requests.values())

    async def request(self, approval_id, timeout=5):
        return self.requests.get(approval_id)

    async def caught_up_to(self, *position, timeout=10):
        return None


@pytest.fixture
async def ui():
    view = View()
    held = approval_request(1, held_out=True, policy_notes=[NOTE], created_at=NOW, expires_at=NOW + timedelta(days=7))
    view.requests[held.approval_id] = held
    signer, published = Signer(b"k" * 32), []

    async def publish(d):
        published.append(d)
        return SimpleNamespace(topic="t", partition=0, offset=0)

    app = ApprovalUI(view, signer, publish, clock=lambda: NOW)
    industry = CrmChange(change_id="c", account_id=held.account_id, occurred_at=NOW - timedelta(days=400),
                         source="t", changes=[FieldChange(field="industry", value="<b>retail</b>")])

    async def load(cohort, kind):
        return build(list(view.requests.values()), [industry], NOW, cohort=cohort, kind=kind)

    app.routes += ImpactPage(app, load).routes()
    async with TestClient(TestServer(app.app())) as client:
        yield SimpleNamespace(client=client, signer=signer, held=held, published=published, view=view,
                              session=signer.session(CSM))


async def test_a_held_out_request_is_shown_with_why_and_cannot_be_decided(ui):
    cookie = {"Cookie": f"ms_session={ui.session}"}
    r = await ui.client.get(f"/r/{ui.held.approval_id}", headers=cookie)
    page = await r.text()
    assert r.status == 200 and "Held out for measurement" in page and NOTE in page
    assert "Send email" not in page and "name=action value=send" not in page
    csrf = ui.signer.csrf(ui.session, ui.held.approval_id)
    for action in ("send", "dont_send"):
        r = await ui.client.post(f"/r/{ui.held.approval_id}/decide", data={"csrf": csrf, "action": action},
                                 headers=cookie, allow_redirects=False)
        assert r.status == 409 and "Held out for measurement" in await r.text()
    r = await ui.client.get(f"/r/{ui.held.approval_id}/edit", headers=cookie)
    assert r.status == 409
    token = ui.signer.link_token(ui.held.approval_id, CSM, "send", (NOW + timedelta(days=1)).timestamp())
    r = await ui.client.get(f"/t/{token}", allow_redirects=False)
    assert r.status == 409 and "Confirm" not in await r.text()
    assert ui.published == []
    # a decision on the topic anyway (forged): still held out, never "sending"
    ui.view.decisions[ui.held.approval_id] = decision(ui.held)
    assert ui.view.status(ui.held.approval_id) == "held out"
    metrics = await (await ui.client.get("/metrics")).text()
    assert 'milestones_approvals{status="held out"} 1.0' in metrics


async def test_the_impact_page_needs_a_session_and_escapes_crm_text(ui):
    assert (await ui.client.get("/impact")).status == 401
    assert (await ui.client.get("/impact.csv")).status == 401
    r = await ui.client.get("/impact", headers={"Cookie": f"ms_session={ui.session}"})
    page = await r.text()
    assert r.status == 200 and r.headers["Content-Security-Policy"] == CSP
    assert "&lt;b&gt;retail&lt;/b&gt;" in page and "<b>retail" not in page
    assert "not enough data" in page and "<svg" in page
