"""The rules of what a risk signal does to celebrations, and of the health score: one section
(`risk:`) of the rules file, validated at start-up like the rest.

Why its own module: `streams/rules.py` holds one field pointing here, and this module imports no
drafter logic (the gate and the health arithmetic import it, not the other way round), so the rules
load without the drafter.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from milestone_stream.schemas.records import RiskLevel
from milestone_stream.settings import Strict

Component = Literal["engagement", "product_usage", "relationship", "outcomes"]
COMPONENTS: tuple[Component, ...] = ("engagement", "product_usage", "relationship", "outcomes")
DAYS_MAX = 3650  # ten years: the engagement's days are finite (NaN and inf are above it, so refused)
DEFAULT_WEIGHTS: dict[Component, float] = {"engagement": 0.4, "product_usage": 0.3, "relationship": 0.2,
                                           "outcomes": 0.1}


class HealthRules(Strict):
    """The health score's weighted components and its bands (the playbook's defaults)."""

    weights: dict[Component, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    green_from: float = Field(80, gt=0, le=100)    # 80-100 green
    yellow_from: float = Field(60, ge=0, le=100)   # 60-79 yellow, below red
    # engagement: full marks while the last product event is at most `active_days` old, none at `idle_days`
    active_days: float = Field(7, ge=0, le=DAYS_MAX)
    idle_days: float = Field(30, gt=0, le=DAYS_MAX)  # finite: an infinite span made every engagement 100

    @field_validator("weights")
    @classmethod
    def _sum_to_one(cls, weights: dict[str, float]) -> dict[str, float]:
        if not weights:
            raise ValueError("at least one health component needs a weight")
        if any(not math.isfinite(w) or w < 0 for w in weights.values()):
            raise ValueError("health weights must be finite and >= 0")
        if abs(sum(weights.values()) - 1) > 1e-6:
            raise ValueError(f"health weights must sum to 1, they sum to {sum(weights.values()):g}")
        return weights

    @model_validator(mode="after")
    def _ordered(self) -> HealthRules:
        if self.yellow_from >= self.green_from:
            raise ValueError("health bands: yellow_from must be below green_from")
        if self.idle_days <= self.active_days:
            raise ValueError("health engagement: idle_days must be above active_days")
        return self


class RiskRules(Strict):
    """`gate_level`: an open signal at or above it holds the account's celebrations (None: never)."""

    gate_level: RiskLevel | None = "orange"
    health: HealthRules = HealthRules()
