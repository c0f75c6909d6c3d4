"""The ingestion adapters' configuration (`MILESTONES_ADAPTERS`): which sources, mapped how.

Why validated at start-up with the rules: a Segment event mapped to a metric the rules do not know
would park every event it maps; the worker stops with one line instead.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import model_validator

from milestone_stream.agents.ingest.gainsight_px import PxConfig
from milestone_stream.agents.ingest.salesforce_cdc import CdcConfig
from milestone_stream.agents.ingest.segment import SegmentConfig
from milestone_stream.rules import Rules
from milestone_stream.settings import ConfigError, Strict, load_config_file


class AdaptersConfig(Strict):
    segment: SegmentConfig | None = None
    salesforce_cdc: CdcConfig | None = None
    gainsight_px: PxConfig | None = None

    @model_validator(mode="after")
    def _distinct_topics(self) -> AdaptersConfig:
        topics = self.source_topics()
        if len(set(topics)) < len(topics):
            raise ValueError("segment, salesforce_cdc and gainsight_px must read different topics")
        return self

    def source_topics(self) -> list[str]:
        return [a.topic for a in (self.segment, self.salesforce_cdc, self.gainsight_px) if a]

    @classmethod
    def load(cls, path: Path | str | None, rules: Rules) -> AdaptersConfig:
        config = cls() if path is None else load_config_file(cls, path, "adapters")
        known = set(rules.usage) | set(rules.gauges)
        mapped: dict[str, set[str]] = {
            "segment.track": {m.metric for m in config.segment.track.values()} if config.segment else set(),
            "gainsight_px.events": {m.metric for m in config.gainsight_px.events.values()} if config.gainsight_px
            else set()}
        for section, metrics in mapped.items():
            unknown = sorted(metrics - known)
            if unknown:
                raise ConfigError(f"adapters file {path}: {section} maps to metrics the rules do not know: {unknown}")
        return config
