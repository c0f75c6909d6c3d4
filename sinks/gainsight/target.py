"""What an outbound CRM target is: the sent email it records, and the three ways a call can end.

Why a protocol: the stage (service.py) owns exactly-once — the attempt → call → outcome records, the
pace, retries, dead letters — and a target only knows its API. Gainsight CS Timeline (timeline.py) is
the first; a Salesforce write-back later is one module with a `name`, a `calls_per_minute` and a
`record` that raises `NotRecorded` or `RecordUnknown`, handed to the same stage.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from milestone_stream.schemas.records import Contact


@dataclass(frozen=True)
class SentEmail:
    """A customer email the sender reported `sent`, with what the CRM should show of it."""

    approval_id: str
    account_id: str
    account_name: str
    csm_email: str
    csm_name: str | None
    subject: str
    body_text: str
    sent_at: datetime
    message_id: str
    recipients: list[Contact] = field(default_factory=list)
    # what was sent: the approved customer email, or the CSM's risk alert (approval_id is then the signal_id)
    purpose: str = "customer_email"


class NotRecorded(Exception):
    """Known not recorded: `permanent` (the target refused it: a 4xx other than 429) or not (429, 5xx,
    unreachable), with the target's `Retry-After` in seconds when it gave one."""

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent, self.retry_after = permanent, retry_after


class RecordUnknown(Exception):
    """The request may have reached the target and we cannot know (time-out, connection dropped)."""


class Target(Protocol):
    #: the outcomes' `target` and the dead letters' stage, e.g. "gainsight_timeline"
    name: str
    #: the target's documented rate limit; the stage never calls faster
    calls_per_minute: float

    def external_id(self, email: SentEmail) -> str:
        """The id that makes a repeated call recognisable to the target (never random)."""

    async def record(self, email: SentEmail) -> str:
        """Record the email; returns the target's answer (for the outcome's detail) or raises
        `NotRecorded` / `RecordUnknown`."""
