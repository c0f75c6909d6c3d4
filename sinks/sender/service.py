"""The sender as a long-running service (`milestones sender`): CSM notifications, approved emails and
the CSMs' daily digest.

Why its own process: it scales with SMTP, under its own consumer group, and needs none of the
worker's tables; its state is the outcomes topic (and, for the digest, the approvals view).
"""
from __future__ import annotations

from milestone_stream.clock import Clock
from milestone_stream.settings import ConfigError, Settings
from milestone_stream.signals import stop_on_signals
from milestone_stream.sinks.approvals.links import one_tap_links, sign_in_link
from milestone_stream.sinks.approvals.signing import Signer
from milestone_stream.sinks.approvals.view import ApprovalView
from milestone_stream.sinks.sender.digest import Digest
from milestone_stream.sinks.sender.outbox import Sender
from milestone_stream.sinks.sender.slack import SlackApi
from milestone_stream.sinks.sender.smtp import SmtpConfig
from milestone_stream.topics import TopicNames


async def serve_sender(settings: Settings, bootstrap: str) -> None:
    signer = Signer(settings.signing_key())
    try:
        clock = Clock.from_iso(settings.now)
    except ValueError:
        raise ConfigError(f"MILESTONES_NOW={settings.now!r} is not an ISO-8601 instant") from None
    names = TopicNames(settings.topic_prefix)
    smtp = SmtpConfig(host=settings.smtp_host, port=settings.smtp_port, security=settings.smtp_security,
                      username=settings.smtp_username,
                      password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                      timeout=settings.smtp_timeout)
    view = ApprovalView(bootstrap, names) if settings.digest_hour is not None else None
    digest = Digest(view, settings.digest_hour, lambda csm: sign_in_link(settings, csm, ttl=24 * 3600),
                    interval=settings.digest_interval) if view is not None and settings.digest_hour is not None \
        else None
    sender = Sender(bootstrap, names, f"{settings.app_id}-sender", smtp,
                    one_tap_links(settings, signer), domain=settings.message_id_domain,
                    sender_address=settings.sender_address, retry_seconds=settings.send_retry_seconds,
                    webhook=settings.slack_webhook,
                    slack_api=SlackApi(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
                    if settings.slack_bot_token else None, digest=digest, clock=clock.now)
    print(f"sender: SMTP {settings.smtp_host}:{settings.smtp_port} ({settings.smtp_security})"
          + (f"; Slack {settings.slack_api_url}" if settings.slack_bot_token else "")
          + (f"; daily digest from {settings.digest_hour:02d}:00 UTC" if digest else ""), flush=True)
    if view is None:
        await sender.run(stop_on_signals())
        return
    await view.start()
    try:
        await sender.run(stop_on_signals())
    finally:
        await view.stop()
