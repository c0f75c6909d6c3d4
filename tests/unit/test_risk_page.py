"""The request page shows the account's health score (each component's weight, score and inputs) and
its open risk signals, escaped like every value from data, without a broker: the UI runs in this
process on a view filled by hand."""
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from types import SimpleNamespace

from aiohttp.test_utils import TestClient, TestServer

from milestone_stream.schemas.records import Health, HealthComponent
from milestone_stream.sinks.approvals import view as approval_view
from milestone_stream.sinks.approvals.signing import Signer
from milestone_stream.sinks.approvals.web import CSP, ApprovalUI

from support.stack import approval_request

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
HOSTILE = "Logins <script>alert(1)</script> \"dq\" 'sq' </table><b onmouseover=x>&amp;\r\nBcc: x@evil.example"


class View:
    def __init__(self, *requests) -> None:
        self.requests = {r.approval_id: r for r in requests}
        self.decisions, self.outcomes = {}, defaultdict(list)

    def status(self, approval_id, now=None):
        return approval_view.status(self.requests[approval_id], None, [], now or NOW)

    def inbox(self, csm_email):
        return list(self.requests.values())

    async def request(self, approval_id, timeout=5):
        return self.requests.get(approval_id)


class Parsed(HTMLParser):
    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


HEALTH = Health(score=72, band="yellow", components=[
    HealthComponent(name="engagement", weight=0.4, score=100, source="usage table: last product event 1.0 days ago"),
    HealthComponent(name="product_usage", weight=0.3, score=None, source="no usage totals and no adoption flags"),
    HealthComponent(name="relationship", weight=0.2, score=40, source=HOSTILE),
    HealthComponent(name="outcomes", weight=0.1, score=60, source="CRM roi_percent 120")])


async def page_of(request) -> str:
    signer = Signer(b"k" * 40)

    async def publish(d):
        return SimpleNamespace(topic="t", partition=0, offset=0)

    async with TestClient(TestServer(ApprovalUI(View(request), signer, publish, clock=lambda: NOW).app())) as client:
        r = await client.get(f"/r/{request.approval_id}",
                             headers={"Cookie": f"ms_session={signer.session(request.csm_email)}"})
        assert r.status == 200 and r.headers["Content-Security-Policy"] == CSP
        return await r.text()


async def test_the_request_page_shows_health_components_and_open_signals_escaped():
    req = approval_request(1, health=HEALTH, risk_signals=[HOSTILE, "No new users in 30 days"], created_at=NOW,
                           expires_at=NOW + timedelta(days=7))
    page = await page_of(req)
    parsed = Parsed(page)
    text = "".join(parsed.text)
    assert "Account health: 72/100" in text and "yellow" in text
    assert "engagement" in text and "40%" in text and "usage table: last product event 1.0 days ago" in text
    assert "product usage" in text and "no input" in text
    assert "Open risk signals:" in text and "No new users in 30 days" in text
    assert HOSTILE.replace("\r\n", "\n") in text.replace("\r\n", "\n")  # shown as text
    assert "<script" not in page and "<b onmouseover" not in page and "</table><b" not in page
    assert not any(t in ("script", "b") and a for t, a in parsed.tags)
    assert all("onmouseover" not in a for _, a in parsed.tags)


async def test_a_request_without_health_or_signals_shows_neither():
    page = await page_of(approval_request(2, created_at=NOW, expires_at=NOW + timedelta(days=7)))
    assert "Account health" not in page and "Open risk signals" not in page


def risk(sid, account, level="orange", state="open", csm="sam.rivera@vendor.example", title="Logins down 42%"):
    from milestone_stream.schemas.records import Evidence, RiskSignal
    return RiskSignal(signal_id=sid, account_id=account, kind="usage_drop", level=level, state=state, title=title,
                      opened_at=NOW, at=NOW, csm_email=csm, account_name=f"{account} {HOSTILE}",
                      evidence=[Evidence(source="platform.logins", record=HOSTILE, occurred_at=NOW)])


async def test_the_risks_page_lists_the_csms_open_signals_highest_first_escaped():
    from milestone_stream.sinks.approvals.risks import RiskBoard
    from milestone_stream.topics import TopicNames

    signer = Signer(b"k" * 40)

    async def publish(d):
        return SimpleNamespace(topic="t", partition=0, offset=0)

    ui = ApprovalUI(View(), signer, publish, clock=lambda: NOW)
    board = RiskBoard("127.0.0.1:1", TopicNames("x."), ui)  # fed by hand here; never started
    for s in (risk("a1", "acme", "yellow", title="No new users in 30 days"), risk("a2", "acme", "red", title=HOSTILE),
              risk("a2", "acme", "red", title=HOSTILE),  # delivered twice
              risk("b1", "beta"), risk("b1", "beta", state="cleared"),  # cleared
              risk("c1", "gamma", csm="someone.else@vendor.example", title="Not Sam's account")):
        board.apply(s)
    ui.routes += board.routes()
    async with TestClient(TestServer(ui.app())) as client:
        anonymous = await client.get("/risks")
        assert anonymous.status == 401
        r = await client.get("/risks", headers={"Cookie": f"ms_session={signer.session('Sam.Rivera@vendor.example')}"})
        assert r.status == 200 and r.headers["Content-Security-Policy"] == CSP
        html = await r.text()
    text = "".join(Parsed(html).text)
    shown = " ".join(HOSTILE.split())  # one line: the gate row and the board clean data as the drafter does
    assert text.index(shown) < text.index("No new users in 30 days")  # red before yellow
    assert text.count(shown) >= 3 and "beta" not in text and "Not Sam's account" not in text
    assert text.count("No new users in 30 days") == 1 and text.count(f"acme {shown}") == 1  # the name once
    assert "<script" not in html and "<b onmouseover" not in html
