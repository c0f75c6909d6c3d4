"""Consumer lag of the product's groups, the way Kafka people read it, from the broker's admin API.

Why from the broker: it works when every worker is down — exactly when an SRE needs it. Per group,
topic and partition: committed offset, log end offset, lag in messages, and lag in time (the age of
the oldest record not yet consumed, read from the broker).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError

from milestone_stream.topics import TopicNames


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None      # None: the group has committed nothing here (it will start at the log start)
    end: int
    lag: int
    age_seconds: float | None  # age of the oldest unconsumed record; None when nothing is waiting


def product_groups(app_id: str, names: TopicNames, adapter_topics: Sequence[str] = (),
                   gainsight: bool = False, signals: bool = False, sequence: bool = False) -> dict[str, list[str]]:
    """Each consumer group of the product and the topics it consumes (the worker's include adapters' sources,
    and the topics of the features its rules turn on; the Gainsight stage's only when it is configured: a
    consumer that is off would show its whole topic as lag)."""
    worker = [names.telemetry, names.crm, names.clock, names.milestones, names.drafter_clock, names.risks,
              *adapter_topics]
    if signals:
        worker.append(names.risk_clock)
    if sequence:
        worker += [names.sequence, names.approval_decisions]
    groups = {app_id: worker, f"{app_id}-sender": [names.approval_requests, names.approval_decisions, names.risks]}
    if gainsight:
        groups[f"{app_id}-gainsight"] = [names.email_outcomes]  # (risks it reads whole, without a group)
    return groups


async def measure(bootstrap: str, groups: dict[str, list[str]]) -> list[PartitionLag]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                              isolation_level="read_committed")
    await admin.start()
    await reader.start()
    try:
        existing = set(await admin.list_topics())
        wanted = sorted({t for topics in groups.values() for t in topics} & existing)
        partitions = {d["topic"]: sorted(p["partition"] for p in d["partitions"])
                      for d in await admin.describe_topics(wanted)} if wanted else {}
        rows = []
        for group, topics in groups.items():
            committed = await _committed(admin, group)
            tps = [TopicPartition(t, p) for t in topics for p in partitions.get(t, [])]
            if not tps:
                continue
            ends = await reader.end_offsets(tps)
            starts = await reader.beginning_offsets(tps)
            for tp in tps:
                done = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else None
                position = starts[tp] if done is None else done
                lag = max(ends[tp] - position, 0)
                rows.append(PartitionLag(group, tp.topic, tp.partition, done, ends[tp], lag,
                                         await _age(reader, tp, position) if lag else None))
        return rows
    finally:
        await reader.stop()
        await admin.close()


async def _committed(admin: AIOKafkaAdminClient, group: str, attempts: int = 20) -> dict:
    """The group's committed offsets; the coordinator may be briefly unavailable (e.g. a new cluster)."""
    for attempt in range(attempts):
        try:
            return await admin.list_consumer_group_offsets(group)
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    return {}


async def _age(reader: AIOKafkaConsumer, tp: TopicPartition, position: int) -> float | None:
    """Seconds since the record at `position` was written (its broker or producer timestamp)."""
    reader.assign([tp])
    reader.seek(tp, position)
    batch = await reader.getmany(tp, timeout_ms=2000, max_records=1)
    records = batch.get(tp) or []
    return round(time.time() - records[0].timestamp / 1000, 3) if records else None


def as_json(rows: list[PartitionLag]) -> dict:
    return {"total_lag": sum(r.lag for r in rows), "partitions": [asdict(r) for r in rows]}


def as_table(rows: list[PartitionLag]) -> str:
    head = f"{'GROUP':<28} {'TOPIC':<36} {'PART':>4} {'COMMITTED':>10} {'END':>10} {'LAG':>8} {'OLDEST (s)':>10}"
    lines = [head]
    for r in rows:
        age = "-" if r.age_seconds is None else f"{r.age_seconds:.1f}"
        done = "-" if r.committed is None else str(r.committed)
        lines.append(f"{r.group:<28} {r.topic:<36} {r.partition:>4} {done:>10} {r.end:>10} {r.lag:>8} {age:>10}")
    lines.append(f"total lag: {sum(r.lag for r in rows)}")
    return "\n".join(lines)
