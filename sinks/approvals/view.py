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

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from milestone_stream.deadletter import DeadLetters, Parkable
from milestone_stream.kafka_io import wait_for
from milestone_stream.schemas import confluent
from milestone_stream.schemas.codec import CodecError
from milestone_stream.schemas.records import ApprovalDecision, ApprovalRequest, EmailOutcome
from milestone_stream.schemas.registry import RegistryUnavailable
from milestone_stream.topics import TopicNames

log = logging.getLogger(__name__)


def status(request: ApprovalRequest, decision: ApprovalDecision | None, outcomes: list[EmailOutcome],
           now: datetime) -> str:
    """pending, expired, not sent, sending, sent, failed, unknown."""
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
    """Requests, decisions and outcomes, kept current by one consumer without a group."""

    def __init__(self, bootstrap_servers: str, names: TopicNames) -> None:
        self.requests: dict[str, ApprovalRequest] = {}
        self.decisions: dict[str, ApprovalDecision] = {}
        self.outcomes: dict[str, list[EmailOutcome]] = defaultdict(list)
        self._types: dict[str, type[ApprovalRequest] | type[ApprovalDecision] | type[EmailOutcome]] = {
            names.approval_requests: ApprovalRequest, names.approval_decisions: ApprovalDecision,
            names.email_outcomes: EmailOutcome}
        self._consumer = AIOKafkaConsumer(*self._types, bootstrap_servers=bootstrap_servers, group_id=None,
                                          auto_offset_reset="earliest", isolation_level="read_committed",
                                          enable_auto_commit=False)
        self._positions: dict[tuple[str, int], int] = {}
        self._changed = asyncio.Condition()
        self._task: asyncio.Task | None = None
        self._bootstrap = bootstrap_servers
        self._producer: AIOKafkaProducer | None = None  # started at the first dead letter
        self._dead = DeadLetters(names.deadletter, self._produce)

    async def _produce(self, topic: str, key: bytes | None, value: bytes) -> object:
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True)
            await self._producer.start()
        return await self._producer.send_and_wait(topic, key=key, value=value)

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self._consumer.stop()
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

    async def _run(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=500)
            except Exception:  # noqa: BLE001 — keep the view alive through broker hiccups; it says so
                log.exception("approval view: fetch failed; retrying")
                await asyncio.sleep(1)
                continue
            for tp, records in batch.items():
                for r in records:
                    await _schema_of(r.value)
                    try:
                        self.apply(tp.topic, r.value)
                    except Exception as exc:  # noqa: BLE001 — a bad record must not blind the UI
                        await self._park(r, exc)
                    self._positions[(tp.topic, tp.partition)] = r.offset + 1
            if batch:
                async with self._changed:
                    self._changed.notify_all()

    async def _park(self, record: Parkable, exc: Exception) -> None:
        try:
            await self._dead.failed("ui_view", record, exc)
        except Exception:  # noqa: BLE001 — the view still shows everything else; the sender parks it too
            log.exception("approval view: could not dead-letter an unreadable record",
                          extra={"origin": f"{record.topic}[{record.partition}]@{record.offset}"})

    async def caught_up_to(self, topic: str, partition: int, offset: int, timeout: float = 10) -> None:
        """Wait until the record at `offset` has been applied (read-your-writes after a decision)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(
                lambda: self._positions.get((topic, partition), 0) > offset), timeout)

    async def caught_up(self, timeout: float = 30) -> None:
        """Wait until everything in the topics at this moment has been applied (start-up)."""
        tps = list(await wait_for(self._consumer.assignment, timeout, what="the approval topics"))
        ends = await self._consumer.end_offsets(tps)
        for tp, end in ends.items():
            if end:
                await self.caught_up_to(tp.topic, tp.partition, end - 1, timeout)

    async def request(self, approval_id: str, timeout: float = 5) -> ApprovalRequest | None:
        """The request, waiting briefly for one this view has not read yet (a link can outrun the view)."""
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(lambda: approval_id in self.requests), timeout)
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


async def _schema_of(value: bytes | None) -> None:
    """A Confluent-framed value's writer schema, fetched off the event loop; while the schema registry
    cannot answer, wait and ask again (an outage: the record is not the view's to park). What is the
    record's fault is left to `apply`, which raises it again and parks the record."""
    while True:
        try:
            await confluent.prefetch(value)
            return
        except CodecError:
            return
        except RegistryUnavailable as exc:
            log.warning("approval view: the schema registry cannot answer; retrying", extra={"error": str(exc)})
            await asyncio.sleep(2)
