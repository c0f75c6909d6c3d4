"""Milestone rules as configuration (YAML), validated by pydantic at start-up.

Why: tiers, levels and windows differ per customer base and change without a release; a typo must
stop the worker with one clear line rather than silently fire nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from milestone_stream.agents.drafter.holdout import Holdout
from milestone_stream.agents.drafter.riskrules import RiskRules
from milestone_stream.agents.drafter.sequence_rules import AnniversarySequence
from milestone_stream.agents.signals.rules import SignalRules
from milestone_stream.settings import Strict, load_config_file


class UsageMetric(Strict):
    tiers: list[float] = Field(min_length=1)
    label: str | None = None  # "emails sent"; defaults to the metric name

    @field_validator("tiers")
    @classmethod
    def _ascending_positive(cls, tiers: list[float]) -> list[float]:
        if any(t <= 0 for t in tiers) or tiers != sorted(set(tiers)):
            raise ValueError("tiers must be positive and strictly ascending")
        return tiers


class Spike(Strict):
    metric: str
    window_days: float = Field(7, gt=0)
    ratio: float = Field(1.5, gt=1)
    min_base: float = Field(20, ge=0)


class Dedupe(Strict):
    """Telemetry: an event id seen within `horizon_days` (by event time, against the injected clock)
    counts once, however many events came between; an older event is dead-lettered
    `beyond_dedupe_horizon`. CRM changes are idempotent (latest value by time wins, milestones once
    by id), so for them a short window of recent change ids only saves work."""

    horizon_days: float = Field(30, gt=0, le=3660)
    recent_event_ids: int = Field(64, ge=0, le=10_000)  # CRM change ids kept per account


class Drafting(Strict):
    """How notes are framed and closed (the approval issue)."""

    # metric → industry → how that industry says it ("10,000 touchpoints with clients")
    framing: dict[str, dict[str, str]] = Field(default_factory=lambda: {
        "emails_sent": {"financial services": "touchpoints with clients", "nonprofit": "communications with donors",
                        "healthcare": "messages to patients", "retail": "messages to shoppers",
                        "education": "messages to students and families"},
    })
    close_with: Literal["pace", "advocacy", "none"] = "pace"  # soft expansion note, or an advocacy ask
    advocacy_link: str | None = None                          # review or reference link for the advocacy ask
    approval_ttl_hours: float = Field(168, gt=0)              # one-tap links expire after this

    @field_validator("advocacy_link")
    @classmethod
    def _https(cls, link: str | None) -> str | None:
        if link is not None and not link.startswith(("https://", "http://")):
            raise ValueError("advocacy_link must be an http(s) URL")
        return link


class Rules(Strict):
    usage: dict[str, UsageMetric] = Field(default_factory=lambda: {
        "emails_sent": UsageMetric(tiers=[500, 1000, 5000, 10000, 50000, 100000], label="emails sent"),
    })
    gauges: list[str] = Field(default_factory=lambda: ["active_users"])
    roi_levels: list[float] = [100, 150, 200]
    anniversary_years: list[int] = [1, 2, 3, 5]
    timezone: str = "UTC"
    spike: Spike | None = Spike(metric="active_users")
    cooldown_days: float = Field(14, ge=0)
    dedupe: Dedupe = Dedupe()
    drafting: Drafting = Drafting()
    max_future_skew_seconds: float = Field(300, ge=0)
    # the largest value one telemetry event may carry: above it the event is dead-lettered
    max_event_value: float = Field(1e9, gt=0, le=1e15)
    # risk signals (agents/signals/rules.py, docs/risk-signals.md); None: none evaluated
    signals: SignalRules | None = None
    # what an open risk signal does to celebrations, and the health score (agents/drafter/riskrules.py)
    risk: RiskRules = RiskRules()
    # the measurement holdout (agents/drafter/holdout.py, docs/impact.md); None: every account celebrated
    holdout: Holdout | None = None
    # the anniversary's three-step sequence (agents/drafter/sequence.py, docs/anniversary-sequence.md); None: one note
    anniversary_sequence: AnniversarySequence | None = None

    @model_validator(mode="after")
    def _known_metrics(self) -> Rules:
        overlap = set(self.usage) & set(self.gauges)
        if overlap:
            raise ValueError(f"metrics {sorted(overlap)} are both cumulative (usage) and gauges")
        if self.spike and self.spike.metric not in set(self.usage) | set(self.gauges):
            raise ValueError(f"spike metric {self.spike.metric!r} is not a configured usage metric or gauge")
        if any(y <= 0 for y in self.anniversary_years):
            raise ValueError("anniversary_years must be positive")
        if self.signals:
            self.signals.check_metrics(set(self.usage), set(self.gauges))
        return self

    def known_metric(self, metric: str) -> bool:
        return metric in self.usage or metric in self.gauges or bool(self.signals and metric in self.signals.counters)

    @classmethod
    def load(cls, path: Path | str | None) -> Rules:
        return cls() if path is None else load_config_file(cls, path, "rules")
