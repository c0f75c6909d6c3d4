"""The sender as a long-running service (`milestones sender`): CSM notifications and approved emails.

Why its own process: it scales with SMTP, under its own consumer group, and needs none of the
worker's tables; its state is the outcomes topic.
"""
from __future__ import annotations

from milestone_stream.settings import Settings
from milestone_stream.signals import stop_on_signals
from milestone_stream.sinks.approvals.links import one_tap_links
from milestone_stream.sinks.approvals.signing import Signer
from milestone_stream.sinks.sender.outbox import Sender
from milestone_stream.sinks.sender.slack import SlackApi
from milestone_stream.sinks.sender.smtp import SmtpConfig
from milestone_stream.topics import TopicNames


async def serve_sender(settings: Settings, bootstrap: str) -> None:
    signer = Signer(settings.signing_key())
    smtp = SmtpConfig(host=settings.smtp_host, port=settings.smtp_port, security=settings.smtp_security,
                      username=settings.smtp_username,
                      password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                      timeout=settings.smtp_timeout)
    sender = Sender(bootstrap, TopicNames(settings.topic_prefix), f"{settings.app_id}-sender", smtp,
                    one_tap_links(settings, signer), domain=settings.message_id_domain,
                    sender_address=settings.sender_address, retry_seconds=settings.send_retry_seconds,
                    webhook=settings.slack_webhook,
                    slack_api=SlackApi(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
                    if settings.slack_bot_token else None)
    print(f"sender: SMTP {settings.smtp_host}:{settings.smtp_port} ({settings.smtp_security})", flush=True)
    await sender.run(stop_on_signals())
