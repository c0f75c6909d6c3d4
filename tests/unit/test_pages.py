"""The approval UI's pages and the email HTML rendered with hostile data, without a broker: the UI runs
in this process on a view filled by hand. Why: every value on a page is CRM, model or CSM text, and
the templates escape it where they write it; the proof that counts is what an HTML parser reads back
— the same text, no element or attribute that data brought in, the forms and field names unchanged.
Also the one-tap links: a token that is not exactly one we issued is refused (403), an expired one
is 410, and a token in the format issued before itsdangerous signed them still opens its request."""
import base64
import hashlib
import hmac
import json
import re
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer

from milestone_stream.agents.drafter.template import html_body, html_from_text
from milestone_stream.schemas.records import Citation, Contact, EmailOutcome
from milestone_stream.sinks.approvals import view as approval_view
from milestone_stream.sinks.approvals.signing import Signer
from milestone_stream.sinks.approvals.web import CSP, ApprovalUI

from support.stack import approval_request, csrf_in, decision

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
CSM = "sam.rivera@vendor.example"
KEY = b"k" * 40
HOSTILE = "Jäné <script>alert(1)</script> \"dq\" 'sq' </textarea><b onmouseover=x>&amp; 🎉\r\nBcc: x@evil.example\u2028"
ONE_LINE = HOSTILE.replace("\r\n", " ").replace("\u2028", " ")
TAGS = {"html", "head", "meta", "title", "style", "body", "p", "a", "h1", "h2", "span", "b", "br", "em", "div",
        "form", "input", "button", "ul", "li", "table", "tr", "th", "td", "label", "textarea"}
ATTRS = {"lang", "charset", "name", "content", "href", "class", "method", "action", "style", "type", "value",
         "autofocus", "placeholder", "maxlength", "required", "colspan"}


class Parsed(HTMLParser):
    """What a browser's parser reads: every element with its attributes, and the text inside each."""

    VOID = {"meta", "br", "input"}

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.texts: dict[str, list[str]] = defaultdict(list)
        self._open: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self._open.append(tag)

    def handle_endtag(self, tag):
        if tag in self._open:
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag):]

    def handle_data(self, data):
        for tag in self._open:
            self.texts[tag].append(data)

    def text(self, tag: str = "body") -> str:
        return "".join(self.texts[tag])

    def inputs(self) -> dict[str, str | None]:
        return {a["name"]: a.get("value") for t, a in self.elements if t in ("input", "textarea") and "name" in a}


def safe(page: str) -> Parsed:
    """The page parsed back, with nothing in it that data could have brought in."""
    parsed = Parsed(page)
    assert {t for t, _ in parsed.elements} <= TAGS, {t for t, _ in parsed.elements} - TAGS
    assert {k for _, a in parsed.elements for k in a} <= ATTRS, {k for _, a in parsed.elements for k in a} - ATTRS
    assert "<script" not in page and "</textarea><b" not in page
    return parsed


class View:
    """The approval view's interface, filled by hand."""

    def __init__(self) -> None:
        self.requests, self.decisions, self.outcomes = {}, {}, defaultdict(list)

    def status(self, approval_id, now=None):
        return approval_view.status(self.requests[approval_id], self.decisions.get(approval_id),
                                    self.outcomes.get(approval_id, []), now or NOW)

    def inbox(self, csm_email):
        return sorted((r for r in self.requests.values() if r.csm_email.lower() == csm_email.lower()),
                      key=lambda r: r.created_at, reverse=True)

    async def request(self, approval_id, timeout=5):
        return self.requests.get(approval_id)

    async def caught_up_to(self, *position, timeout=10):
        return None


def hostile_request(n: int, **fields):
    fields = {"recipients": [Contact(name=HOSTILE, email="jane@acme.example", role="x")], **fields}
    return approval_request(n, account_name=HOSTILE, subject=ONE_LINE, body_text=f"Dear {HOSTILE},\n\n{HOSTILE}",
                            citations=[Citation(figure=HOSTILE, source=HOSTILE, record=HOSTILE, as_of=NOW)],
                            policy_notes=[HOSTILE], drafted_by=HOSTILE, guard_verdict=HOSTILE, created_at=NOW,
                            expires_at=NOW + timedelta(days=7), **fields)


@pytest.fixture
async def ui():
    view = View()
    pending, open_, sent, declined = (hostile_request(1), hostile_request(2, recipients=[]), hostile_request(3),
                                      hostile_request(4))
    for r in (pending, open_, sent, declined):
        view.requests[r.approval_id] = r
    view.decisions[sent.approval_id] = decision(sent, subject=ONE_LINE, body_text=HOSTILE, decided_at=NOW)
    view.decisions[declined.approval_id] = decision(declined, "dont_send", reason=HOSTILE, decided_at=NOW)
    view.outcomes[sent.approval_id].append(EmailOutcome(approval_id=sent.approval_id, message_id="m", outcome="failed",
                                                        attempt=1, detail=HOSTILE, recorded_at=NOW))
    signer = Signer(KEY)
    published = []

    async def publish(d):
        published.append(d)
        return SimpleNamespace(topic="t", partition=0, offset=0)

    async with TestClient(TestServer(ApprovalUI(view, signer, publish, clock=lambda: NOW).app())) as client:
        session = signer.session(CSM)
        yield SimpleNamespace(client=client, signer=signer, session=session, published=published,
                              cookie={"Cookie": f"ms_session={session}"},
                              pending=pending, open=open_, sent=sent, declined=declined)


async def get(ui, path, cookie=True, status=200):
    r = await ui.client.get(path, headers=ui.cookie if cookie else {}, allow_redirects=False)
    assert r.status == status, (path, r.status)
    assert r.headers["Content-Security-Policy"] == CSP and r.headers["X-Content-Type-Options"] == "nosniff"
    return await r.text()


async def test_the_inbox_shows_hostile_names_and_subjects_as_text(ui):
    page = safe(await get(ui, "/"))
    rows = [a["href"] for t, a in page.elements if t == "a"]
    assert sorted(rows) == sorted(f"/r/{r.approval_id}" for r in (ui.pending, ui.open, ui.sent, ui.declined))
    assert page.text("a").count(HOSTILE) == 4 and page.text("td").count(ONE_LINE) >= 4
    assert "Signed in as sam.rivera@vendor.example" in page.text("p")


async def test_the_request_page_shows_every_value_as_text_and_keeps_its_forms(ui):
    raw = await get(ui, f"/r/{ui.pending.approval_id}")
    page = safe(raw)
    assert page.text("title") == f"{HOSTILE} · Milestone Stream"
    assert page.text("h1") == f"{HOSTILE} pending"
    assert f"{HOSTILE} <jane@acme.example>" in page.text("p")                         # To: name <address>
    assert page.text("li") == f"{HOSTILE} — {HOSTILE}, {HOSTILE}, as of {NOW:%Y-%m-%d}"
    assert f"Drafted by {HOSTILE}; grounding check: {HOSTILE}." in page.text("p")
    assert [a["action"] for t, a in page.elements if t == "form"] == [f"/r/{ui.pending.approval_id}/decide"] * 2
    assert [a["value"] for t, a in page.elements if t == "input" and a["name"] == "action"] == ["send", "dont_send"]
    assert [b for b in page.texts["button"]] == ["Send email", "Don't send"]
    assert csrf_in(raw) == ui.signer.csrf(ui.session, ui.pending.approval_id)         # value='…', as tests read it


async def test_the_preview_is_the_escaped_email_html(ui):
    raw = await get(ui, f"/r/{ui.pending.approval_id}")
    assert f"<div class=preview>{html_from_text(ui.pending.body_text)}</div>" in raw
    assert [t for t, _ in Parsed(html_from_text(ui.pending.body_text)).elements] == ["p", "br", "br", "p", "br"]


async def test_a_one_tap_link_opens_the_request_ready_to_confirm(ui):
    for action, button in (("send", "Confirm: send email"), ("dont_send", "Confirm: don't send")):
        token = ui.signer.link_token(ui.pending.approval_id, CSM, action, time.time() + 3600)
        r = await ui.client.get(f"/t/{token}", allow_redirects=False)
        assert r.status == 200 and "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Lax" in r.headers["Set-Cookie"]
        page = safe(await r.text())
        assert button in page.texts["button"]
    token = ui.signer.link_token(ui.open.approval_id, CSM, "send", time.time() + 3600)
    page = safe(await (await ui.client.get(f"/t/{token}")).text())                  # nobody to send to yet
    assert "no executive contact on record: choose a recipient in Edit draft" in page.text("em")
    assert page.texts["button"] == ["Don't send"]


async def test_decided_pages_show_the_decision_reason_and_outcomes_as_text(ui):
    page = safe(await get(ui, f"/r/{ui.sent.approval_id}"))
    assert f"{CSM} chose to send the email on {NOW:%Y-%m-%d %H:%M} UTC." in page.text("p")
    assert f"{NOW:%Y-%m-%d %H:%M:%S} failed (attempt 1): {HOSTILE}" in page.text("li")
    assert not [a for t, a in page.elements if t == "form"]
    page = safe(await get(ui, f"/r/{ui.declined.approval_id}"))
    assert f"chose to not to send (reason: {HOSTILE}) on" in page.text("p")
    page = safe(await get(ui, f"/r/{ui.sent.approval_id}/edit", status=409))         # decided: no editor
    assert "Decided" in page.texts["h2"]


async def test_the_editor_keeps_a_hostile_subject_and_body_exactly(ui):
    raw = await get(ui, f"/r/{ui.pending.approval_id}/edit")
    page = safe(raw)
    assert page.text("title") == f"Edit · {HOSTILE} · Milestone Stream"
    assert page.text("h1") == f"Edit draft for {HOSTILE}"
    assert page.inputs() == {"csrf": csrf_in(raw), "action": "send", "subject": ONE_LINE, "body_text": None}
    assert page.text("textarea") == ui.pending.body_text                             # "</textarea>" stayed text
    page = safe(await get(ui, f"/r/{ui.open.approval_id}/edit"))
    assert set(page.inputs()) == {"csrf", "action", "recipient_name", "recipient_email", "subject", "body_text"}
    assert page.texts["button"] == ["Send edited email"]


async def test_an_edited_body_is_sent_as_escaped_html(ui):
    form = {"csrf": ui.signer.csrf(ui.session, ui.pending.approval_id), "action": "send", "subject": "S",
            "body_text": HOSTILE}
    r = await ui.client.post(f"/r/{ui.pending.approval_id}/decide", data=form, headers=ui.cookie,
                             allow_redirects=False)
    assert r.status == 303
    [sent] = ui.published
    assert sent.body_html == html_from_text(sent.body_text) and "<script>" not in sent.body_html
    assert "".join(Parsed(sent.body_html).texts["p"]) == sent.body_text.replace("\n", "").replace("\u2028", "")


async def test_problem_pages_say_what_happened_and_show_no_data(ui):
    page = safe(await get(ui, "/", cookie=False, status=401))
    assert page.text("h1") == "Sign in with your link"
    page = safe(await get(ui, f"/r/{ui.pending.approval_id}", cookie=False, status=401))
    assert page.text("p") == "Open the approval link from your notification email."
    page = safe(await get(ui, "/r/nobody's", status=404))
    assert page.text("h1") == "Not found"


def canonical_spellings(token: str) -> list[str]:
    """Spellings of a token that a lenient base64 decoder reads as the same signature."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(token[-1]) ^ 1]                                   # a spare bit of the last character
    return [token + "é", token + "=", token + "!", token[:-1] + last, token[:-1] + "é" + token[-1], " " + token]


async def test_a_link_that_is_not_exactly_one_we_issued_is_refused(ui):
    good = ui.signer.link_token(ui.pending.approval_id, CSM, "send", time.time() + 3600)
    assert (await ui.client.get(f"/t/{good}")).status == 200
    for kind, issued in (("t", good), ("s", ui.session)):                            # a one-tap link, a sign-in link
        for token in canonical_spellings(issued):
            r = await ui.client.get(f"/{kind}/{token}", allow_redirects=False)
            assert r.status == 403, (kind, token, r.status)
            assert "Set-Cookie" not in r.headers
    expired = ui.signer.link_token(ui.pending.approval_id, CSM, "send", time.time() - 1)
    r = await ui.client.get(f"/t/{expired}")
    assert r.status == 410 and safe(await r.text()).text("h1") == "This link has expired"
    csrf = ui.signer.csrf(ui.session, ui.pending.approval_id)
    for edited in canonical_spellings(csrf):
        r = await ui.client.post(f"/r/{ui.pending.approval_id}/decide", data={"csrf": edited, "action": "send"},
                                 headers=ui.cookie)
        assert r.status == 403, (edited, r.status)
    assert ui.published == []


async def test_a_token_in_the_format_issued_before_still_opens_its_request(ui):
    """base64url(compact JSON claims) "." base64url(HMAC-SHA256(key, that text)), no padding: links in
    notifications sent before itsdangerous signed them stay valid until they expire."""
    claims = {"a": ui.pending.approval_id, "c": CSM, "x": "send", "p": "link", "e": int(time.time() + 3600)}
    b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()                  # noqa: E731
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    token = f"{body}.{b64(hmac.new(KEY, body.encode(), hashlib.sha256).digest())}"
    assert ui.signer.link_token(ui.pending.approval_id, CSM, "send", claims["e"]) == token
    r = await ui.client.get(f"/t/{token}")
    assert r.status == 200 and "Confirm: send email" in await r.text()


def test_the_email_html_escapes_every_value():
    out = html_body(HOSTILE, [HOSTILE, "second"], ["Warm regards,", HOSTILE], "https://reviews.example/a?b=1&c='2'")
    parsed = safe(out)
    assert [t for t, _ in parsed.elements] == ["p", "p", "p", "p", "a", "p", "br"]
    assert parsed.texts["p"][0] == HOSTILE and parsed.texts["a"] == ["https://reviews.example/a?b=1&c='2'"]
    assert [a["href"] for t, a in parsed.elements if t == "a"] == ["https://reviews.example/a?b=1&c='2'"]
    assert out.startswith("<p>Jäné &lt;script&gt;") and out.endswith("</p>") and out.count("</p>\n<p>") == 4
    assert html_from_text("") == "" and html_from_text("a\nb\n\n\nc") == "<p>a<br>b</p>\n<p>c</p>"
    assert re.fullmatch(r"<p>[^<]*</p>", html_from_text("</textarea><script>"))


def test_an_edited_draft_is_bounded_before_it_is_published():
    """A 600,000-character subject was sent, a 700 KB body answered 500 (the decision too large for the
    broker), a U+2028 in the subject was accepted and only refused by the sender: each is a 400 now."""
    from milestone_stream.sinks.approvals.web import BODY_MAX, SUBJECT_MAX, ApprovalUI

    request = approval_request(1)
    ui = ApprovalUI(None, Signer(b"k" * 32), publish=None)  # type: ignore[arg-type]  # decision() uses neither
    ok = ui.decision(request, request.csm_email, "send", {"subject": "Well done", "body_text": "Thank you."})
    assert (ok.subject, ok.body_text) == ("Well done", "Thank you.")
    for form in ({"subject": "x" * (SUBJECT_MAX + 1)}, {"subject": "a\u2028b"}, {"subject": "a\x0bb"},
                 {"subject": "a\x85b"}, {"subject": "ok", "body_text": "b" * (BODY_MAX + 1)}):
        with pytest.raises(ValueError):
            ui.decision(request, request.csm_email, "send", form)
