"""The approval UI: a CSM's inbox, one request page with Send / Edit draft / Don't send, one-tap links.

Why so plain: server-rendered HTML without JavaScript and with a strict Content-Security-Policy;
every value that came from data is HTML-escaped where it is written. A CSM is identified by a
signed session cookie (set by a one-tap link) or a trusted proxy header, sees only their own
requests, and every form carries a CSRF token bound to that session and that approval.
A one-tap link opens the request with the chosen action ready to confirm with one tap: the action
itself is a POST, so mail scanners that pre-fetch links cannot send or decline anything.
"""
from __future__ import annotations

import asyncio
import html
from collections import Counter
from datetime import datetime, timezone

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from milestone_stream.schemas.records import ApprovalDecision, ApprovalRequest, Contact
from milestone_stream.sinks.approvals.view import ApprovalView
from milestone_stream.agents.drafter.template import html_from_text
from milestone_stream.sinks.sender.mail import NAME_MAX, InvalidAddress, addr_spec, display_name
from milestone_stream.sinks.approvals.signing import BadToken, ExpiredToken, Signer

SESSION = "ms_session"
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1d2330}
a{color:#2350c8}table{border-collapse:collapse;width:100%}td,th{padding:.4rem;border-bottom:1px solid #e3e6ec;text-align:left}
.badge{padding:.1rem .5rem;border-radius:1rem;background:#eef;font-size:.85em}.pending{background:#fff4cc}
.sent{background:#d8f5df}.failed,.unknown{background:#ffd9d6}.preview{border:1px solid #d5d9e2;padding:1rem;border-radius:.5rem}
.note{background:#fff4cc;padding:.5rem;border-radius:.3rem}button,a.button{font-size:1rem;padding:.5rem 1.1rem;margin:.2rem;display:inline-block;border:1px solid #8a93a6;
border-radius:.3rem;background:#f4f5f8;color:#1d2330;text-decoration:none}
input[type=text],textarea{width:100%;font:inherit}textarea{height:16rem}.muted{color:#667}"""
e = html.escape


HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}


def document(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            f"<title>{e(title)} · Milestone Stream</title><style>{STYLE}</style></head><body>{body}</body></html>")


def page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(text=document(title, body), status=status, content_type="text/html", headers=HEADERS)


def problem(status: int, title: str, detail: str) -> web.Response:
    return page(title, f"<h1>{e(title)}</h1><p>{e(detail)}</p>", status)


class ApprovalUI:
    def __init__(self, view: ApprovalView, signer: Signer, publish, *, trusted_header: str | None = None,
                 secure_cookies: bool = False, clock=lambda: datetime.now(timezone.utc)) -> None:
        self.view, self.signer, self.publish = view, signer, publish
        self.trusted_header, self.secure_cookies, self.clock = trusted_header, secure_cookies, clock
        self._locks: dict[str, asyncio.Lock] = {}
        self.registry = CollectorRegistry()
        self.registry.register(ApprovalMetrics(view, clock))

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.get("/", self.inbox), web.get("/r/{id}", self.show), web.get("/r/{id}/edit", self.edit),
                        web.post("/r/{id}/decide", self.decide), web.get("/t/{token}", self.tap),
                        web.get("/s/{token}", self.sign_in),
                        web.get("/healthz", self.healthz), web.get("/metrics", self.metrics)])
        return app

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "approvals": len(self.view.requests)})

    # identity ------------------------------------------------------------------------------------
    def identity(self, request: web.Request) -> tuple[str, str] | None:
        """(csm email, session key the CSRF tokens are bound to), or None."""
        if self.trusted_header and request.headers.get(self.trusted_header):
            email = request.headers[self.trusted_header].strip()
            return email, f"header:{email}"
        token = request.cookies.get(SESSION)
        try:
            return (self.signer.verify("session", token)["c"], token) if token else None
        except BadToken:
            return None

    def own(self, request: web.Request) -> tuple[str, str, ApprovalRequest]:
        who = self.identity(request)
        if who is None:
            raise Refusal(401, "Sign in with your link", "Open the approval link from your notification email.")
        approval = self.view.requests.get(request.match_info["id"])
        if approval is None or approval.csm_email.lower() != who[0].lower():
            raise Refusal(404, "Not found", "There is no approval request here for you.")
        return who[0], who[1], approval

    # pages ---------------------------------------------------------------------------------------
    async def inbox(self, request: web.Request) -> web.Response:
        who = self.identity(request)
        if who is None:
            return problem(401, "Sign in with your link", "Open the approval link from your notification email.")
        rows = "".join(
            f"<tr><td><a href='/r/{e(r.approval_id)}'>{e(r.account_name)}</a></td><td>{e(r.subject)}</td>"
            f"<td>{badge(self.view.status(r.approval_id, self.clock()))}</td>"
            f"<td class=muted>{r.created_at:%Y-%m-%d %H:%M}</td></tr>" for r in self.view.inbox(who[0]))
        return page("Inbox", f"<h1>Milestones to celebrate</h1><p class=muted>Signed in as {e(who[0])}</p>"
                             f"<table><tr><th>Account</th><th>Draft</th><th>Status</th><th>Drafted</th></tr>"
                             f"{rows or '<tr><td colspan=4>Nothing waiting for you.</td></tr>'}</table>")

    async def show(self, request: web.Request) -> web.Response:
        csm, key, approval = self.own(request)
        return self.request_page(approval, key)

    def request_page(self, a: ApprovalRequest, key: str, confirm: str | None = None, status: int = 200) -> web.Response:
        state = self.view.status(a.approval_id, self.clock())
        csrf = self.signer.csrf(key, a.approval_id)
        notes = "".join(f"<p class=note>{e(n)}</p>" for n in a.policy_notes)
        d = self.view.decisions.get(a.approval_id)
        shown = d if d is not None and d.decision == "send" else a  # once sent: what went out, as approved
        to = ", ".join(f"{e(c.name)} &lt;{e(c.email)}&gt;" for c in shown.recipients) or \
            "<em>no executive contact on record: choose a recipient in Edit draft</em>"
        cites = "".join(f"<li>{e(c.figure)} — {e(c.source)}, {e(c.record)}, as of {c.as_of:%Y-%m-%d}</li>" for c in a.citations)
        body = html_from_text(shown.body_text or "")
        actions = ""
        if state == "pending":
            send = ("" if not a.recipients else
                    f"<form method=post action='/r/{e(a.approval_id)}/decide' style='display:inline'>"
                    f"<input type=hidden name=csrf value='{e(csrf)}'><input type=hidden name=action value=send>"
                    f"<button name=go value=send{' autofocus' if confirm == 'send' else ''}>"
                    f"{'Confirm: send email' if confirm == 'send' else 'Send email'}</button></form>")
            actions = (f"<h2>Your decision</h2>{send}<a class=button href='/r/{e(a.approval_id)}/edit'>Edit draft</a><form method=post action='/r/{e(a.approval_id)}/decide'>"
                       f"<input type=hidden name=csrf value='{e(csrf)}'><input type=hidden name=action value=dont_send>"
                       f"<input type=text name=reason placeholder='Reason (optional)' maxlength=300>"
                       f"<button name=go value=dont_send>{'Confirm: d' if confirm == 'dont_send' else 'D'}on't send</button></form>")
        else:
            actions = self.decided(a)
        return page(a.account_name, f"<p><a href='/'>← Inbox</a></p><h1>{e(a.account_name)} {badge(state)}</h1>{notes}"
                                    f"<p><b>To:</b> {to}<br><b>Subject:</b> {e(shown.subject or '')}</p>"
                                    f"<div class=preview>{body}</div>{actions}<h2>Where the figures come from</h2>"
                                    f"<ul>{cites}</ul><p class=muted>Drafted by {e(a.drafted_by)}; grounding check: "
                                    f"{e(a.guard_verdict)}. Links expire {a.expires_at:%Y-%m-%d %H:%M} UTC.</p>", status)

    def decided(self, a: ApprovalRequest) -> str:
        d = self.view.decisions.get(a.approval_id)
        if d is None:
            return "<p class=note>This request expired without a decision.</p>"
        what = "send the email" if d.decision == "send" else "not to send"
        reason = f" (reason: {e(d.reason)})" if d.reason else ""
        outcomes = "".join(f"<li>{o.recorded_at:%Y-%m-%d %H:%M:%S} {e(o.outcome)} (attempt {o.attempt})"
                           f"{': ' + e(o.detail) if o.detail else ''}</li>"
                           for o in self.view.outcomes.get(a.approval_id, []) if o.purpose == "customer_email")
        return (f"<h2>Decided</h2><p>{e(d.csm_email)} chose to {what}{reason} on {d.decided_at:%Y-%m-%d %H:%M} UTC.</p>"
                f"<ul>{outcomes}</ul>")

    async def edit(self, request: web.Request) -> web.Response:
        csm, key, a = self.own(request)
        if self.view.status(a.approval_id, self.clock()) != "pending":
            return self.request_page(a, key, status=409)
        pick = ("" if a.recipients else
                "<p class=note>No executive contact on record: who should receive this note?</p>"
                f"<label>Recipient name <input type=text name=recipient_name required maxlength={NAME_MAX}></label>"
                "<label>Recipient email <input type=email name=recipient_email required maxlength=254></label>")
        return page(f"Edit · {a.account_name}",
                    f"<p><a href='/r/{e(a.approval_id)}'>← Back</a></p><h1>Edit draft for {e(a.account_name)}</h1>"
                    f"<form method=post action='/r/{e(a.approval_id)}/decide'>"
                    f"<input type=hidden name=csrf value='{e(self.signer.csrf(key, a.approval_id))}'>"
                    f"<input type=hidden name=action value=send>{pick}"
                    f"<label>Subject <input type=text name=subject value='{e(a.subject)}' required maxlength=160></label>"
                    f"<label>Body <textarea name=body_text required>{e(a.body_text)}</textarea></label>"
                    f"<button name=go value=send>Send edited email</button></form>")

    async def tap(self, request: web.Request) -> web.Response:
        """A one-tap link: signs the CSM in, then shows the request with that action ready to confirm."""
        try:
            claims = self.signer.verify("link", request.match_info["token"])
        except ExpiredToken:
            return problem(410, "This link has expired", "Open the request from your inbox to see where it stands.")
        except BadToken as exc:
            return problem(403, "This link is not valid", f"{exc}. Nothing was sent.")
        a = await self.view.request(claims["a"])
        if a is None or a.csm_email.lower() != claims["c"].lower():
            return problem(404, "Not found", "There is no approval request here for you.")
        session = self.signer.session(claims["c"])
        if self.view.status(a.approval_id, self.clock()) != "pending":
            response = self.request_page(a, session, status=409)  # single use: a second tap shows the decision
        elif claims["x"] == "edit":
            raise self.signed_in(web.HTTPSeeOther(f"/r/{a.approval_id}/edit"), session)
        else:
            response = self.request_page(a, session, confirm=claims["x"])
        return self.signed_in(response, session)

    def signed_in(self, response, session: str):
        response.set_cookie(SESSION, session, httponly=True, samesite="Lax", secure=self.secure_cookies, path="/")
        return response

    async def sign_in(self, request: web.Request) -> web.Response:
        """A signed sign-in link (printed by `milestones up`, or sent by an operator): sets the session."""
        token = request.match_info["token"]
        try:
            self.signer.verify("session", token)
        except ExpiredToken:
            return problem(410, "This link has expired", "Ask for a new sign-in link.")
        except BadToken as exc:
            return problem(403, "This link is not valid", str(exc))
        raise self.signed_in(web.HTTPSeeOther("/"), token)

    async def decide(self, request: web.Request) -> web.Response:
        csm, key, a = self.own(request)
        form = await request.post()
        if not self.signer.check_csrf(str(form.get("csrf", "")), key, a.approval_id):
            return problem(403, "Form expired", "The form's security token is missing or invalid. Nothing was sent.")
        action = form.get("action")
        if action not in ("send", "dont_send"):
            return problem(400, "Unknown action", "Choose Send or Don't send.")
        lock = self._locks.setdefault(a.approval_id, asyncio.Lock())
        async with lock:  # a double click on this process: the second waits, then sees the first decision
            if self.view.status(a.approval_id, self.clock()) != "pending":
                return self.request_page(a, key, status=409)
            try:
                decision = self.decision(a, csm, action, form)
            except ValueError as exc:
                return problem(400, "Please check the draft", str(exc))
            meta = await self.publish(decision)
            await self.view.caught_up_to(meta.topic, meta.partition, meta.offset)
        raise web.HTTPSeeOther(f"/r/{a.approval_id}")

    def decision(self, a: ApprovalRequest, csm: str, action: str, form) -> ApprovalDecision:
        now = self.clock()
        if action == "dont_send":
            return ApprovalDecision(approval_id=a.approval_id, decision="dont_send", csm_email=csm, account_id=a.account_id,
                                    reason=str(form.get("reason", "")).strip()[:300] or None, decided_at=now)
        subject, body = str(form.get("subject") or a.subject), form.get("body_text")
        if "\r" in subject or "\n" in subject or not subject.strip():
            raise ValueError("The subject must be one non-empty line.")
        recipients = list(a.recipients)
        if not recipients:
            # the email: exactly one plain address (no "Name <addr>", no list); the name: cleaned as the
            # sender cleans every display name, so what the CSM sees decided is what is sent
            name = display_name(str(form.get("recipient_name", "")))
            try:
                email = addr_spec(str(form.get("recipient_email", "")).strip())
            except InvalidAddress:
                raise ValueError("Give one email address only, like jane@example.com (no name, no list).") from None
            if not name:
                raise ValueError("Give the recipient's name.")
            recipients = [Contact(name=name, email=email, role="chosen by CSM")]
        edited = body is not None
        body_text = str(body).replace("\r\n", "\n") if edited else a.body_text
        return ApprovalDecision(approval_id=a.approval_id, decision="send", csm_email=csm, account_id=a.account_id,
                                subject=subject.strip(), body_text=body_text,
                                body_html=html_from_text(body_text) if edited else a.body_html,
                                recipients=recipients, decided_at=now, csm_name=a.csm_name)


class ApprovalMetrics:
    """Approvals by status, decisions by type and emails by outcome, as the topics say (any UI process)."""

    def __init__(self, view: ApprovalView, clock) -> None:
        self.view, self.clock = view, clock

    def collect(self):
        statuses = Counter(self.view.status(i, self.clock()) for i in list(self.view.requests))
        pending = GaugeMetricFamily("milestones_approvals", "Approval requests by status", labels=["status"])
        for status in ("pending", "expired", "sending", "sent", "not sent", "failed", "unknown"):
            pending.add_metric([status], statuses.get(status, 0))
        decisions = CounterMetricFamily("milestones_decisions", "CSM decisions (first per approval)", labels=["decision"])
        by_decision = Counter(d.decision for d in list(self.view.decisions.values()))
        for decision in ("send", "dont_send"):
            decisions.add_metric([decision], by_decision.get(decision, 0))
        emails = CounterMetricFamily("milestones_emails", "Email outcomes recorded", labels=["outcome", "purpose"])
        outcomes = Counter((o.outcome, o.purpose) for trail in list(self.view.outcomes.values()) for o in trail)
        for (outcome, purpose), n in sorted(outcomes.items()):
            emails.add_metric([outcome, purpose], n)
        yield from (pending, decisions, emails)


def badge(state: str) -> str:
    return f"<span class='badge {e(state.replace(' ', '-'))}'>{e(state)}</span>"


class Refusal(web.HTTPException):
    """A clear 4xx page, raised from deep inside a handler."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        self.status_code = status
        super().__init__(text=document(title, f"<h1>{e(title)}</h1><p>{e(detail)}</p>"), content_type="text/html",
                         headers=HEADERS)
