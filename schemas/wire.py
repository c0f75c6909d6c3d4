"""The Confluent wire format's frame: magic byte 0, a 4-byte big-endian schema id, the Avro binary body.

Why a module of its own: producers that use a schema registry (Confluent's serializers, Apicurio's
in Confluent mode, Karapace) frame each value this way instead of the single-object encoding of
`codec.py`; both are read on every topic. This module only frames and unframes bytes: it never
talks to a registry (`registry.py`) and never decodes a body (`confluent.py`). Hostile frames are
refused here with a `CodecError`, so they become dead letters and no registry is ever asked about
an id that no registry can have issued.
"""
from __future__ import annotations

import struct

from milestone_stream.schemas.codec import CodecError, CorruptBody

MAGIC = b"\x00"
HEADER_SIZE = 5  # magic byte + 4-byte big-endian id
#: Registries issue ids as Java ints (Confluent, Apicurio's ccompat API): 1 … 2^31 − 1. A frame
#: whose 4 bytes read as more (2^32 − 1 is -1 to a Java client) is not an id anyone issued.
MAX_ID = 2**31 - 1
_ID = struct.Struct(">I")


class NoSchemaRegistry(CodecError):
    """A Confluent-framed value reached a process without `MILESTONES_SCHEMA_REGISTRY_URL`."""

    reason = "no_schema_registry"


class UnknownSchemaId(CodecError):
    """The frame names an id the registry does not have (or none it could have issued)."""

    reason = "unknown_schema_id"


class SchemaMismatch(CodecError):
    """The writer schema the registry has for this id does not resolve against this topic's contract."""

    reason = "schema_mismatch"


def is_confluent(data: bytes | None) -> bool:
    """Whether `data` starts like a Confluent frame (the single-object encoding starts with C3 01)."""
    return data is not None and data[:1] == MAGIC


def schema_id(data: bytes) -> int:
    """The schema id of a Confluent frame; `CorruptBody` when the header is cut short,
    `UnknownSchemaId` for an id beyond the int32 range registries issue."""
    if not is_confluent(data):
        raise CorruptBody(f"first byte {data[:1].hex() or '(none)'} is not the Confluent magic byte 00")
    if len(data) < HEADER_SIZE:
        raise CorruptBody(f"{len(data)} bytes is shorter than the {HEADER_SIZE}-byte Confluent header "
                          "(magic byte, 4-byte schema id)")
    (found,) = _ID.unpack_from(data, 1)
    if found > MAX_ID:
        raise UnknownSchemaId(f"schema id {found} is beyond {MAX_ID}, the largest id a schema registry issues")
    return int(found)


def body(data: bytes) -> memoryview:
    """The Avro body after the header (call `schema_id` first: it checks the header)."""
    return memoryview(data)[HEADER_SIZE:]


def frame(schema_id: int, avro_body: bytes) -> bytes:
    """A Confluent-framed value: 00, the id (big-endian), the body."""
    if not 0 <= schema_id <= MAX_ID:
        raise ValueError(f"schema id {schema_id} is outside 0…{MAX_ID}")
    return MAGIC + _ID.pack(schema_id) + avro_body
