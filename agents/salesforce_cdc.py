"""Salesforce Change Data Capture (Account change events, JSON) → CRM changes, and gaps to resync.

Why these rules: a CDC UPDATE carries values only for `changedFields` (the other fields are null
whether or not they are null in Salesforce), and `nulledFields` says which were really set to
null; CREATE and UNDELETE carry the whole record; one event may name several `recordIds` that got
the same change. GAP_* and GAP_OVERFLOW events carry no values at all: treating them as changes
would blank the profile, so they become "resync needed" records instead.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from milestone_stream.agents.mapping import Rejected, Skipped, calendar_date, dig, instant, number
from milestone_stream.models import CrmChange, FieldChange, Origin, ResyncNeeded
from milestone_stream.settings import Strict

EMPTY_RECORD_ID = "000000000000000AAA"  # what an overflow event names instead of a record
DELETED = "crm_deleted"  # profile field set by DELETE (true) and UNDELETE (false)


class FieldMapping(Strict):
    to: str = Field(min_length=1)  # profile field: contract_start, roi_percent, adoption.<feature>, ...
    type: Literal["auto", "text", "number", "boolean", "date", "datetime"] = "auto"


class CdcConfig(Strict):
    topic: str = Field(min_length=1)
    entity: str = "Account"
    fields: dict[str, FieldMapping] = Field(min_length=1)  # Salesforce field (dotted for compound) → profile
    account_prefix: str = ""  # account id = prefix + Salesforce record id
    source: str = "salesforce"

    @field_validator("fields", mode="before")
    @classmethod
    def _shorthand(cls, fields):
        """`Name: name` is short for `Name: {to: name}`."""
        return {k: {"to": v} if isinstance(v, str) else v for k, v in (fields or {}).items()}


def _payload(message: object) -> dict:
    """The event with its header: top level (Pub/Sub API JSON), or under `payload` / `data.payload` (CometD)."""
    for candidate in (message, dig(message, "payload"), dig(message, "data.payload")):
        if isinstance(candidate, dict) and isinstance(candidate.get("ChangeEventHeader"), dict):
            return candidate
    raise Rejected("malformed", "no ChangeEventHeader in the message")


def _convert(value, mapping: FieldMapping, field: str):
    if value is None or mapping.type == "auto":
        if isinstance(value, (dict, list)):
            raise Rejected("invalid_value", f"{field} is a compound value; map its parts ({field}.<part>)")
        return value
    if mapping.type == "text":
        return str(value)
    if mapping.type == "number":
        return number(value, field)
    if mapping.type == "boolean":
        if isinstance(value, bool):
            return value
        raise Rejected("invalid_value", f"{field} must be a boolean, got {value!r}")
    if mapping.type == "date":
        return calendar_date(value, field)
    return instant(value, field).isoformat()


def _changed(header: dict, body: dict, change_type: str, config: CdcConfig) -> list[FieldChange]:
    nulled = set(header.get("nulledFields") or [])
    if change_type in ("CREATE", "UNDELETE"):
        named = {f for f in config.fields if dig(body, f) is not None}
    else:
        listed = [f for f in header.get("changedFields") or [] if not str(f).startswith("0x")]
        # bitmap-encoded fields (Pub/Sub API Avro) cannot be read without the schema: use the values present
        changed = set(listed) if listed else {f for f in config.fields if dig(body, f) is not None}
        # a compound field counts as changed when any part is listed (`BillingAddress.City`)
        named = {f for f in config.fields if f in changed or any(c.startswith(f + ".") for c in changed)
                 or f.split(".")[0] in changed}
    changes = [FieldChange(field=config.fields[f].to, value=_convert(dig(body, f), config.fields[f], f))
               for f in sorted(named) if f not in nulled]
    changes += [FieldChange(field=config.fields[f].to, value=None) for f in sorted(nulled) if f in config.fields]
    if change_type in ("DELETE", "UNDELETE"):
        changes.append(FieldChange(field=DELETED, value=change_type == "DELETE"))
    return changes


def map_event(message: object, config: CdcConfig, origin: Origin) -> list[CrmChange] | ResyncNeeded | Skipped:
    """One change event → one CRM change per record, a resync request for a gap, or a counted skip."""
    body = _payload(message)
    header = body["ChangeEventHeader"]
    entity, change_type = header.get("entityName"), header.get("changeType")
    if not isinstance(change_type, str) or not isinstance(entity, str):
        raise Rejected("malformed", "ChangeEventHeader lacks entityName or changeType")
    if entity != config.entity:
        return Skipped("other_entity")
    records = [r for r in header.get("recordIds") or [] if isinstance(r, str) and r and r != EMPTY_RECORD_ID]
    committed = instant(header.get("commitTimestamp"), "commitTimestamp")
    if change_type.startswith("GAP_"):
        return ResyncNeeded(entity=entity, record_ids=[] if change_type == "GAP_OVERFLOW" else records,
                            change_type=change_type, committed_at=committed,
                            transaction_key=header.get("transactionKey"), **origin.model_dump())
    if change_type not in ("CREATE", "UPDATE", "DELETE", "UNDELETE"):
        raise Rejected("malformed", f"unknown changeType {change_type!r}")
    if not records:
        raise Rejected("no_account", f"{change_type} event names no recordIds")
    changes = _changed(header, body, change_type, config)
    if not changes:
        return Skipped("no_mapped_fields")
    event_key = header.get("transactionKey"), header.get("sequenceNumber")
    event_ref = ":".join(map(str, event_key)) if all(k is not None for k in event_key) else origin.ref
    return [CrmChange(change_id=f"sfcdc:{event_ref}:{record}", account_id=config.account_prefix + record,
                      changes=changes, occurred_at=committed, source=config.source,
                      source_record=f"{entity} {record}", origin=origin)
            for record in records]
