"""The CSM notification as a Slack-compatible incoming webhook (a JSON `{"text": …}` POST).

Outcomes are classified like SMTP's: refused connection or 429/5xx is known not delivered (retried),
another 4xx is permanent, and a time-out or dropped connection after the request was sent is unknown.
"""
from __future__ import annotations

import aiohttp

from milestone_stream.schemas.records import ApprovalRequest
from milestone_stream.sinks.sender.smtp import DeliveryUnknown, NotDelivered


def summary(request: ApprovalRequest, links: dict[str, str]) -> str:
    """The message text, in Slack's mrkdwn: data escaped (&, <, >), links as <url|label>."""
    to = escape(request.recipients[0].name) if request.recipients else "a recipient you choose"
    notes = "".join(f"\n> {escape(n)}" for n in request.policy_notes)
    return (f"Heads up! {escape(request.account_name)} just hit a milestone. I've drafted a note to {to}: "
            f"\"{escape(request.subject)}\"{notes}\n<{links['send']}|Send email> · <{links['edit']}|Edit draft> · "
            f"<{links['dont_send']}|Don't send>")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


async def post(url: str, text: str, timeout: float = 10.0) -> str:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.post(url, json={"text": text}) as response:
                if response.status < 300:
                    return f"{response.status} {await response.text()}"[:200]
                raise NotDelivered(f"webhook answered {response.status}",
                                   permanent=response.status < 500 and response.status != 429)
    except aiohttp.ClientConnectorError as exc:
        raise NotDelivered(f"webhook unreachable: {exc}", permanent=False) from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise DeliveryUnknown(f"webhook: {type(exc).__name__}: {exc}") from None
