"""Ingestion adapters as Faust agents in the worker: Segment `track`/`group` calls, Salesforce
Account change events and Gainsight PX custom events in, telemetry events and CRM changes out —
enabled by `MILESTONES_ADAPTERS`.

Why in the worker and not a separate bridge: the adapters share its consumer group, dead letters,
metrics and probes. Exactly once holds without transactions: each output is acknowledged by the
broker before the next source message is taken, and carries its source (topic, partition,
offset) and the source's own id, so the copies an adapter re-publishes after a crash are
recognised by the detector's exact dedupe (telemetry) or change nothing (CRM changes are
idempotent). Next: the detector (agents/detector/agent.py).
"""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import faust
from prometheus_client import Counter

from milestone_stream import faust_compat, observability
from milestone_stream.agents.ingest import gainsight_px, salesforce_cdc, segment
from milestone_stream.agents.ingest.config import AdaptersConfig
from milestone_stream.agents.ingest.mapping import Rejected, Skipped
from milestone_stream.runtime import RAW, Runtime
from milestone_stream.schemas.records import CrmChange, Origin, Record, ResyncNeeded, TelemetryEvent

log = logging.getLogger(__name__)

SKIPPED = Counter("milestones_adapter_skipped_total", "Well-formed source messages an adapter does not map, by reason",
                  ["adapter", "reason"])
RESYNC = Counter("milestones_crm_resync_needed_total",
                 "Salesforce CDC gap and overflow events: records to re-read from Salesforce",
                 ["entity", "change_type"])


class IngestAgents:
    """One agent per configured adapter, each publishing what it maps; what it cannot map is parked."""

    def __init__(self, rt: Runtime, config: AdaptersConfig) -> None:
        self.rt, self.config = rt, config
        self.outputs: dict[type[Record], faust.TopicT] = {
            TelemetryEvent: rt.channels.telemetry, CrmChange: rt.channels.crm, ResyncNeeded: rt.channels.resync}

    def install(self) -> None:
        if self.config.segment:
            seg = self.config.segment
            self._install("segment", seg.topic, lambda doc, origin, at: segment.map_message(doc, seg, origin, at))
        if self.config.salesforce_cdc:
            cdc = self.config.salesforce_cdc
            self._install("salesforce_cdc", cdc.topic,
                          lambda doc, origin, at: salesforce_cdc.map_event(doc, cdc, origin))
        if self.config.gainsight_px:
            px = self.config.gainsight_px
            self._install("gainsight_px", px.topic, lambda doc, origin, at: gainsight_px.map_event(doc, px, origin))

    def _install(self, adapter: str, topic_name: str, mapper: Any) -> None:
        rt = self.rt

        async def agent(stream: Any) -> None:
            await faust_compat.each_in_order(rt.app, stream, adapter, lambda event: self.adapt(event, adapter, mapper),
                                             rt.park)

        rt.app.agent(rt.app.topic(topic_name, **RAW), name=adapter)(agent)
        observability.PROGRESS.register(adapter, {topic_name})

    async def publish(self, record: Record) -> None:
        key = record.entity if isinstance(record, ResyncNeeded) else record.account_id  # type: ignore[attr-defined]
        await (await self.outputs[type(record)].send(key=key.encode(), value=record.to_avro()))

    async def adapt(self, event: Any, adapter: str, mapper: Any) -> None:
        """Map one source message and publish what it maps to; a `Rejected` message (or any exception)
        reaches the agent loop, which dead-letters it with the adapter as its stage."""
        msg = event.message
        origin = Origin(topic=msg.topic, partition=msg.partition, offset=msg.offset)
        if msg.value is None:
            raise Rejected("malformed", "empty message (tombstone)")
        try:
            document = json.loads(msg.value)
        except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, a 5,000-digit number, deep nesting
            raise Rejected("malformed_json", f"not JSON: {str(exc)[:300]}") from None
        result = mapper(document, origin, datetime.fromtimestamp(msg.timestamp, tz=UTC))
        if isinstance(result, Skipped):
            SKIPPED.labels(adapter, result.reason).inc()
            return
        for record in result if isinstance(result, list) else [result]:
            await self.publish(record)
            observability.EVENTS_OUT.labels(adapter).inc()
            if isinstance(record, ResyncNeeded):
                RESYNC.labels(record.entity, record.change_type).inc()
                log.warning("CRM resync needed", extra={"agent": adapter, "entity": record.entity,
                                                        "change_type": record.change_type,
                                                        "record_ids": ",".join(record.record_ids) or "(all)"})
