"""The sender: approved decisions become exactly one email; new requests notify their CSM (by email,
and by a Slack-compatible webhook when one is configured).

Protocol, per message (customer email or CSM notification), against `emails.outcomes`:
1. `attempting` is written and acknowledged by the broker *before* the message goes to SMTP;
2. then `sent`, `retrying` (a transient failure, known not delivered: tried again with backoff),
   or `failed` (permanent, or retries exhausted: also dead-lettered);
3. a message whose last record is `attempting` was cut off by a crash between hand-off and record:
   it is recorded `unknown` and shown to the CSM — never sent a second time.
The input offset is committed only after the outcome is recorded. The outcomes topic is the
sender's whole state, re-read at every partition assignment, so any sender process can take over.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from milestone_stream.deadletter import DeadLetters, decode_or_park, is_outage
from milestone_stream.kafka_io import producer, read_topic
from milestone_stream.models import ApprovalDecision, ApprovalRequest, EmailOutcome
from milestone_stream.sinks import mail, webhook
from milestone_stream.sinks.smtp import DeliveryUnknown, NotDelivered, SmtpConfig, deliver

log = logging.getLogger(__name__)

DONE = {"sent", "failed", "unknown", "not_sent"}


class Sender:
    def __init__(self, bootstrap: str, names, group_id: str, smtp: SmtpConfig, links, *,
                 domain: str, sender_address: str | None = None, retry_seconds: float = 3600,
                 backoff: tuple[float, float] = (1.0, 60.0), webhook: str | None = None,
                 clock=lambda: datetime.now(timezone.utc)) -> None:
        self.bootstrap, self.names, self.group_id, self.smtp = bootstrap, names, group_id, smtp
        self.links = links              # approval request → {"send": url, "edit": url, "dont_send": url}
        self.domain, self.sender_address = domain, sender_address
        self.retry_seconds, self.backoff, self.clock = retry_seconds, backoff, clock
        self.webhook = webhook          # a Slack-compatible incoming webhook for CSM notifications, optional
        self.outcomes: dict[tuple[str, str], list[EmailOutcome]] = {}
        # set once the outcomes are re-read after an assignment: aiokafka may hand out records of the
        # new assignment while its listener is still running, and they must not be handled before
        self.loaded = asyncio.Event()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group_id,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    isolation_level="read_committed",
                                    # SMTP retries may hold one record for long; a rebalance must not wait for that
                                    max_poll_interval_ms=int((self.retry_seconds + 600) * 1000),
                                    rebalance_timeout_ms=30_000, session_timeout_ms=10_000)
        async with producer(self.bootstrap) as prod:
            self._prod = prod
            self._dead = DeadLetters(self.names.deadletter, lambda t, k, v: prod.send_and_wait(t, key=k, value=v))
            consumer.subscribe([self.names.approval_requests, self.names.approval_decisions],
                               listener=_Reload(self))
            await consumer.start()
            try:
                while not stop.is_set():
                    batch = await consumer.getmany(timeout_ms=500)
                    if batch:
                        await self.loaded.wait()
                    for tp, records in batch.items():
                        for r in records:
                            try:
                                await self.handle(r)
                            except Exception as exc:  # a poison pill: parked, and the stream goes on
                                if is_outage(exc):
                                    raise  # the broker or network: stop uncommitted, read it again after
                                await self._dead.failed("sender", r, exc)
                            try:
                                await consumer.commit({tp: r.offset + 1})
                            except (CommitFailedError, IllegalStateError) as exc:
                                # the partition moved in a rebalance: its new owner re-reads the outcomes
                                log.warning("commit refused after a rebalance; the record will be seen again "
                                            "and recognised from its outcome", extra={"error": str(exc)})
                                break
            finally:
                await consumer.stop()

    async def reload(self) -> None:
        """The whole state: every outcome recorded so far (small: a few records per approval)."""
        outcomes: dict[tuple[str, str], list[EmailOutcome]] = {}
        for r in await read_topic(self.bootstrap, self.names.email_outcomes, idle_ms=500):
            o = EmailOutcome.from_avro(r.value)
            outcomes.setdefault((o.approval_id, o.purpose), []).append(o)
        self.outcomes = outcomes

    async def handle(self, r) -> None:
        kind = ApprovalRequest if r.topic == self.names.approval_requests else ApprovalDecision
        record = await decode_or_park(kind, value=r.value, key=r.key, topic=r.topic, partition=r.partition,
                                      offset=r.offset, stage="sender", dead_letters=self._dead)
        if isinstance(record, ApprovalRequest):
            links = self.links(record)
            await self.email_once(record.approval_id, "csm_notification", r, lambda: mail.notification(
                record, links, self.domain, self.sender_address, self.clock()))
            if self.webhook:
                text = webhook.summary(record, links)
                await self.once(record.approval_id, "csm_webhook", r, lambda: webhook.post(self.webhook, text))
        elif isinstance(record, ApprovalDecision):
            if record.decision == "dont_send":
                if not self._done(record.approval_id, "customer_email"):
                    await self.record(record.approval_id, "customer_email", "not_sent", 0,
                                      record.reason or "the CSM chose not to send")
                return
            await self.email_once(record.approval_id, "customer_email", r, lambda: mail.customer_email(
                record, _csm_name(record), self.domain, self.sender_address))

    def _done(self, approval_id: str, purpose: str) -> bool:
        return any(o.outcome in DONE for o in self.outcomes.get((approval_id, purpose), []))

    async def email_once(self, approval_id: str, purpose: str, origin, build) -> None:
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

    async def once(self, approval_id: str, purpose: str, origin, attempt_delivery) -> None:
        """The protocol in the module docstring; `attempt_delivery()` raises NotDelivered or DeliveryUnknown."""
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
                if exc.permanent or waited >= self.retry_seconds:
                    why = str(exc) if exc.permanent else f"retries exhausted after {waited:.0f}s: {exc}"
                    return await self.give_up(approval_id, purpose, origin, attempt, why, "delivery_failed")
                delay = min(self.backoff[0] * 2 ** (attempt - 1), self.backoff[1])
                await self.record(approval_id, purpose, "retrying", attempt, f"{exc}; next try in {delay:.0f}s")
                await asyncio.sleep(delay)
                continue
            return await self.record(approval_id, purpose, "sent", attempt, reply)

    async def give_up(self, approval_id: str, purpose: str, origin, attempt: int, why: str, reason: str) -> None:
        """Dead-letter the input (for a replay after a fix), then record the failure the CSM sees."""
        await self._dead.send(stage="sender", reason=reason, error=f"{purpose} {approval_id}: {why}",
                              topic=origin.topic, partition=origin.partition, offset=origin.offset,
                              key=origin.key, value=origin.value)
        await self.record(approval_id, purpose, "failed", attempt, why)

    async def record(self, approval_id: str, purpose: str, outcome: str, attempt: int, detail: str | None) -> None:
        o = EmailOutcome(approval_id=approval_id, message_id=mail.message_id(approval_id, self.domain, purpose),
                         outcome=outcome, attempt=attempt, detail=(detail or None) and detail[:1000],
                         recorded_at=self.clock(), purpose=purpose)
        await self._prod.send_and_wait(self.names.email_outcomes, key=approval_id.encode(), value=o.to_avro())
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

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.sender.reload()
        self.sender.loaded.set()
