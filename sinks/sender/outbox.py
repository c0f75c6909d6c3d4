"""The sender: approved decisions become exactly one email; new requests notify their CSM (by email,
by a Slack-compatible webhook, and by a Slack direct message with buttons, when configured).

Protocol, per message (customer email or CSM notification), against `emails.outcomes`:
1. `attempting` is written and acknowledged by the broker *before* the message goes to SMTP;
2. then `sent`, `retrying` (a transient failure, known not delivered: tried again with backoff),
   or `failed` (permanent, or retries exhausted: also dead-lettered);
3. a message whose last record is `attempting` was cut off by a crash between hand-off and record:
   it is recorded `unknown` and shown to the CSM — never sent a second time.
A Slack post follows the same protocol (`csm_slack`); once the request is decided (in Slack or the
web UI) the post is updated to show the decision (`csm_slack_update`, which is safe to repeat).
A request held out for measurement (`held_out`, agents/drafter/holdout.py) notifies nobody, and a
`send` decision for one — from any path, even one written straight to the topic — is recorded
`not_sent` with the reason instead of being sent: the sender follows `approvals.requests` to know
which requests are held out, reading up to the topic's current end before deciding on one it has
not seen.
The input offset is committed only after the outcome is recorded. The outcomes topic is the
sender's whole state: each sender process follows all of it while it runs (what the other processes
record too) and catches up at every partition assignment, so any sender process can take over.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from milestone_stream.agents.drafter import sequence
from milestone_stream.deadletter import DeadLetters, Parkable, decode_or_park
from milestone_stream.follow import Follower
from milestone_stream.kafka_io import producer
from milestone_stream.schemas.records import ApprovalDecision, ApprovalRequest, EmailOutcome, Outcome, Purpose
from milestone_stream.sinks.records import handle_each, stage_consumer
from milestone_stream.sinks.sender import alerts, mail, slack, webhook
from milestone_stream.sinks.sender.smtp import DeliveryUnknown, NotDelivered, SmtpConfig, deliver

if TYPE_CHECKING:
    from milestone_stream.sinks.sender.digest import Digest
from milestone_stream.topics import TopicNames

log = logging.getLogger(__name__)


class Sender:
    def __init__(self, bootstrap: str, names: TopicNames, group_id: str, smtp: SmtpConfig,
                 links: Callable[[ApprovalRequest], dict[str, str]], *,
                 domain: str, sender_address: str | None = None, retry_seconds: float = 3600,
                 backoff: tuple[float, float] = (1.0, 60.0), webhook: str | None = None,
                 slack_api: slack.SlackApi | None = None, digest: Digest | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.bootstrap, self.names, self.group_id, self.smtp = bootstrap, names, group_id, smtp
        self.links = links              # approval request → {"send": url, "edit": url, "dont_send": url}
        self.domain, self.sender_address = domain, sender_address
        self.retry_seconds, self.backoff, self.clock = retry_seconds, backoff, clock
        self.webhook = webhook          # a Slack-compatible incoming webhook for CSM notifications, optional
        self.slack = slack_api          # Slack direct messages with approval buttons, optional
        self.digest = digest            # the CSMs' daily digest, sent by the sender holding requests[0]
        self.assigned: set[TopicPartition] = set()
        self.outcomes: dict[tuple[str, str], list[EmailOutcome]] = {}
        # every outcome, of every sender process, as the follower reads it; what this process records is
        # added at once, and skipped when the follower reaches it (partition, offset) — or, if the follower
        # got there first, not added again (`_read_up_to`: each partition's next offset to read)
        self._follow = Follower(bootstrap, [names.email_outcomes], self._read, name="sender outcomes")
        self._mine: set[tuple[int, int]] = set()
        # approval id → held out for measurement, for every request any drafter wrote (a send decision
        # for a held-out request is refused whichever topic the sender happens to read first)
        self.held_out: dict[str, bool] = {}
        # which milestones each request celebrates, and the requests that celebrate each milestone: a
        # milestone in two requests (the drafter replayed after a crash and merged it with a later one) is
        # sent at most once
        self.milestones_of: dict[str, frozenset[str]] = {}
        self.requests_with: dict[str, set[str]] = {}
        self._requests = Follower(bootstrap, [names.approval_requests], self._read_request, name="sender requests")
        self._read_up_to: dict[int, int] = {}
        # set once the outcomes are caught up after an assignment: aiokafka may hand out records of the
        # new assignment while its listener is still running, and they must not be handled before
        self.loaded = asyncio.Event()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        consumer = stage_consumer(self.bootstrap, self.group_id, self.retry_seconds)
        async with producer(self.bootstrap) as prod:
            self._prod = prod
            self._dead = DeadLetters(self.names.deadletter, lambda t, k, v: prod.send_and_wait(t, key=k, value=v))
            await self._follow.start()
            await self._requests.start()
            try:
                consumer.subscribe([self.names.approval_requests, self.names.approval_decisions, self.names.risks],
                                   listener=_Reload(self))
                await consumer.start()
                digests = asyncio.create_task(self.digest.run(self, stop)) if self.digest else None
                try:
                    await handle_each(consumer, "sender", self.handle, self._dead, self.loaded, stop)
                finally:
                    if digests is not None:
                        digests.cancel()
                        await asyncio.gather(digests, return_exceptions=True)
                    await consumer.stop()
            finally:
                await self._requests.stop()
                await self._follow.stop()

    async def caught_up(self, timeout: float = 30) -> None:
        """Every outcome the topic holds at this moment is in `outcomes` (the follower has read that far)."""
        await self._follow.caught_up(timeout)

    async def _read(self, r: ConsumerRecord) -> None:
        """The follower's `apply`: one outcome of any sender process, unless this one recorded it already.
        Nothing awaited before the outcome is kept: `record` must see it kept or not, never halfway."""
        if (r.partition, r.offset) in self._mine:
            self._mine.discard((r.partition, r.offset))
        else:
            try:
                o = EmailOutcome.from_avro(r.value)
            except Exception as exc:  # noqa: BLE001 — not the sender's own record: parked, the rest is read
                self._read_up_to[r.partition] = r.offset + 1
                await self._dead.failed("sender", r, exc)
                return
            self.outcomes.setdefault((o.approval_id, o.purpose), []).append(o)
        self._read_up_to[r.partition] = r.offset + 1

    async def _read_request(self, r: ConsumerRecord) -> None:
        """The requests follower's `apply`: which requests are held out (unreadable ones the loop parks)."""
        try:
            request = ApprovalRequest.from_avro(r.value)
        except Exception:  # noqa: BLE001 — the record loop reads it too and dead-letters it there
            return
        self.held_out.setdefault(request.approval_id, request.held_out)
        self._index(request)

    def _index(self, request: ApprovalRequest) -> None:
        if sequence.is_later_step(request.policy_notes):
            return  # names the anniversary milestone to link its sequence; celebrates nothing again
        if request.approval_id not in self.milestones_of:
            self.milestones_of[request.approval_id] = frozenset(request.milestone_ids)
            for milestone in request.milestone_ids:
                self.requests_with.setdefault(milestone, set()).add(request.approval_id)

    async def celebrated_elsewhere(self, approval_id: str) -> str | None:
        """Another request celebrating one of this request's milestones whose note went out, may have, or
        is going out now (any sender process): then this one is not sent. A request not read yet is
        waited for up to what the topic holds now; one not on the topic at all overlaps nothing."""
        if approval_id not in self.milestones_of:
            await self._requests.caught_up()
        others = sorted({other for milestone in self.milestones_of.get(approval_id, ())
                         for other in self.requests_with.get(milestone, ()) if other != approval_id})
        if others:
            await self.caught_up()  # the other requests' outcomes as far as the topic holds them now
        for other in others:
            if any(o.outcome in ("attempting", "retrying", "sent", "unknown")
                   for o in self.outcomes.get((other, "customer_email"), [])):
                return other
        return None

    async def is_held_out(self, approval_id: str) -> bool:
        """Whether the request was held out for measurement; one not read yet is waited for up to what the
        topic holds now (a time-out is an outage: the decision is read again after a restart). A decision
        for a request that is not on the topic at all is not held out (it carries its own draft)."""
        if approval_id not in self.held_out:
            await self._requests.caught_up()
        return self.held_out.get(approval_id, False)

    @property
    def dead(self) -> DeadLetters:
        """The sender's dead letters (set once running)."""
        return self._dead

    async def handle(self, r: ConsumerRecord) -> None:
        if r.topic == self.names.risks:  # a risk episode: its CSM is alerted once (sinks/sender/alerts.py)
            return await alerts.alert(self, r)
        kind = ApprovalRequest if r.topic == self.names.approval_requests else ApprovalDecision
        record = await decode_or_park(kind, value=r.value, key=r.key, topic=r.topic, partition=r.partition,
                                      offset=r.offset, stage="sender", dead_letters=self._dead)
        if isinstance(record, ApprovalRequest):
            self._index(record)
        if isinstance(record, ApprovalRequest) and record.held_out:
            self.held_out.setdefault(record.approval_id, True)
            log.info("held out for measurement: nobody notified", extra={"approval_id": record.approval_id})
        elif isinstance(record, ApprovalRequest):
            links = self.links(record)
            await self.email_once(record.approval_id, "csm_notification", r, lambda: mail.notification(
                record, links, self.domain, self.sender_address, self.clock()))
            if self.webhook:
                url, text = self.webhook, webhook.summary(record, links)
                await self.once(record.approval_id, "csm_webhook", r, lambda: webhook.post(url, text))
            if self.slack:
                api, (text, blocks) = self.slack, slack.request_message(record, links)
                await self.once(record.approval_id, "csm_slack", r,
                                lambda: api.post_direct(record.csm_email, text, blocks), slack.RETRY_SECONDS)
        elif isinstance(record, ApprovalDecision):
            if record.decision == "dont_send":
                if not self._done(record.approval_id, "customer_email"):
                    await self.record(record.approval_id, "customer_email", "not_sent", 0,
                                      record.reason or "the CSM chose not to send")
            elif await self.is_held_out(record.approval_id):
                if not self._done(record.approval_id, "customer_email"):
                    log.warning("a send decision for a request held out for measurement: refused",
                                extra={"approval_id": record.approval_id})
                    await self.record(record.approval_id, "customer_email", "not_sent", 0,
                                      "held out for measurement: a send decision arrived and was refused; "
                                      "requests in the holdout are never sent")
            elif (other := await self.celebrated_elsewhere(record.approval_id)) is not None:
                if not self._done(record.approval_id, "customer_email"):
                    log.warning("a send decision for milestones another note celebrates: refused",
                                extra={"approval_id": record.approval_id, "other": other})
                    shared = sorted(self.milestones_of[record.approval_id] & self.milestones_of[other])
                    await self.record(record.approval_id, "customer_email", "not_sent", 0,
                                      f"milestone(s) {', '.join(shared)} already celebrated by approval {other}, "
                                      "whose note was sent or may have been: a milestone is sent once")
            else:
                await self.email_once(record.approval_id, "customer_email", r, lambda: mail.customer_email(
                    record, _csm_name(record), self.domain, self.sender_address))
            if self.slack:
                await self.update_slack(record, r)

    async def update_slack(self, decision: ApprovalDecision, origin: Parkable) -> None:
        """Show the decision in the CSM's Slack message, if one was posted (by any sender process: one
        that has not read the post's outcome yet waits until it has read what the topic holds now)."""
        if self.slack is None or self._done(decision.approval_id, "csm_slack_update"):
            return
        if not self._done(decision.approval_id, "csm_slack"):
            await self.caught_up()  # a time-out is an outage: the decision is read again after a restart
        where = next((slack.posted(o.detail) for o in self.outcomes.get((decision.approval_id, "csm_slack"), [])
                      if o.outcome == "sent"), None)
        if where is None:
            return  # never posted (Slack was off then, the post failed, or its result is unknown)
        api, (text, blocks) = self.slack, slack.decided_message(decision)
        await self.once(decision.approval_id, "csm_slack_update", origin, lambda: api.update(where, text, blocks),
                        slack.RETRY_SECONDS)

    def owns_digest(self) -> bool:
        """One sender of the group sends digests: the one holding partition 0 of approvals.requests."""
        return TopicPartition(self.names.approval_requests, 0) in self.assigned

    def _done(self, approval_id: str, purpose: str) -> bool:
        return any(o.terminal for o in self.outcomes.get((approval_id, purpose), []))

    async def email_once(self, approval_id: str, purpose: Purpose, origin: Parkable | None,
                         build: Callable[[], mail.Outgoing]) -> None:
        """Build the email and its envelope (a refused header or address is a permanent failure), then
        deliver it once."""
        if self._done(approval_id, purpose):
            return
        try:
            out = build()
        except (mail.HeaderInjection, ValueError) as exc:
            return await self.give_up(approval_id, purpose, origin, 0, f"refused: {exc}", "invalid_email")
        # the envelope from the same Address objects as the headers, never from parsing the headers back
        await self.once(approval_id, purpose, origin,
                        lambda: deliver(self.smtp, out.message, out.sender, out.recipients))

    async def once(self, approval_id: str, purpose: Purpose, origin: Parkable | None,
                   attempt_delivery: Callable[[], Awaitable[str]], retry_seconds: float | None = None) -> None:
        """The protocol in the module docstring; `attempt_delivery()` raises NotDelivered or DeliveryUnknown.
        Transient failures are retried for `retry_seconds` (default: the sender's)."""
        window = self.retry_seconds if retry_seconds is None else min(retry_seconds, self.retry_seconds)
        history = self.outcomes.get((approval_id, purpose), [])
        if self._done(approval_id, purpose):
            return  # the first decision (or request) won; this one is a repeat
        if history and history[-1].outcome == "attempting":
            await self.record(approval_id, purpose, "unknown", history[-1].attempt,
                              "the sender stopped after handing the message over and before recording the "
                              "result; not re-sent — check with the recipient")
            return
        attempt = sum(o.outcome == "attempting" for o in history)
        started = self.clock()
        while True:
            attempt += 1
            await self.record(approval_id, purpose, "attempting", attempt, None)
            try:
                reply = await attempt_delivery()
            except DeliveryUnknown as exc:
                return await self.record(approval_id, purpose, "unknown", attempt, str(exc))
            except NotDelivered as exc:
                waited = (self.clock() - started).total_seconds()
                if exc.permanent or waited >= window:
                    why = str(exc) if exc.permanent else f"retries exhausted after {waited:.0f}s: {exc}"
                    return await self.give_up(approval_id, purpose, origin, attempt, why, "delivery_failed")
                if exc.retry_after is not None and waited + exc.retry_after > window:
                    # asked to wait past the window: waiting would hold every record behind this one for it
                    why = (f"retries exhausted: {exc}; asked to wait {exc.retry_after:.0f}s, past the "
                           f"{window:.0f}s window")
                    return await self.give_up(approval_id, purpose, origin, attempt, why, "delivery_failed")
                delay = max(min(self.backoff[0] * 2 ** (attempt - 1), self.backoff[1]), exc.retry_after or 0)
                await self.record(approval_id, purpose, "retrying", attempt, f"{exc}; next try in {delay:.0f}s")
                await asyncio.sleep(delay)
                continue
            return await self.record(approval_id, purpose, "sent", attempt, reply)

    async def give_up(self, approval_id: str, purpose: Purpose, origin: Parkable | None, attempt: int, why: str,
                      reason: str) -> None:
        """Dead-letter the input (for a replay after a fix), then record the failure the CSM sees. A
        message made from no input record (a digest) has nothing to replay: its failure is recorded."""
        if origin is not None:
            await self._dead.send(stage="sender", reason=reason, error=f"{purpose} {approval_id}: {why}",
                                  topic=origin.topic, partition=origin.partition, offset=origin.offset,
                                  key=origin.key, value=origin.value)
        await self.record(approval_id, purpose, "failed", attempt, why)

    async def record(self, approval_id: str, purpose: Purpose, outcome: Outcome, attempt: int,
                     detail: str | None) -> None:
        o = EmailOutcome(approval_id=approval_id, message_id=mail.message_id(approval_id, self.domain, purpose),
                         outcome=outcome, attempt=attempt, detail=(detail or None) and detail[:1000],
                         recorded_at=self.clock(), purpose=purpose)
        at = await self._prod.send_and_wait(self.names.email_outcomes, key=approval_id.encode(), value=o.to_avro())
        if self._read_up_to.get(at.partition, 0) <= at.offset:  # else the follower has kept it already
            self._mine.add((at.partition, at.offset))
            self.outcomes.setdefault((approval_id, purpose), []).append(o)
        log.info("email %s", outcome, extra={"approval_id": approval_id, "purpose": purpose, "attempt": attempt})


def _csm_name(decision: ApprovalDecision) -> str:
    """The From display name: the CRM's name for the CSM; for decisions written before it was carried
    (or a profile without one) it is made from the address: "sam.rivera@…" → "Sam Rivera"."""
    return decision.csm_name or decision.csm_email.split("@")[0].replace(".", " ").title()


class _Reload(ConsumerRebalanceListener):
    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.sender.loaded.clear()
        self.sender.assigned.clear()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.sender.assigned = set(assigned)
        while True:  # the outcomes the previous holder of these partitions recorded, before any record
            try:
                await self.sender.caught_up()
                break
            except TimeoutError:
                log.warning("sender: still reading the outcomes topic after an assignment; waiting on")
        self.sender.loaded.set()
