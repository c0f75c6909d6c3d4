"""The approval UI: a CSM's inbox, one request page with Send / Edit draft / Don't send, one-tap links.

Why so plain: server-rendered HTML without JavaScript and with a strict Content-Security-Policy.
The pages are Jinja2 templates (templates/*.html) rendered with autoescape on, so every value that
came from data is HTML-escaped where the template writes it; the one value marked safe is the
draft's preview, which is itself the email's autoescaped template (agents/drafter). A CSM is identified by a
signed session cookie (set by a one-tap link) or a trusted proxy header, sees only their own
requests, and every form carries a CSRF token bound to that session and that approval.
A one-tap link opens the request with the chosen action ready to confirm with one tap: the action
itself is a POST, so mail scanners that pre-fetch links cannot send or decline anything.
"""
from __future__ import annotations

import asyncio
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from milestone_stream.agents.drafter.template import html_from_text
from milestone_stream.deadletter import Position
from milestone_stream.schemas.records import ApprovalDecision, ApprovalRequest, Contact
from milestone_stream.sinks.approvals.sequence_view import timeline
from milestone_stream.sinks.approvals.signing import BadToken, ExpiredToken, Signer
from milestone_stream.sinks.approvals.view import ApprovalView
from milestone_stream.sinks.sender.mail import NAME_MAX, InvalidAddress, addr_spec, display_name

SESSION = "ms_session"
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}
SUBJECT_MAX = 160   # as the edit form's maxlength and the drafted subject's bound
BODY_MAX = 20_000   # characters of an edited body: the decision carries it twice (text and HTML)


Publish = Callable[[ApprovalDecision], Awaitable[Position]]  # writes a decision to approvals.decisions (acks=all)
Clock = Callable[[], datetime]
Response = TypeVar("Response", bound=web.StreamResponse)

PAGES = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")), autoescape=True,
                    trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined)


def render(template: str, **values: object) -> str:
    return PAGES.get_template(template).render(**values)


def page(template: str, status: int = 200, **values: object) -> web.Response:
    return web.Response(text=render(template, **values), status=status, content_type="text/html", headers=HEADERS)


def problem(status: int, title: str, detail: str) -> web.Response:
    return page("problem.html", status, title=title, detail=detail)


class ApprovalUI:
    def __init__(self, view: ApprovalView, signer: Signer, publish: Publish, *, trusted_header: str | None = None,
                 secure_cookies: bool = False, clock: Clock = lambda: datetime.now(UTC)) -> None:
        self.view, self.signer, self.publish = view, signer, publish
        self.trusted_header, self.secure_cookies, self.clock = trusted_header, secure_cookies, clock
        self._locks: dict[str, asyncio.Lock] = {}
        self.routes: list[web.RouteDef] = []  # more endpoints (the Slack interactions), added before app()
        self.registry = CollectorRegistry()
        self.registry.register(ApprovalMetrics(view, clock))

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.get("/", self.inbox), web.get("/r/{id}", self.show), web.get("/r/{id}/edit", self.edit),
                        web.post("/r/{id}/decide", self.decide), web.get("/t/{token}", self.tap),
                        web.get("/s/{token}", self.sign_in),
                        web.get("/healthz", self.healthz), web.get("/metrics", self.metrics), *self.routes])
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
        rows = [(r, self.view.status(r.approval_id, self.clock())) for r in self.view.inbox(who[0])]
        return page("inbox.html", csm=who[0], rows=rows)

    async def show(self, request: web.Request) -> web.Response:
        csm, key, approval = self.own(request)
        return self.request_page(approval, key)

    def request_page(self, a: ApprovalRequest, key: str, confirm: str | None = None, status: int = 200) -> web.Response:
        d = self.view.decisions.get(a.approval_id)
        shown = d if d is not None and d.decision == "send" else a  # once sent: what went out, as approved
        outcomes = [o for o in self.view.outcomes.get(a.approval_id, []) if o.purpose == "customer_email"]
        steps = timeline(self.view, a, self.clock())  # an anniversary sequence's steps (sequence_view.py)
        return page("request.html", status, a=a, state=self.view.status(a.approval_id, self.clock()), shown=shown,
                    decision=d, outcomes=outcomes, confirm=confirm, csrf=self.signer.csrf(key, a.approval_id),
                    sequence=steps, follow_ups=any(e.current and e.step != "3" for e in steps),
                    preview=Markup(html_from_text(shown.body_text or "")))  # noqa: S704 — the email template autoescaped it

    async def edit(self, request: web.Request) -> web.Response:
        csm, key, a = self.own(request)
        if self.view.status(a.approval_id, self.clock()) != "pending":
            return self.request_page(a, key, status=409)
        return page("edit.html", a=a, csrf=self.signer.csrf(key, a.approval_id), name_max=NAME_MAX)

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

    def signed_in(self, response: Response, session: str) -> Response:
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
        try:
            if not await self.take(a, csm, action, form):
                return self.request_page(a, key, status=409)
        except ValueError as exc:
            return problem(400, "Please check the draft", str(exc))
        raise web.HTTPSeeOther(f"/r/{a.approval_id}")

    async def take(self, a: ApprovalRequest, csm: str, action: str, form: Mapping[str, object]) -> bool:
        """The one decision path (web form and Slack buttons): True if this decision was written and read
        back; False if the request was no longer pending (decided before, or expired). ValueError: a
        draft or recipient the form got wrong, nothing written."""
        lock = self._locks.setdefault(a.approval_id, asyncio.Lock())
        async with lock:  # a double click on this process: the second waits, then sees the first decision
            if a.held_out or self.view.status(a.approval_id, self.clock()) != "pending":
                return False  # held out for measurement: no decision is recorded, the page says why
            decision = self.decision(a, csm, action, form)
            meta = await self.publish(decision)
            await self.view.caught_up_to(meta.topic, meta.partition, meta.offset)
        return True

    def decision(self, a: ApprovalRequest, csm: str, action: str, form: Mapping[str, object]) -> ApprovalDecision:
        now = self.clock()
        if action == "dont_send":
            return ApprovalDecision(approval_id=a.approval_id, decision="dont_send", csm_email=csm,
                                    account_id=a.account_id, reason=str(form.get("reason", "")).strip()[:300] or None,
                                    decided_at=now)
        subject, body = str(form.get("subject") or a.subject), form.get("body_text")
        if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in subject) or not subject.strip():
            raise ValueError("The subject must be one non-empty line.")
        if len(subject) > SUBJECT_MAX:
            raise ValueError(f"The subject is longer than {SUBJECT_MAX} characters.")
        if body is not None and len(str(body)) > BODY_MAX:
            raise ValueError(f"The email is longer than {BODY_MAX:,} characters.")
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
                                recipients=recipients, decided_at=now, csm_name=a.csm_name,
                                follow_ups=str(form.get("follow_ups", "")) == "1")  # the anniversary sequence


class ApprovalMetrics:
    """Approvals by status, decisions by type and emails by outcome, as the topics say (any UI process)."""

    def __init__(self, view: ApprovalView, clock: Clock) -> None:
        self.view, self.clock = view, clock

    def collect(self) -> Iterator[Metric]:
        statuses = Counter(self.view.status(i, self.clock()) for i in list(self.view.requests))
        pending = GaugeMetricFamily("milestones_approvals", "Approval requests by status", labels=["status"])
        for status in ("pending", "expired", "sending", "sent", "not sent", "failed", "unknown", "held out"):
            pending.add_metric([status], statuses.get(status, 0))
        decisions = CounterMetricFamily("milestones_decisions", "CSM decisions (first per approval)",
                                        labels=["decision"])
        by_decision = Counter(d.decision for d in list(self.view.decisions.values()))
        for decision in ("send", "dont_send"):
            decisions.add_metric([decision], by_decision.get(decision, 0))
        emails = CounterMetricFamily("milestones_emails", "Email outcomes recorded", labels=["outcome", "purpose"])
        outcomes = Counter((o.outcome, o.purpose) for trail in list(self.view.outcomes.values()) for o in trail)
        for (outcome, purpose), n in sorted(outcomes.items()):
            emails.add_metric([outcome, purpose], n)
        yield from (pending, decisions, emails)


class Refusal(web.HTTPException):
    """A clear 4xx page, raised from deep inside a handler."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        self.status_code = status
        super().__init__(text=render("problem.html", title=title, detail=detail), content_type="text/html",
                         headers=HEADERS)
