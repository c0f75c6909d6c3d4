"""The approval half of the product, for tests: a real SMTP server (aiosmtpd) and the UI and sender
running against the real broker, in this process, on free loopback ports."""
from __future__ import annotations

import asyncio
import email
import re
import threading
from datetime import UTC, datetime, timedelta
from email.policy import default

from aiohttp import web
from aiosmtpd.controller import Controller

from milestone_stream.dev.kafka_local import free_port
from milestone_stream.ids import stable_id
from milestone_stream.kafka_io import producer, read_topic, wait_for
from milestone_stream.schemas.records import (
    ApprovalDecision,
    ApprovalRequest,
    Citation,
    Contact,
    DeadLetter,
    EmailOutcome,
)
from milestone_stream.settings import Settings
from milestone_stream.sinks.approvals.links import one_tap_links, sign_in_link
from milestone_stream.sinks.approvals.signing import Signer
from milestone_stream.sinks.approvals.slack import SlackInteractions
from milestone_stream.sinks.approvals.view import ApprovalView
from milestone_stream.sinks.approvals.web import ApprovalUI
from milestone_stream.sinks.sender.digest import Digest
from milestone_stream.sinks.sender.outbox import Sender
from milestone_stream.sinks.sender.slack import SlackApi
from milestone_stream.sinks.sender.smtp import SmtpConfig

from support import slack_api

NOW = datetime.now(UTC)
JANE = Contact(name="Jane Doe", email="jane@acme.example", role="executive_sponsor")


def approval_request(n: int, csm="sam.rivera@vendor.example", recipients=(JANE,), **kw) -> ApprovalRequest:
    fields = dict(approval_id=stable_id("approval", f"m-{n}"), milestone_ids=[f"m-{n}"], account_id=f"acct-{n}",
                  account_name=f"Account {n}", csm_email=csm, recipients=list(recipients),
                  subject=f"Congratulations, Account {n}: 10,000 emails sent",
                  body_text="Dear Jane,\n\nCongratulations on 10,000 emails sent.\n\nWarm regards,\nSam Rivera\n",
                  body_html="<p>Dear Jane,</p><p>Congratulations on 10,000 emails sent.</p>",
                  citations=[Citation(figure="milestone: 10,000 emails sent", source="platform.mailer",
                                      record="event e-1 (milestone abc)", as_of=NOW)],
                  drafted_by="template", guard_verdict="passed", created_at=NOW, expires_at=NOW + timedelta(days=7))
    return ApprovalRequest(**{**fields, **kw})


def decision(req: ApprovalRequest, what="send", **kw) -> ApprovalDecision:
    fields = dict(approval_id=req.approval_id, decision=what, csm_email=req.csm_email, account_id=req.account_id,
                  subject=req.subject, body_text=req.body_text, body_html=req.body_html,
                  recipients=list(req.recipients), decided_at=datetime.now(UTC))
    return ApprovalDecision(**{**fields, **kw})


SECRET = "test-secret-" + "x" * 32
DOMAIN = "milestones.test"


class Mailbox:
    """An aiosmtpd handler: keeps what it accepts; `reply` and `release` let a test shape each DATA."""

    def __init__(self) -> None:
        self.received: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.reply = "250 OK"
        self.release = threading.Event()
        self.release.set()
        self.in_data = threading.Event()

    async def handle_DATA(self, server, session, envelope) -> str:
        """Accept (or refuse) at once, but hold the reply until `release` — as a slow MTA that has
        already queued the message would."""
        if self.reply.startswith("250"):
            self.received.append(email.message_from_bytes(envelope.content, policy=default))
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.in_data.set()
        while not self.release.is_set():
            await asyncio.sleep(0.02)
        return self.reply

    def customer_emails(self) -> list:
        return [m for m in self.received if not m["Message-ID"].startswith("<notify.")]

    def notifications(self) -> list:
        return [m for m in self.received if m["Message-ID"].startswith("<notify.")]


class SmtpServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.mailbox = Mailbox()
        self._controller: Controller | None = None

    def start(self) -> SmtpServer:
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller:
            self._controller.stop()
            self._controller = None


def settings(topics, smtp_port: int, ui_port: int = 0) -> Settings:
    return Settings.from_env({"MILESTONES_SECRET": SECRET, "MILESTONES_TOPIC_PREFIX": topics.prefix,
                              "MILESTONES_UI_URL": f"http://127.0.0.1:{ui_port}",
                              "MILESTONES_SMTP_PORT": str(smtp_port),
                              "MILESTONES_MESSAGE_ID_DOMAIN": DOMAIN})


class ApprovalStack:
    """UI (aiohttp on a free port) and sender (its own consumer group), both on this event loop."""

    def __init__(self, bootstrap: str, topics, smtp_port: int, *, backoff=(0.2, 1.0), retry_seconds=60,
                 webhook: str | None = None, slack_url: str | None = None, digest_hour: int | None = None,
                 clock=None, digest_interval: float = 0.3) -> None:
        self.bootstrap, self.topics = bootstrap, topics
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = settings(topics, smtp_port, self.port)
        self.signer = Signer(SECRET.encode())
        self.sender = Sender(bootstrap, topics, f"{topics.prefix}sender",
                             SmtpConfig(host="127.0.0.1", port=smtp_port, timeout=10),
                             one_tap_links(self.settings, self.signer), domain=DOMAIN,
                             retry_seconds=retry_seconds, backoff=backoff, webhook=webhook,
                             slack_api=SlackApi(slack_api.TOKEN, slack_url) if slack_url else None,
                             **({"clock": clock} if clock else {}))
        self.digest_hour, self.digest_interval = digest_hour, digest_interval
        self.slack_url = slack_url
        self._stop = asyncio.Event()

    async def __aenter__(self) -> ApprovalStack:
        self.view = ApprovalView(self.bootstrap, self.topics)
        await self.view.start()
        if self.digest_hour is not None:  # as `milestones sender` runs it, on the same view here
            self.sender.digest = Digest(self.view, self.digest_hour, lambda csm: sign_in_link(self.settings, csm),
                                        interval=self.digest_interval)
        self._producer_cm = producer(self.bootstrap)
        prod = await self._producer_cm.__aenter__()

        async def publish(decision: ApprovalDecision):
            return await prod.send_and_wait(self.topics.approval_decisions, key=decision.approval_id.encode(),
                                            value=decision.to_avro())

        self.ui = ApprovalUI(self.view, self.signer, publish)
        if self.slack_url:  # the UI's Slack endpoint, as `milestones ui` adds it
            self.ui.routes += SlackInteractions(self.ui, slack_api.SIGNING_SECRET,
                                                SlackApi(slack_api.TOKEN, self.slack_url)).routes()
        self._runner = web.AppRunner(self.ui.app())
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._sender_task = asyncio.create_task(self.sender.run(self._stop))
        return self

    async def __aexit__(self, *exc) -> None:
        self._stop.set()
        await asyncio.wait_for(self._sender_task, 30)
        await self._runner.cleanup()
        await self._producer_cm.__aexit__(None, None, None)
        await self.view.stop()


async def outcomes(bootstrap: str, topics, purpose: str = "customer_email") -> list[EmailOutcome]:
    found = [EmailOutcome.from_avro(r.value) for r in await read_topic(bootstrap, topics.email_outcomes, idle_ms=500)]
    return [o for o in found if o.purpose == purpose]


async def dead_letters(bootstrap: str, topics) -> list[DeadLetter]:
    return [DeadLetter.from_avro(r.value) for r in await read_topic(bootstrap, topics.deadletter, idle_ms=500)]


async def until_outcome(bootstrap: str, topics, approval_id: str, outcome: str, timeout: float = 60,
                        purpose: str = "customer_email"):
    async def seen():
        return [o for o in await outcomes(bootstrap, topics, purpose)
                if o.approval_id == approval_id and o.outcome == outcome]
    return await wait_for(seen, timeout, interval=0.3, what=f"outcome {outcome} for {approval_id}")


def links_in(message) -> dict[str, str]:
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    return {label: url for label, url in re.findall(r"^(Send email|Edit draft|Don't send):\s+(\S+)$", text, re.M)}


def csrf_in(page: str) -> str:
    return re.search(r"name=csrf value='([^']+)'", page).group(1)
