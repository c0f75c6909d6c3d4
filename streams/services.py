"""The approval UI and the sender as long-running services (`milestones ui`, `milestones sender`).

Why separate processes from the Faust worker: the UI scales with CSMs (any number behind a load
balancer, each rebuilding the same view from the topics) and the sender with SMTP; neither needs
the detector's tables.
"""
from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from milestone_stream.kafka_io import producer
from milestone_stream.models import ApprovalDecision, ApprovalRequest
from milestone_stream.settings import Settings
from milestone_stream.sinks.approvals import ApprovalView
from milestone_stream.sinks.sender import Sender
from milestone_stream.sinks.signing import ACTIONS, Signer
from milestone_stream.sinks.smtp import SmtpConfig
from milestone_stream.sinks.web import ApprovalUI
from milestone_stream.topics import TopicNames

log = logging.getLogger(__name__)


def one_tap_links(settings: Settings, signer: Signer):
    """approval request → {action: URL}; each link bound to the approval, its CSM and one action."""
    def links(request: ApprovalRequest) -> dict[str, str]:
        return {action: f"{settings.ui_url}/t/{signer.link_token(request.approval_id, request.csm_email, action, request.expires_at.timestamp())}"
                for action in ACTIONS}
    return links


def sign_in_link(settings: Settings, csm_email: str, ttl: float = 12 * 3600) -> str:
    return f"{settings.ui_url}/s/{Signer(settings.signing_key()).session(csm_email, ttl)}"


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_ui(settings: Settings, bootstrap: str) -> None:
    signer = Signer(settings.signing_key())
    names = TopicNames(settings.topic_prefix)
    stop = _stop_on_signals()
    view = ApprovalView(bootstrap, names)
    await view.start()
    try:
        await view.caught_up()
        async with producer(bootstrap) as prod:
            async def publish(decision: ApprovalDecision):
                return await prod.send_and_wait(names.approval_decisions, key=decision.approval_id.encode(),
                                                value=decision.to_avro())

            ui = ApprovalUI(view, signer, publish, trusted_header=settings.ui_trusted_header,
                            secure_cookies=settings.ui_url.startswith("https://"))
            runner = web.AppRunner(ui.app(), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, settings.ui_bind, settings.ui_port).start()
            print(f"approval UI listening on {settings.ui_bind}:{settings.ui_port} ({settings.ui_url})", flush=True)
            await stop.wait()
            await runner.cleanup()
    finally:
        await view.stop()


async def serve_sender(settings: Settings, bootstrap: str) -> None:
    signer = Signer(settings.signing_key())
    smtp = SmtpConfig(host=settings.smtp_host, port=settings.smtp_port, security=settings.smtp_security,
                      username=settings.smtp_username,
                      password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                      timeout=settings.smtp_timeout)
    sender = Sender(bootstrap, TopicNames(settings.topic_prefix), f"{settings.app_id}-sender", smtp,
                    one_tap_links(settings, signer), domain=settings.message_id_domain,
                    sender_address=settings.sender_address, retry_seconds=settings.send_retry_seconds,
                    webhook=settings.slack_webhook)
    print(f"sender: SMTP {settings.smtp_host}:{settings.smtp_port} ({settings.smtp_security})", flush=True)
    await sender.run(_stop_on_signals())
