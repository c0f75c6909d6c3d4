"""Salesforce Change Data Capture (Account change events, JSON) → CRM changes, and gaps to resync.

Why these rules: a CDC UPDATE carries values only for `changedFields` (the other fields are null
whether or not they are null in Salesforce), and `nulledFields` says which were really set to
null; CREATE and UNDELETE carry the whole record; one event may name several `recordIds` that got
the same change. GAP_* and GAP_OVERFLOW events carry no values at all: treating them as changes
would blank the profile, so they become "resync needed" records instead.

Field lists come two ways. CometD (and a client that already expanded them) sends names
(`["Name", "BillingAddress.City"]`). The Pub/Sub API sends the raw Avro header, where
`changedFields`, `nulledFields` and `diffFields` are bitmaps: the first element `0x…` is a hex
number whose bit i (least significant first, i.e. read from the end of the hex string) is the
field at position i of the change event's Avro schema (position 0 is ChangeEventHeader); an element
`3-0x…` is the same for the nested fields of the compound field at top-level position 3 (bit i →
`BillingAddress.<its field i>`); a compound field named whole in `nulledFields` had every part set
to null. Positions only mean something against the schema the event was written with, so the
bitmaps are decoded only when `schema_file:` holds that schema (the JSON the Pub/Sub API's GetSchema
returns). Without it, an UPDATE whose `changedFields` are bitmaps takes every mapped field that has
a value in the event, and bitmap `nulledFields` cannot be applied (a field set to null stays as it
was) — configure the schema to get both right. A mapped field listed in `diffFields` is left out:
its value is a diff of a long text, not the text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastavro.schema import expand_schema, parse_schema
from pydantic import Field, PrivateAttr, field_validator, model_validator

from milestone_stream.agents.ingest.mapping import (
    Rejected,
    Scalar,
    Skipped,
    calendar_date,
    dig,
    finite,
    instant,
    number,
    scalar,
)
from milestone_stream.schemas.records import CrmChange, FieldChange, Origin, ResyncNeeded
from milestone_stream.settings import Strict

EMPTY_RECORD_ID = "000000000000000AAA"  # what an overflow event names instead of a record
DELETED = "crm_deleted"  # profile field set by DELETE (true) and UNDELETE (false)
BITMAP = re.compile(r"(?:(\d{1,6})-)?0x([0-9A-Fa-f]*)")  # `0x650004E0`, or `3-0x10` for compound field 3
LISTS = ("changedFields", "nulledFields", "diffFields")


@dataclass(frozen=True)
class Layout:
    """The field positions of a change event's Avro schema: what the header's bitmaps count."""

    top: tuple[str, ...]  # top-level field names by position (0 is ChangeEventHeader)
    nested: dict[int, tuple[str, ...]]  # position of a compound field (a record) → its field names

    def knows(self, field: str) -> bool:
        """`Name`, or `BillingAddress.City` with City a field of the compound BillingAddress."""
        parent, _, part = field.partition(".")
        if parent not in self.top:
            return False
        return not part or part in self.nested.get(self.top.index(parent), ())


def _record(schema: object) -> dict[str, Any] | None:
    """The record inside a field type: the type itself, or the record branch of a union with null."""
    for branch in schema if isinstance(schema, list) else [schema]:
        if isinstance(branch, dict) and branch.get("type") == "record":
            return branch
    return None


def read_layout(path: Path) -> Layout:
    """The layout of the schema file; any problem is a `ValueError` of one line (a config error)."""
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"schema_file {path} cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"schema_file {path} is not JSON: {exc}") from None
    try:
        parse_schema(raw)  # a valid Avro schema, with every named type defined
        schema = expand_schema(raw)  # a named type used twice (Address for Billing and Shipping) spelled out
    except Exception as exc:  # fastavro raises several types for a bad schema; each is a config error here
        first = (str(exc).splitlines() or [repr(exc)])[0]
        raise ValueError(f"schema_file {path} is not an Avro schema: {first}") from None
    fields = schema.get("fields") if isinstance(schema, dict) and schema.get("type") == "record" else None
    if not fields or fields[0].get("name") != "ChangeEventHeader":
        raise ValueError(f"schema_file {path} is not a change event schema "
                         "(a record whose first field is ChangeEventHeader)")
    nested = {i: tuple(f["name"] for f in rec["fields"]) for i, field in enumerate(fields) if i
              for rec in [_record(field["type"])] if rec is not None}
    return Layout(top=tuple(f["name"] for f in fields), nested=nested)


class FieldMapping(Strict):
    to: str = Field(min_length=1)  # profile field: contract_start, roi_percent, adoption.<feature>, ...
    type: Literal["auto", "text", "number", "boolean", "date", "datetime"] = "auto"


class CdcConfig(Strict):
    topic: str = Field(min_length=1)
    entity: str = "Account"
    fields: dict[str, FieldMapping] = Field(min_length=1)  # Salesforce field (dotted for compound) → profile
    account_prefix: str = ""  # account id = prefix + Salesforce record id
    source: str = "salesforce"
    # the change event's Avro schema (JSON, as GetSchema returns it): decodes bitmap changedFields/nulledFields
    schema_file: Path | None = None
    _layout: Layout | None = PrivateAttr(None)

    @field_validator("fields", mode="before")
    @classmethod
    def _shorthand(cls, fields: object) -> object:
        """`Name: name` is short for `Name: {to: name}`."""
        return {k: {"to": v} if isinstance(v, str) else v for k, v in (fields or {}).items()} \
            if isinstance(fields, dict) else fields

    @model_validator(mode="after")
    def _read_schema(self) -> CdcConfig:
        """Read the schema once at start-up; a mapped field it does not have is a typo, stopped here."""
        if self.schema_file is not None:
            layout = read_layout(self.schema_file)
            unknown = sorted(f for f in self.fields if not layout.knows(f))
            if unknown:
                raise ValueError(f"fields not in the change event schema {self.schema_file}: {unknown}")
            self._layout = layout
        return self

    @property
    def layout(self) -> Layout | None:
        return self._layout


def _payload(message: object) -> dict:
    """The event with its header: top level (Pub/Sub API JSON), or under `payload` / `data.payload` (CometD)."""
    for candidate in (message, dig(message, "payload"), dig(message, "data.payload")):
        if isinstance(candidate, dict) and isinstance(candidate.get("ChangeEventHeader"), dict):
            return candidate
    raise Rejected("malformed", "no ChangeEventHeader in the message")


def _strings(header: dict, key: str) -> list[str]:
    """A header list of strings (absent or null: empty)."""
    value = header.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Rejected("malformed", f"ChangeEventHeader.{key} must be a list of strings")
    return value


def decode_fields(entries: list[str], layout: Layout, key: str = "changedFields") -> set[str]:
    """Field names from a header list: names kept, bitmaps decoded against the schema's positions."""
    names = set()
    for entry in entries:
        match = BITMAP.fullmatch(entry)
        if not match:
            names.add(entry)
            continue
        parent, bits = match.group(1), int(match.group(2) or "0", 16)
        if parent is None:
            fields, prefix = layout.top, ""
        elif int(parent) in layout.nested:
            fields, prefix = layout.nested[int(parent)], layout.top[int(parent)] + "."
        else:
            raise Rejected("schema_mismatch", f"{key} {entry[:40]!r}: position {parent} is not a compound field "
                                              "in the configured schema (is schema_file the event's schema?)")
        if bits.bit_length() > len(fields):
            raise Rejected("schema_mismatch", f"{key} {entry[:40]!r} names field {bits.bit_length() - 1}; "
                                              f"the configured schema has {len(fields)} "
                                              "(is schema_file the event's schema?)")
        names.update(prefix + fields[i] for i in range(bits.bit_length()) if bits >> i & 1)
    return names


def _convert(value: object, mapping: FieldMapping, field: str) -> Scalar:
    if value is None:
        return None
    if mapping.type == "auto":
        return scalar(value, field)
    if mapping.type == "text":
        if isinstance(value, str):
            return value
        if finite(value):
            return str(value)
        raise Rejected("invalid_value", f"{field} must be text, got {type(value).__name__}")
    if mapping.type == "number":
        return number(value, field)
    if mapping.type == "boolean":
        if isinstance(value, bool):
            return value
        raise Rejected("invalid_value", f"{field} must be a boolean, got {type(value).__name__}")
    if mapping.type == "date":
        return calendar_date(value, field)
    return instant(value, field, "invalid_value").isoformat()


def _changed(header: dict, body: dict, change_type: str, config: CdcConfig) -> list[FieldChange]:
    changed: Collection[str]
    nulled: Collection[str]
    diffs: Collection[str]
    changed, nulled, diffs = (_strings(header, key) for key in LISTS)
    if config.layout is not None:
        changed, nulled, diffs = (decode_fields(names, config.layout, key)
                                  for names, key in zip((changed, nulled, diffs), LISTS, strict=True))
        opaque = False
    else:  # bitmaps cannot be read without the schema: names only (see the module doc)
        opaque = any(BITMAP.fullmatch(f) for f in changed)
        changed, nulled, diffs = ({f for f in v if not BITMAP.fullmatch(f)} for v in (changed, nulled, diffs))

    def listed(field: str, names: Collection[str]) -> bool:
        """Named itself, or as the compound field it is part of (`BillingAddress` for `BillingAddress.City`)."""
        return field in names or field.split(".")[0] in names

    if change_type in ("CREATE", "UNDELETE") or opaque or not changed:
        named = {f for f in config.fields if dig(body, f) is not None}
    else:  # a compound field counts as changed when any part is listed (`BillingAddress.City`)
        named = {f for f in config.fields if listed(f, changed) or any(c.startswith(f + ".") for c in changed)}
    cleared = sorted(f for f in config.fields if listed(f, nulled))
    changes = [FieldChange(field=config.fields[f].to, value=_convert(dig(body, f), config.fields[f], f))
               for f in sorted(named) if f not in cleared and not listed(f, diffs)]
    changes += [FieldChange(field=config.fields[f].to, value=None) for f in cleared]
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
    record_ids = header.get("recordIds")
    if record_ids is not None and not isinstance(record_ids, list):
        raise Rejected("malformed", "ChangeEventHeader.recordIds must be a list")
    records = [r for r in record_ids or [] if isinstance(r, str) and r and r != EMPTY_RECORD_ID]
    committed = instant(header.get("commitTimestamp"), "commitTimestamp")
    transaction, sequence = header.get("transactionKey"), header.get("sequenceNumber")
    transaction = transaction if isinstance(transaction, str) and transaction else None
    sequence = sequence if isinstance(sequence, int) and not isinstance(sequence, bool) and finite(sequence) else None
    if change_type.startswith("GAP_"):
        return ResyncNeeded(entity=entity, record_ids=[] if change_type == "GAP_OVERFLOW" else records,
                            change_type=change_type, committed_at=committed,
                            transaction_key=transaction, **origin.model_dump())
    if change_type not in ("CREATE", "UPDATE", "DELETE", "UNDELETE"):
        raise Rejected("malformed", f"unknown changeType {change_type[:40]!r}")
    if not records:
        raise Rejected("no_account", f"{change_type} event names no recordIds")
    changes = _changed(header, body, change_type, config)
    if not changes:
        return Skipped("no_mapped_fields")
    event_ref = f"{transaction}:{sequence}" if transaction is not None and sequence is not None else origin.ref
    return [CrmChange(change_id=f"sfcdc:{event_ref}:{record}", account_id=config.account_prefix + record,
                      changes=changes, occurred_at=committed, source=config.source,
                      source_record=f"{entity} {record}", origin=origin)
            for record in records]
