"""The rules file's `anniversary_sequence:` section: when the anniversary's later steps are due, what
suppresses, branches or cancels them, and the catalogue of capabilities step 2 chooses from.

Why a module of its own: `streams/rules.py` validates it at start-up and must not import the drafter's
logic (agents/drafter/sequence.py, which reads the CRM through the drafter's context and so imports
the rules). Validated once: a mistake stops the worker with one line (docs/anniversary-sequence.md).
"""
from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from milestone_stream.settings import Strict

Stage = Literal["early", "growing", "mature"]


class Capability(Strict):
    """One entry of the catalogue step 2 chooses from."""

    name: str = Field(min_length=1, max_length=80)
    summary: str = Field(min_length=1, max_length=300)       # one sentence, as the customer reads it
    use_cases: list[str] = Field([], max_length=50)          # matched to the CRM's top_use_case; empty: any
    stages: list[Stage] = []                                 # adoption stages it suits; empty: any


class AnniversarySequence(Strict):
    """The rules file's `anniversary_sequence:` section (absent: an anniversary is one note)."""

    follow_up_days: float = Field(7, gt=0, le=60)            # step 2 after step 1
    last_step_days: float = Field(14, gt=0, le=90)           # step 3 after step 1
    notice_hours: float = Field(24, ge=0, le=14 * 24)        # drafted this long before it is due
    qbr_window_days: float = Field(365, gt=0, le=730)        # a QBR this recent suppresses step 2
    renewal_window_days: float = Field(90, gt=0, le=365)     # a renewal this close: step 3 prepares it
    churned_statuses: list[str] = Field(["churned"], min_length=1)   # CRM `status` values that cancel
    growing_from_modules: int = Field(2, ge=1)               # adoption stage from modules adopted,
    mature_from_modules: int = Field(4, ge=2)                # when the CRM has no `adoption_stage`
    capabilities_per_note: int = Field(3, ge=1, le=10)
    capabilities: list[Capability] = Field([], max_length=200)

    @field_validator("churned_statuses")
    @classmethod
    def _lower(cls, statuses: list[str]) -> list[str]:
        return [s.strip().lower() for s in statuses]

    @model_validator(mode="after")
    def _ordered(self) -> AnniversarySequence:
        if self.last_step_days <= self.follow_up_days:
            raise ValueError("last_step_days must be later than follow_up_days")
        if self.notice_hours / 24 >= self.follow_up_days:
            raise ValueError("notice_hours must be shorter than follow_up_days (step 2 would be drafted before "
                             "step 1 is decided)")
        if self.mature_from_modules <= self.growing_from_modules:
            raise ValueError("mature_from_modules must be greater than growing_from_modules")
        return self

    def due_after(self, step: str) -> timedelta:
        return timedelta(days=self.follow_up_days if step == "2" else self.last_step_days)
