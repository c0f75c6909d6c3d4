"""What a risk alert said, by signal id: the openings on the `risks` topic, read without a consumer group.

Why: a `risk_alert` outcome on `emails.outcomes` names only the episode (its signal_id); the Timeline
activity needs the account, the CSM, the title, the evidence and the playbook. The opening is on
`risks` before the sender alerts, so a look-up that misses reads on to the topic's ends once before
giving up (as ApprovalIndex does for approvals).
"""
from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from milestone_stream.deadletter import is_outage
from milestone_stream.kafka_io import wait_for
from milestone_stream.schemas import confluent
from milestone_stream.schemas.records import RiskSignal
from milestone_stream.topics import TopicNames


class RiskIndex:
    def __init__(self, bootstrap: str, names: TopicNames) -> None:
        self.openings: dict[str, RiskSignal] = {}
        self.unreadable = 0  # records that do not decode (the gates agent and the sender dead-letter them)
        self._consumer = AIOKafkaConsumer(names.risks, bootstrap_servers=bootstrap, group_id=None,
                                          enable_auto_commit=False, auto_offset_reset="earliest",
                                          isolation_level="read_committed")

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def get(self, signal_id: str) -> RiskSignal | None:
        if signal_id not in self.openings:
            await self.catch_up()
        return self.openings.get(signal_id)

    async def catch_up(self) -> None:
        """Read until every partition reaches the end offset it has now."""
        parts: set[TopicPartition] = await wait_for(self._consumer.assignment, 30, what="the risks topic")
        ends = await self._consumer.end_offsets(list(parts))
        while [tp for tp in parts if await self._consumer.position(tp) < ends[tp]]:
            batch = await self._consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    await self._apply(r.value)

    async def _apply(self, value: bytes | None) -> None:
        try:
            await confluent.prefetch(value)
            signal = RiskSignal.from_avro(value)
        except Exception as exc:  # noqa: BLE001 — not ours to park: the gates agent and the sender do
            if is_outage(exc):
                raise
            self.unreadable += 1
            return
        if signal.state == "open":
            self.openings.setdefault(signal.signal_id, signal)
