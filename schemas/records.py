"""Pydantic models: the in-process types mirroring the Avro contracts in `schemas/`.

Why both: the `.avsc` files are the contract with other teams; these models validate what the
contract cannot express (non-empty ids, finite values, bounded lengths) at the edge of each stage.
Every text that comes from a producer or a CRM has a length bound here, so no hostile value can
grow a table row or an outgoing record past what the broker accepts; a record over a bound is a
dead letter naming the field (`invalid`), never a crash further down.
"""
from __future__ import annotations

import math
from datetime import datetime
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from milestone_stream.schemas.codec import codec

# Bounds on text from producers and CRMs (characters)
ID_MAX = 256        # event ids, change ids, account ids, metric and field names
NAME_MAX = 256      # people's names, roles, sources
EMAIL_MAX = 320     # RFC 5321: 64 + 1 + 255
TEXT_MAX = 2_000    # a CRM field's text value (an account name, an industry, a note)
NUMBER_MAX = 1e15   # magnitude of a CRM field's number (finite)
FIELDS_MAX = 256    # field changes in one CRM change
CONTACTS_MAX = 100  # key contacts in one CRM change
ATTRIBUTES_MAX = 32

NonEmpty = Field(min_length=1, max_length=ID_MAX)
Name = Field(max_length=NAME_MAX)


class Record(BaseModel):
    """A topic value: encodes to and decodes from its Avro contract."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str]

    def to_avro(self) -> bytes:
        return codec(self.schema_name).encode(self.model_dump())

    @classmethod
    def from_avro(cls, data: bytes | None) -> Self:
        """Decode and validate; raises `CodecError` or pydantic's `ValidationError`."""
        return cls.model_validate(codec(cls.schema_name).decode(data))


class Origin(BaseModel):
    """Where an ingestion adapter read the message a record was mapped from (see `streams/adapters.py`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    topic: str = Field(min_length=1, max_length=249)  # Kafka's own limit on topic names
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)

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
    source: str = Name
    attributes: dict[str, str] = Field({}, max_length=ATTRIBUTES_MAX)
    origin: Origin | None = None

    @field_validator("value")
    @classmethod
    def _finite_non_negative(cls, v: float) -> float:
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"value must be a finite number >= 0, got {v}")
        return v

    @field_validator("attributes")
    @classmethod
    def _short_attributes(cls, attributes: dict[str, str]) -> dict[str, str]:
        if any(len(k) > ID_MAX or len(v) > TEXT_MAX for k, v in attributes.items()):
            raise ValueError(f"attribute names are at most {ID_MAX} characters and values {TEXT_MAX}")
        return attributes


class FieldChange(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    field: str = NonEmpty
    value: bool | int | float | str | None

    @field_validator("value")
    @classmethod
    def _bounded(cls, v: bool | int | float | str | None) -> bool | int | float | str | None:
        if isinstance(v, str) and len(v) > TEXT_MAX:
            raise ValueError(f"text values are at most {TEXT_MAX:,} characters, got {len(v):,}")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not (math.isfinite(v) and abs(v) <= NUMBER_MAX):
            raise ValueError(f"numbers must be finite and at most {NUMBER_MAX:g} in magnitude, got {v}")
        return v


class Contact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Name
    email: str = Field(max_length=EMAIL_MAX)
    role: str = Name


class CrmChange(Record):
    schema_name: ClassVar[str] = "crm_change"
    change_id: str = Field(min_length=1, max_length=2 * ID_MAX)
    account_id: str = NonEmpty
    changes: list[FieldChange] = Field([], max_length=FIELDS_MAX)
    contacts: list[Contact] | None = Field(None, max_length=CONTACTS_MAX)
    occurred_at: datetime
    source: str = Name
    source_record: str | None = Field(None, max_length=2 * ID_MAX)
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


class HealthComponent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    weight: float
    score: float | None  # None: no input was available
    source: str


class Health(BaseModel):
    """An account's health score (0-100) and band, for the CSM only: never in a customer email."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    score: float
    band: Literal["green", "yellow", "red"]
    components: list[HealthComponent]


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
    milestone_titles: list[str] = []    # v3: empty in requests written before
    milestone_sources: list[str] = []   # v3: one per title, "source system: record"
    held_out: bool = False              # v4: in the measurement holdout: drafted and shown, never sent
    health: Health | None = None        # v4: the health score when drafted (CSM only)
    risk_signals: list[str] = []        # v4: titles of the open risk signals when drafted


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
    follow_ups: bool = False            # v4: "send this and the follow-ups" (the anniversary sequence's later steps)


Outcome = Literal["attempting", "retrying", "sent", "failed", "unknown", "not_sent"]
# which message of an approval: the approved note, the CSM's notification by email, webhook and Slack
# (csm_slack; csm_slack_update once decided), or the CSM's daily digest (email, Slack), whose "approval
# id" is the digest's own deterministic id; or a risk signal's alert to the CSM (email, Slack), whose
# "approval id" is the signal_id: one alert per episode
Purpose = Literal["customer_email", "csm_notification", "csm_webhook", "csm_slack", "csm_slack_update",
                  "csm_digest", "csm_digest_slack", "risk_alert", "risk_alert_slack"]


class EmailOutcome(Record):
    schema_name: ClassVar[str] = "email_outcome"
    approval_id: str
    message_id: str
    outcome: Outcome
    attempt: int
    detail: str | None = None
    recorded_at: datetime
    purpose: Purpose = "customer_email"

    #: outcomes after which a message is never attempted again (`attempting` and `retrying` are not)
    TERMINAL: ClassVar[frozenset[str]] = frozenset({"sent", "failed", "unknown", "not_sent"})

    @property
    def terminal(self) -> bool:
        """This message is done with: the sender does not touch it again, the UI shows it as final."""
        return self.outcome in self.TERMINAL


RiskKind = Literal["usage_drop", "nps_drop", "ticket_surge", "champion_departure", "no_new_users",
                   "invoice_overdue", "mrr_contraction"]
RiskLevel = Literal["yellow", "orange", "red", "executive"]
#: lowest to highest: a gate "at or above orange" holds for orange, red and executive
RISK_LEVELS: tuple[RiskLevel, ...] = ("yellow", "orange", "red", "executive")


class RiskSignal(Record):
    """One risk episode's opening or clearing (the signals issue); opening and clearing share signal_id."""

    schema_name: ClassVar[str] = "risk_signal"
    signal_id: str = NonEmpty
    account_id: str = NonEmpty
    kind: RiskKind
    level: RiskLevel
    state: Literal["open", "cleared"]
    title: str
    opened_at: datetime
    at: datetime
    evidence: list[Evidence] = []
    playbook: list[str] = []
    csm_email: str | None = None
    account_name: str | None = None


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
                ResyncNeeded, RiskSignal)
}


