"""`activities.outcomes`: the outbound CRM stage's record of each call (schemas/activity_outcome.avsc).

Why its own topic and type rather than a purpose on emails.outcomes: the sender and the approval UI
read every email outcome and know its purposes; a CRM call is not an email, and a second target
(Salesforce) adds only a `target` name here, not a value every email reader must learn.
"""
from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from milestone_stream.schemas.records import ID_MAX, Record

ActivityState = Literal["attempting", "retrying", "sent", "failed", "unknown"]


class ActivityOutcome(Record):
    schema_name: ClassVar[str] = "activity_outcome"
    approval_id: str = Field(min_length=1, max_length=ID_MAX)
    target: str = Field(min_length=1, max_length=ID_MAX)
    external_id: str = Field(min_length=1, max_length=ID_MAX)
    outcome: ActivityState
    attempt: int
    detail: str | None = None
    recorded_at: datetime
    input: str | None = Field(None, max_length=2 * ID_MAX)  # topic:partition:offset of the input

    #: outcomes after which the call is never made again
    TERMINAL: ClassVar[frozenset[str]] = frozenset({"sent", "failed", "unknown"})

    @property
    def terminal(self) -> bool:
        return self.outcome in self.TERMINAL
