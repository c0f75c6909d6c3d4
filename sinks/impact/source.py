"""Where the impact report's records come from: `approvals.requests` and `crm.changes`, read whole.

Why its own reader, without a consumer group: the report is a read-only look at what the topics
hold now, from the beginning, read_committed (an aborted transaction's records never count); it
commits nothing and moves no other stage's offsets. A record it cannot decode is counted in the
report's notes and skipped: the stages that own these topics dead-letter such records already.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from pydantic import ValidationError

from milestone_stream.kafka_io import read_topic
from milestone_stream.schemas import confluent, json_input
from milestone_stream.schemas.codec import CodecError
from milestone_stream.schemas.records import ApprovalRequest, CrmChange, Record
from milestone_stream.sinks.impact.report import Report, build
from milestone_stream.topics import TopicNames

R = TypeVar("R", bound=Record)


async def _decoded(record_type: type[R], values: list[bytes | None]) -> tuple[list[R], int]:
    out, bad = [], 0
    for value in values:
        try:
            if value is not None and json_input.accepts_json(record_type, value):
                out.append(json_input.decode(record_type, value, json_input.MAX_DOCUMENT_BYTES))
                continue
            await confluent.prefetch(value)
            out.append(record_type.from_avro(value))
        except (CodecError, ValidationError):
            bad += 1
    return out, bad


async def load(bootstrap: str, names: TopicNames, now: Callable[[], datetime], *, cohort: str | None = None,
               kind: str | None = None) -> Report:
    """Read both topics (at the same time) and build the report as of `now()`."""
    requests_raw, changes_raw = await asyncio.gather(read_topic(bootstrap, names.approval_requests, idle_ms=1000),
                                                     read_topic(bootstrap, names.crm, idle_ms=1000))
    requests, bad_requests = await _decoded(ApprovalRequest, [r.value for r in requests_raw])
    changes, bad_changes = await _decoded(CrmChange, [r.value for r in changes_raw])
    report = build(requests, changes, now(), cohort=cohort, kind=kind)
    if bad_requests or bad_changes:
        report.notes.append(f"unreadable records skipped: {bad_requests} approval request(s), "
                            f"{bad_changes} CRM change(s) (see `milestones deadletter list`)")
    return report
