"""Avro single-object encoding: `C3 01`, the writer schema's CRC-64-AVRO fingerprint, the body.

Why: every message names its writer schema, so a reader resolves an older writer against the
current reader schema (evolution) without a registry; a reader that meets bytes it cannot place
raises a typed `CodecError`, which a stage turns into a dead letter instead of crashing.
"""
from __future__ import annotations

import io
from typing import Any, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from milestone_stream import schemas

MARKER = b"\xc3\x01"
HEADER_SIZE = len(MARKER) + 8


class CodecError(ValueError):
    """Bytes that cannot be decoded; `reason` is short and stable (used in dead letters)."""

    reason = "undecodable"


class WrongMarker(CodecError):
    reason = "wrong_marker"


class UnknownFingerprint(CodecError):
    reason = "unknown_schema"


class CorruptBody(CodecError):
    reason = "corrupt_body"


def schema_fingerprint(parsed: dict) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of a schema's canonical form."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


class Codec:
    """Encodes with the current schema of one topic value; decodes any known version of it."""

    def __init__(self, name: str, writers: list[dict] | None = None) -> None:
        self.name = name
        # every topic value is an Avro record, whose parsed schema is a dict (fastavro types it as any schema)
        self.schema = cast(dict[str, Any], parse_schema(schemas.load(name), named_schemas={}))
        self.fingerprint = schema_fingerprint(self.schema)
        self._writers = {self.fingerprint: self.schema}
        for raw in writers or []:
            parsed = cast(dict[str, Any], parse_schema(raw, named_schemas={}))
            if parsed["name"] == self.schema["name"]:
                self._writers[schema_fingerprint(parsed)] = parsed

    def encode(self, record: dict[str, Any]) -> bytes:
        from milestone_stream.schemas import confluent  # imports this module

        schema_id = confluent.writer_id(self.name)  # set when MILESTONES_WIRE_FORMAT=confluent
        if schema_id is not None:
            return confluent.encode(self, schema_id, record)
        out = io.BytesIO()
        out.write(MARKER)
        out.write(self.fingerprint)
        schemaless_writer(out, self.schema, record)
        return out.getvalue()

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if data is not None and data[:1] == b"\x00":  # the Confluent wire format (schemas/confluent.py)
            from milestone_stream.schemas import confluent  # imports this module

            return confluent.decode(self, data)
        if data is None or len(data) < HEADER_SIZE:
            raise CorruptBody(f"{self.name}: {0 if data is None else len(data)} bytes is shorter than the "
                              f"{HEADER_SIZE}-byte single-object header")
        if data[:2] != MARKER:
            raise WrongMarker(f"{self.name}: marker {data[:2].hex()} is not c301 (Avro single-object encoding)")
        writer = self._writers.get(data[2:HEADER_SIZE])
        if writer is None:
            raise UnknownFingerprint(f"{self.name}: writer schema fingerprint {data[2:HEADER_SIZE].hex()} "
                                     "is not a known version of this topic's schema")
        body = io.BytesIO(data[HEADER_SIZE:])
        try:
            record = schemaless_reader(body, writer, self.schema)
        except (EOFError, StopIteration, IndexError, ValueError, UnicodeDecodeError) as exc:
            raise CorruptBody(f"{self.name}: body does not decode with its writer schema ({exc!r})") from exc
        if body.tell() != len(data) - HEADER_SIZE:
            raise CorruptBody(f"{self.name}: {len(data) - HEADER_SIZE - body.tell()} trailing bytes after the record")
        return cast(dict[str, Any], record)  # a record schema reads as a dict


_codecs: dict[str, Codec] = {}


def codec(name: str) -> Codec:
    """The shared codec for a topic value (parsed once per process)."""
    if name not in _codecs:
        _codecs[name] = Codec(name, schemas.history())
    return _codecs[name]
