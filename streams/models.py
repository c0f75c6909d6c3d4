"""Pydantic models: the in-process types mirroring the Avro contracts in `schemas/`.

Why both: the `.avsc` files are the contract with other teams; these models validate what the
contract cannot express (non-empty ids, non-negative finite values) at the edge of each stage.
"""
from __future__ import annotations

import math
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from milestone_stream.codec import codec

NonEmpty = Field(min_length=1)


class Record(BaseModel):
    """A topic value: encodes to and decodes from its Avro contract."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str]

    def to_avro(self) -> bytes:
        return codec(self.schema_name).encode(self.model_dump())

    @classmethod
    def from_avro(cls, data: bytes | None) -> "Record":
        """Decode and validate; raises `CodecError` or pydantic's `ValidationError`."""
        return cls.model_validate(codec(cls.schema_name).decode(data))


class Origin(BaseModel):
    """Where an ingestion adapter read the message a record was mapped from (see `streams/adapters.py`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    topic: str
    partition: int
    offset: int

    @property
    def stream(self) -> str:
        """The source partition: offsets are ordered within it."""
        return f"{self.topic}#{self.partition}"

    @property
    def ref(self) -> str:
        """The source message, for ids of records mapped from messages that carry none."""
        return f"{self.topic}:{self.partition}:{self.offset}"


class TelemetryEvent(Record):
    schema_name: ClassVar[str] = "telemetry_event"
    event_id: str = NonEmpty
    account_id: str = NonEmpty
    metric: str = NonEmpty
    value: float
    occurred_at: datetime
    source: str
    attributes: dict[str, str] = {}
    origin: Origin | None = None

    @field_validator("value")
    @classmethod
    def _finite_non_negative(cls, v: float) -> float:
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"value must be a finite number >= 0, got {v}")
        return v


class FieldChange(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    field: str = NonEmpty
    value: bool | int | float | str | None


class Contact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    email: str
    role: str


class CrmChange(Record):
    schema_name: ClassVar[str] = "crm_change"
    change_id: str = NonEmpty
    account_id: str = NonEmpty
    changes: list[FieldChange] = []
    contacts: list[Contact] | None = None
    occurred_at: datetime
    source: str
    source_record: str | None = None
    origin: Origin | None = None


class Evidence(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    source: str
    record: str
    occurred_at: datetime


MilestoneKind = Literal[
    "usage_threshold", "roi_threshold", "adoption_spike", "feature_adopted", "anniversary",
    "renewal_signed", "certification", "qbr_completed", "implementation_signed_off",
]


class Milestone(Record):
    schema_name: ClassVar[str] = "milestone"
    milestone_id: str = NonEmpty
    account_id: str = NonEmpty
    kind: MilestoneKind
    metric: str | None = None
    threshold: float | None = None
    value: float | None = None
    title: str
    reached_at: datetime
    evidence: list[Evidence] = []


class Citation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    figure: str
    source: str
    record: str
    as_of: datetime


class ApprovalRequest(Record):
    schema_name: ClassVar[str] = "approval_request"
    approval_id: str = NonEmpty
    milestone_ids: list[str]
    account_id: str
    account_name: str
    csm_email: str
    recipients: list[Contact]
    subject: str
    body_text: str
    body_html: str
    citations: list[Citation]
    drafted_by: str
    guard_verdict: str
    policy_notes: list[str] = []
    created_at: datetime
    expires_at: datetime
    csm_name: str | None = None


class ApprovalDecision(Record):
    schema_name: ClassVar[str] = "approval_decision"
    approval_id: str = NonEmpty
    decision: Literal["send", "dont_send"]
    csm_email: str
    subject: str | None = None
    body_text: str | None = None
    reason: str | None = None
    decided_at: datetime
    account_id: str = ""
    body_html: str | None = None
    recipients: list[Contact] = []
    csm_name: str | None = None


class EmailOutcome(Record):
    schema_name: ClassVar[str] = "email_outcome"
    approval_id: str
    message_id: str
    outcome: Literal["attempting", "retrying", "sent", "failed", "unknown", "not_sent"]
    attempt: int
    detail: str | None = None
    recorded_at: datetime
    purpose: Literal["customer_email", "csm_notification", "csm_webhook"] = "customer_email"


class DeadLetter(Record):
    schema_name: ClassVar[str] = "dead_letter"
    stage: str
    reason: str
    error: str
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    failed_at: datetime


class ResyncNeeded(Record):
    schema_name: ClassVar[str] = "resync_needed"
    entity: str
    record_ids: list[str]
    change_type: str
    committed_at: datetime
    transaction_key: str | None = None
    topic: str
    partition: int
    offset: int


RECORD_TYPES: dict[str, type[Record]] = {
    cls.schema_name: cls
    for cls in (TelemetryEvent, CrmChange, Milestone, ApprovalRequest, ApprovalDecision, EmailOutcome, DeadLetter,
                ResyncNeeded)
}


