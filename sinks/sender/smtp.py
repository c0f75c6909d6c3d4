"""Handing one message to SMTP with `aiosmtplib`, and saying what is known about the outcome.

Why step by step: a failure before the DATA command means nothing was delivered (safe to retry); a
reply to DATA is the server's answer (4xx retry, 5xx permanent); but a dropped connection or a
time-out after the message was handed over leaves it unknowable — the caller records `unknown` and
never re-sends.
"""
from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib


class NotDelivered(Exception):
    """Known not delivered; `permanent` says whether a retry could help."""

    def __init__(self, detail: str, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.permanent = permanent
        self.retry_after = retry_after  # seconds the service asked us to wait (an HTTP 429's Retry-After)


class DeliveryUnknown(Exception):
    """The message may or may not have been accepted."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: str = "none"       # none | starttls | tls
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0


async def deliver(config: SmtpConfig, msg: EmailMessage, sender: str, recipients: list[str]) -> str:
    """Send; returns the server's reply to DATA. Raises NotDelivered or DeliveryUnknown."""
    smtp = aiosmtplib.SMTP(hostname=config.host, port=config.port, use_tls=config.security == "tls",
                           start_tls=config.security == "starttls", timeout=config.timeout)
    try:
        try:
            await smtp.connect()
            if config.username:
                await smtp.login(config.username, config.password or "")
            await smtp.mail(sender)
            for rcpt in recipients:
                await smtp.rcpt(rcpt)
        except aiosmtplib.SMTPResponseException as exc:
            raise NotDelivered(f"{exc.code} {exc.message}", permanent=exc.code >= 500) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise NotDelivered(f"before DATA: {type(exc).__name__}: {exc}", permanent=False) from None
        try:
            reply = await smtp.data(msg.as_bytes())
        except aiosmtplib.SMTPResponseException as exc:
            raise NotDelivered(f"{exc.code} {exc.message}", permanent=exc.code >= 500) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryUnknown(f"during DATA: {type(exc).__name__}: {exc}") from None
        return f"{reply.code} {reply.message}"
    finally:
        smtp.close()
