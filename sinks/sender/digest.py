"""The CSM's daily digest: one email (and one Slack message, when Slack is configured) per CSM per day,
listing the approval requests still pending after more than a day and those about to expire.

Why in the sender: it is one more message to deliver once, so it takes the sender's outbox protocol
(attempting → call → outcome on `emails.outcomes`, purposes `csm_digest` and `csm_digest_slack`)
under a deterministic id per CSM and day (`digest_id`): a restart, a second tick or another sender
process finds the outcome and sends nothing again; a crash between hand-off and record is `unknown`,
never a second digest. Only the sender process that holds partition 0 of `approvals.requests` sends
digests, so a group of senders sends each once.
Why a view: which requests are pending and when they expire is the approval UI's view of the topics
(`ApprovalView`, read from the beginning); expiry is the request's `expires_at` (drafting's
`approval_ttl_hours`), after which the view calls it `expired` and no decision is taken any more.
When: every `interval` seconds the injected clock (`MILESTONES_NOW` in tests and demos) is read; from
`hour` (UTC) on, today's digest is due. A sender started later that day sends it then; days missed
while no sender ran are not sent afterwards.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from milestone_stream.ids import stable_id
from milestone_stream.schemas.records import ApprovalRequest
from milestone_stream.sinks.approvals.view import ApprovalView
from milestone_stream.sinks.sender import mail, slack

if TYPE_CHECKING:
    from milestone_stream.sinks.sender.outbox import Sender

log = logging.getLogger(__name__)
WAITING = timedelta(days=1)    # a pending request older than this is listed as waiting
EXPIRING = timedelta(days=1)   # a pending request expiring within this is listed as expiring

Due = dict[str, tuple[list[ApprovalRequest], list[ApprovalRequest]]]


def digest_id(csm_email: str, day: str) -> str:
    """One id per CSM and day (UTC): the key of the digest's outcomes."""
    return stable_id("digest", csm_email.lower(), day)


def due(view: ApprovalView, now: datetime) -> Due:
    """CSM (lower-cased) → (pending for more than a day, expiring within a day), oldest first. A request
    in both lists is listed once, as expiring."""
    found: Due = {}
    for r in sorted(list(view.requests.values()), key=lambda r: r.created_at):
        if view.status(r.approval_id, now) != "pending":
            continue
        stale, expiring = found.setdefault(r.csm_email.lower(), ([], []))
        if r.expires_at - now <= EXPIRING:
            expiring.append(r)
        elif now - r.created_at > WAITING:
            stale.append(r)
    return {csm: lists for csm, lists in found.items() if lists[0] or lists[1]}


class Digest:
    def __init__(self, view: ApprovalView, hour: int, inbox_link: Callable[[str], str], *,
                 interval: float = 60.0) -> None:
        self.view, self.hour, self.inbox_link, self.interval = view, hour, inbox_link, interval
        self.ticks = 0  # checks made while this process sent digests (tests await it)

    async def run(self, sender: Sender, stop: asyncio.Event) -> None:
        await self.view.caught_up()  # a digest lists what the topics hold, not what was read so far
        while not stop.is_set():
            if sender.owns_digest() and sender.loaded.is_set():
                try:
                    await self.tick(sender)
                except Exception:  # noqa: BLE001 — no record is lost: the next tick tries again from the outcomes
                    log.exception("digest: a check failed; trying again at the next one")
                self.ticks += 1
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass

    async def tick(self, sender: Sender) -> None:
        now = sender.clock()
        if now.hour < self.hour:
            return
        day = now.date().isoformat()
        for stale, expiring in due(self.view, now).values():
            if not (sender.owns_digest() and sender.loaded.is_set()):
                return  # partition 0 went elsewhere mid-tick: its new holder sends the rest, once
            await self.send(sender, day, now, stale, expiring)

    async def send(self, sender: Sender, day: str, now: datetime, stale: list[ApprovalRequest],
                   expiring: list[ApprovalRequest]) -> None:
        """One CSM's digest of the day: the email, then the Slack message; each at most once."""
        email = (stale or expiring)[0].csm_email
        did, link = digest_id(email, day), self.inbox_link(email)
        await sender.email_once(did, "csm_digest", None, lambda: mail.digest(
            did, email, day, stale, expiring, link, sender.domain, sender.sender_address, now))
        if sender.slack is not None:
            api, (text, blocks) = sender.slack, slack.digest_message(day, stale, expiring, link)
            await sender.once(did, "csm_digest_slack", None, lambda: api.post_direct(email, text, blocks),
                              slack.RETRY_SECONDS)
