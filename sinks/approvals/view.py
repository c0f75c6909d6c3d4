"""The state of every approval, read from the topics: what the UI shows and what "decided" means.

Why from the topics: any number of UI processes rebuild the same view from `approvals.requests`,
`approvals.decisions` and `emails.outcomes`, read from the beginning with read_committed. The
rule everywhere is **the first record per approval id wins**: a re-drafted request after a crash,
or a second decision from a double tap on another process, is kept in the log but changes nothing.
A record the view cannot apply is dead-lettered (stage `ui_view`) and the view goes on; every UI
process reads every record, so `milestones deadletter list` shows one per stage and origin.
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer, ConsumerRecord

from milestone_stream.deadletter import DeadLetters, Parkable
from milestone_stream.follow import Follower
from milestone_stream.schemas.records import ApprovalDecision, ApprovalRequest, EmailOutcome
from milestone_stream.topics import TopicNames

log = logging.getLogger(__name__)


def status(request: ApprovalRequest, decision: ApprovalDecision | None, outcomes: list[EmailOutcome],
           now: datetime) -> str:
    """pending, expired, not sent, sending, sent, failed, unknown; or held out (the measurement holdout:
    never sent, whatever decision is on the topic — agents/drafter/holdout.py)."""
    if request.held_out:
        return "held out"
    if decision is None:
        return "expired" if now >= request.expires_at else "pending"
    if decision.decision == "dont_send":
        return "not sent"
    final = [o for o in outcomes if o.terminal and o.purpose == "customer_email"]
    if any(o.outcome == "sent" for o in final):
        return "sent"
    if final:
        return final[-1].outcome.replace("_", " ")
    return "sending"


class ApprovalView:
    """Requests, decisions and outcomes, kept current by a Follower (one consumer without a group)."""

    def __init__(self, bootstrap_servers: str, names: TopicNames) -> None:
        self.requests: dict[str, ApprovalRequest] = {}
        self.decisions: dict[str, ApprovalDecision] = {}
        self.outcomes: dict[str, list[EmailOutcome]] = defaultdict(list)
        self._types: dict[str, type[ApprovalRequest] | type[ApprovalDecision] | type[EmailOutcome]] = {
            names.approval_requests: ApprovalRequest, names.approval_decisions: ApprovalDecision,
            names.email_outcomes: EmailOutcome}
        self._follow = Follower(bootstrap_servers, list(self._types), self._apply_record, name="approval view")
        self._bootstrap = bootstrap_servers
        self._producer: AIOKafkaProducer | None = None  # started at the first dead letter
        self._dead = DeadLetters(names.deadletter, self._produce)

    async def _produce(self, topic: str, key: bytes | None, value: bytes) -> object:
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True)
            await self._producer.start()
        return await self._producer.send_and_wait(topic, key=key, value=value)

    async def start(self) -> None:
        await self._follow.start()

    async def stop(self) -> None:
        await self._follow.stop()
        if self._producer is not None:
            await self._producer.stop()

    def apply(self, topic: str, value: bytes) -> None:
        record = self._types[topic].from_avro(value)
        if isinstance(record, ApprovalRequest):
            self.requests.setdefault(record.approval_id, record)
        elif isinstance(record, ApprovalDecision):
            self.decisions.setdefault(record.approval_id, record)
        else:
            self.outcomes[record.approval_id].append(record)

    async def _apply_record(self, r: ConsumerRecord) -> None:
        try:
            self.apply(r.topic, r.value)
        except Exception as exc:  # noqa: BLE001 — a bad record must not blind the UI
            await self._park(r, exc)

    async def _park(self, record: Parkable, exc: Exception) -> None:
        try:
            await self._dead.failed("ui_view", record, exc)
        except Exception:  # noqa: BLE001 — the view still shows everything else; the sender parks it too
            log.exception("approval view: could not dead-letter an unreadable record",
                          extra={"origin": f"{record.topic}[{record.partition}]@{record.offset}"})

    async def caught_up_to(self, topic: str, partition: int, offset: int, timeout: float = 10) -> None:
        """Wait until the record at `offset` has been applied (read-your-writes after a decision)."""
        await self._follow.caught_up_to(topic, partition, offset, timeout)

    async def caught_up(self, timeout: float = 30) -> None:
        """Wait until everything in the topics at this moment has been applied (start-up)."""
        await self._follow.caught_up(timeout)

    async def request(self, approval_id: str, timeout: float = 5) -> ApprovalRequest | None:
        """The request, waiting briefly for one this view has not read yet (a link can outrun the view)."""
        try:
            async with self._follow.changed:
                await asyncio.wait_for(self._follow.changed.wait_for(lambda: approval_id in self.requests), timeout)
        except TimeoutError:
            return None
        return self.requests[approval_id]

    def status(self, approval_id: str, now: datetime | None = None) -> str:
        return status(self.requests[approval_id], self.decisions.get(approval_id), self.outcomes.get(approval_id, []),
                      now or datetime.now(UTC))

    def inbox(self, csm_email: str) -> list[ApprovalRequest]:
        """The CSM's requests, newest first."""
        mine = [r for r in self.requests.values() if r.csm_email.lower() == csm_email.lower()]
        return sorted(mine, key=lambda r: r.created_at, reverse=True)

