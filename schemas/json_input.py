"""Telemetry events and CRM changes as JSON documents, beside Avro, on the same topics.

Why: platform teams that cannot link an Avro library (a shell script, a log shipper, a Lambda)
publish plain JSON matching the same contract (the pydantic records, shipped as JSON Schema in
`schemas/json/`). The first byte tells the two apart: Avro single-object encoding starts with
`C3 01`, a JSON document with `{` (after optional JSON whitespace), so no header or topic is needed.

Hostile JSON is refused here, before it reaches a rule: over the size bound, not UTF-8, NaN or
Infinity literals and numbers that overflow to infinity (Python's `json` accepts them, the JSON
standard does not), duplicate keys (which value would win is parser-dependent), nesting deeper than
the parser's bound, wrong types (validated in pydantic's strict JSON mode: `"5"` is not a number),
times without a UTC offset. Each raises a `CodecError` whose `reason` the stage's dead letter
carries, with the failing field and a bounded message.
"""
from __future__ import annotations

import io
import json
import math
from datetime import datetime
from typing import Any, TypeVar

from fastavro import schemaless_reader, schemaless_writer
from pydantic import ValidationError

from milestone_stream.schemas.codec import CodecError, codec
from milestone_stream.schemas.records import CrmChange, Record, TelemetryEvent

#: the records a producer may send as JSON (the product's input topics); the rest are Avro only
JSON_RECORDS: tuple[type[Record], ...] = (TelemetryEvent, CrmChange)
#: the largest document read (the worker's default MILESTONES_MAX_MESSAGE_BYTES, and about the
#: broker's default message.max.bytes: a larger one could not have been published with defaults)
MAX_DOCUMENT_BYTES = 1_000_000
ERROR_MAX = 1_000    # characters of a dead letter's error text built here
PART_MAX = 80        # characters of one field name or message within it
ERRORS_SHOWN = 5     # validation errors named (the rest counted)
WHITESPACE = b" \t\r\n"  # JSON's own (RFC 8259 §2)
BOM = b"\xef\xbb\xbf"      # UTF-8 byte-order mark: not JSON (RFC 8259 §8.1), but what some editors write
MISTAKEN_STARTS = WHITESPACE + b"[" + BOM[:1]

R = TypeVar("R", bound=Record)


class MalformedJson(CodecError):
    reason = "malformed_json"


class DocumentTooLarge(CodecError):
    reason = "too_large"


class InvalidDocument(CodecError):
    """Well-formed JSON that breaks the record's contract (the same reason as an invalid Avro record)."""

    reason = "invalid"


def is_json(data: bytes) -> bool:
    """A JSON document (an object) rather than Avro: `{` is the first byte after JSON whitespace."""
    first = data[:1]
    if first == b"{":
        return True
    if not first or first not in WHITESPACE:  # the hot path: Avro starts with C3 (or a registry's 00)
        return False
    return data.lstrip(WHITESPACE)[:1] == b"{"


def meant_as_json(data: bytes) -> bool:
    """A JSON object, or what a JSON producer got wrong (a byte-order mark before it, an array of
    documents): read as JSON so that its dead letter says what is wrong, not `wrong_marker`."""
    first = data[:1]
    if first == b"{":
        return True
    if not first or first not in MISTAKEN_STARTS:  # the hot path: Avro starts with C3 (or a registry's 00)
        return False
    return data.removeprefix(BOM).lstrip(WHITESPACE)[:1] in (b"{", b"[")


def accepts_json(record_type: type[Record], data: bytes) -> bool:
    """This input is a JSON document of a record that may arrive as JSON."""
    return record_type in JSON_RECORDS and meant_as_json(data)


def decode(record_type: type[R], data: bytes, max_bytes: int = MAX_DOCUMENT_BYTES) -> R:
    """The validated record from a JSON document; raises a `CodecError` (with its reason) otherwise."""
    if len(data) > max_bytes:
        raise DocumentTooLarge(f"{record_type.schema_name}: the JSON document is {len(data):,} bytes, "
                               f"over the {max_bytes:,} read")
    if data.startswith(BOM):
        raise MalformedJson(f"{record_type.schema_name}: the document starts with a UTF-8 byte-order mark, which "
                            "JSON does not allow (RFC 8259 §8.1): send it without one")
    if data.lstrip(WHITESPACE)[:1] == b"[":
        raise InvalidDocument(f"{record_type.schema_name}: a JSON array: send one document (an object) per message")
    parse(data, record_type.schema_name)
    try:
        # strict: the contract's types as JSON spells them (a number is a number, a time an RFC 3339 string)
        record = record_type.model_validate_json(data, strict=True)
    except ValidationError as exc:
        raise InvalidDocument(f"{record_type.schema_name}: {describe(exc)}") from None
    naive = [name for name, value in record if isinstance(value, datetime) and value.utcoffset() is None]
    if naive:
        raise InvalidDocument(f"{record_type.schema_name}: {naive[0]}: a time needs its UTC offset "
                              "(RFC 3339, e.g. 2026-11-25T12:00:00Z)")
    # through the Avro contract and back: a JSON record is then exactly what the same record sent as
    # Avro reads as (times in UTC to the millisecond), and what Avro cannot hold (a partition beyond
    # 32 bits, a time that leaves the calendar in UTC) is refused here, not when a stage re-encodes it
    # (the body alone, with the topic's current schema: the framing, single-object or a registry's, is beside the point)
    schema = codec(record_type.schema_name).schema
    try:
        body = io.BytesIO()
        schemaless_writer(body, schema, record.model_dump())
        body.seek(0)
        return record_type.model_validate(schemaless_reader(body, schema, schema))
    except (ValueError, TypeError, OverflowError) as exc:  # fastavro's: a value the Avro type cannot hold
        problem = f"{type(exc).__name__}: {exc}"
    raise InvalidDocument(f"{record_type.schema_name}: does not fit the Avro contract: {_cut(problem, 300)}")


def parse(data: bytes | str, what: str = "document") -> Any:
    """Standard JSON only (RFC 8259): no NaN or Infinity, no number that overflows a double, no
    duplicate key, bounded nesting; raises `MalformedJson` naming `what`."""
    try:
        return json.loads(data, parse_constant=_no_constant, parse_float=_finite_float,
                          object_pairs_hook=_unique_keys)
    except RecursionError:
        raise MalformedJson(f"{what}: the JSON document is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, our hooks, a 5,000-digit integer
        raise MalformedJson(f"{what}: not a JSON document we accept: {_cut(str(exc), 300)}") from None


def describe(exc: ValidationError) -> str:
    """The failing fields and pydantic's messages, on one line of bounded length (hostile documents
    can fail thousands of times, or name a megabyte-long extra key)."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = [f"{_cut('.'.join(map(str, e['loc'])) or 'record', PART_MAX)}: {_cut(e['msg'], PART_MAX)}"
             for e in errors[:ERRORS_SHOWN]]
    more = f" (and {len(errors) - ERRORS_SHOWN} more)" if len(errors) > ERRORS_SHOWN else ""
    return _cut("; ".join(parts) + more, ERROR_MAX)


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())  # no CR/LF in a one-line error
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (RFC 8259)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {_cut(text, 40)} is out of range (not a finite double)")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {_cut(key, PART_MAX)!r}")
        out[key] = value
    return out
