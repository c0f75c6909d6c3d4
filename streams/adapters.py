"""Ingestion adapters as Faust agents in the worker: Segment `track`/`group` calls and Salesforce
Account change events in, telemetry events and CRM changes out — enabled by `MILESTONES_ADAPTERS`.

Why in the worker and not a separate bridge: the adapters share its consumer group, dead letters,
metrics and probes. Exactly once holds without transactions: each output is acknowledged by the
broker before the next source message is taken, and carries its source (topic, partition,
offset), so the copies an adapter re-publishes after a crash are recognised by the detector's
rows (`agents/origins.py`) and applied once.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from prometheus_client import Counter
from pydantic import model_validator

from milestone_stream import faust_guards, observability
from milestone_stream.agents import salesforce_cdc, segment
from milestone_stream.agents.mapping import Rejected, Skipped
from milestone_stream.agents.salesforce_cdc import CdcConfig
from milestone_stream.agents.segment import SegmentConfig
from milestone_stream.models import CrmChange, Origin, Record, ResyncNeeded, TelemetryEvent
from milestone_stream.rules import Rules
from milestone_stream.settings import ConfigError, Strict, load_config_file

log = logging.getLogger(__name__)

SKIPPED = Counter("milestones_adapter_skipped_total", "Well-formed source messages an adapter does not map, by reason",
                  ["adapter", "reason"])
RESYNC = Counter("milestones_crm_resync_needed_total",
                 "Salesforce CDC gap and overflow events: records to re-read from Salesforce", ["entity", "change_type"])


class AdaptersConfig(Strict):
    segment: SegmentConfig | None = None
    salesforce_cdc: CdcConfig | None = None

    @model_validator(mode="after")
    def _distinct_topics(self) -> "AdaptersConfig":
        if self.segment and self.salesforce_cdc and self.segment.topic == self.salesforce_cdc.topic:
            raise ValueError("segment and salesforce_cdc must read different topics")
        return self

    def source_topics(self) -> list[str]:
        return [a.topic for a in (self.segment, self.salesforce_cdc) if a]

    @classmethod
    def load(cls, path: Path | str | None, rules: Rules) -> "AdaptersConfig":
        config = cls() if path is None else load_config_file(cls, path, "adapters")
        unknown = sorted({m.metric for m in config.segment.track.values()} - set(rules.usage) - set(rules.gauges)) \
            if config.segment else []
        if unknown:
            raise ConfigError(f"adapters file {path}: segment.track maps to metrics the rules do not know: {unknown}")
        return config


def install_adapters(app, *, config: AdaptersConfig, names, raw: dict, park) -> None:
    """One agent per configured adapter, each publishing what it maps and parking what it cannot."""
    outputs = {TelemetryEvent: app.topic(names.telemetry, **raw), CrmChange: app.topic(names.crm, **raw),
               ResyncNeeded: app.topic(names.resync, **raw)}

    async def publish(record: Record) -> None:
        key = record.entity if isinstance(record, ResyncNeeded) else record.account_id
        await (await outputs[type(record)].send(key=key.encode(), value=record.to_avro()))

    async def adapt(event, adapter: str, mapper) -> None:
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
        result = mapper(document, origin, datetime.fromtimestamp(msg.timestamp, tz=timezone.utc))
        if isinstance(result, Skipped):
            SKIPPED.labels(adapter, result.reason).inc()
            return
        for record in result if isinstance(result, list) else [result]:
            await publish(record)
            observability.EVENTS_OUT.labels(adapter).inc()
            if isinstance(record, ResyncNeeded):
                RESYNC.labels(record.entity, record.change_type).inc()
                log.warning("CRM resync needed", extra={"agent": adapter, "entity": record.entity,
                                                        "change_type": record.change_type,
                                                        "record_ids": ",".join(record.record_ids) or "(all)"})

    def install(adapter: str, topic_name: str, mapper) -> None:
        @app.agent(app.topic(topic_name, **raw), name=adapter)
        async def agent(stream):
            await faust_guards.each_in_order(app, stream, adapter, lambda event: adapt(event, adapter, mapper), park)
        observability.PROGRESS.register(adapter, {topic_name})

    if config.segment:
        seg = config.segment
        install("segment", seg.topic, lambda doc, origin, at: segment.map_message(doc, seg, origin, at))
    if config.salesforce_cdc:
        cdc = config.salesforce_cdc
        install("salesforce_cdc", cdc.topic, lambda doc, origin, at: salesforce_cdc.map_event(doc, cdc, origin))
