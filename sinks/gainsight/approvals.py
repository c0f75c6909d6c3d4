"""What was sent, by approval id: the approval requests and decisions, read without a consumer group.

Why: an email outcome names only the approval; the activity needs the account, the CSM, the subject
and the text as sent (the decision, which holds the CSM's edits, over the request's draft). The
decision is on its topic before the sender sends, so a look-up that misses reads on to the topics'
ends once before giving up.
"""
from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from milestone_stream.deadletter import is_outage
from milestone_stream.kafka_io import wait_for
from milestone_stream.schemas import confluent
from milestone_stream.schemas.records import ApprovalDecision, ApprovalRequest
from milestone_stream.topics import TopicNames


class ApprovalIndex:
    def __init__(self, bootstrap: str, names: TopicNames) -> None:
        self.requests: dict[str, ApprovalRequest] = {}
        self.decisions: dict[str, ApprovalDecision] = {}
        self.unreadable = 0  # records of these topics that do not decode (the sender dead-letters them)
        self._names = names
        self._consumer = AIOKafkaConsumer(names.approval_requests, names.approval_decisions,
                                          bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                          auto_offset_reset="earliest", isolation_level="read_committed")

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def get(self, approval_id: str) -> tuple[ApprovalRequest | None, ApprovalDecision | None]:
        if approval_id not in self.decisions:
            await self.catch_up()
        return self.requests.get(approval_id), self.decisions.get(approval_id)

    async def catch_up(self) -> None:
        """Read until every partition reaches the end offset it has now."""
        parts: set[TopicPartition] = await wait_for(self._consumer.assignment, 30, what="the approval topics")
        ends = await self._consumer.end_offsets(list(parts))
        while [tp for tp in parts if await self._consumer.position(tp) < ends[tp]]:
            batch = await self._consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for r in records:
                    await self._apply(tp.topic, r.value)

    async def _apply(self, topic: str, value: bytes | None) -> None:
        try:
            await confluent.prefetch(value)  # a Confluent-framed value's writer schema (docs/schema-registry.md)
            if topic == self._names.approval_requests:
                request = ApprovalRequest.from_avro(value)
                self.requests.setdefault(request.approval_id, request)
            else:
                decision = ApprovalDecision.from_avro(value)
                self.decisions.setdefault(decision.approval_id, decision)
        except Exception as exc:  # noqa: BLE001 — not ours to park: the sender and the UI dead-letter them
            if is_outage(exc):  # RegistryUnavailable is a ConnectionError
                raise  # the registry or the network, not the record: stop, read it again after the restart
            self.unreadable += 1
