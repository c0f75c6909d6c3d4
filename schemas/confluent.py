"""Reading and writing topic values in the Confluent wire format, beside the single-object encoding.

Why: producers that already use a schema registry write `00 <id> <body>`; the worker reads both
framings on every topic, and can write this one for consumers that expect it. This module holds the
process's registry (set once at start-up by `streams/schema_registry.py`) and the ids the product's
own schemas were registered under; `codec.Codec` hands it every value that starts with byte 00.

A reader resolves the writer schema the registry names against the product's current contract, as
Avro schema resolution does for the single-object encoding's known versions. What cannot be read
is a `CodecError` (a dead letter with its reason): `no_schema_registry` (no registry configured),
`unknown_schema_id`, `schema_mismatch` (not Avro, another record, or a writer the contract cannot
resolve), `corrupt_body`. A registry that cannot answer is `RegistryUnavailable`, an outage.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import TYPE_CHECKING, Any, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import SchemaParseException, UnknownType

from milestone_stream.schemas import wire
from milestone_stream.schemas.codec import CorruptBody
from milestone_stream.schemas.registry import RegisteredSchema, SchemaRegistry

if TYPE_CHECKING:
    from milestone_stream.schemas.codec import Codec

log = logging.getLogger(__name__)

_registry: SchemaRegistry | None = None
_writer_ids: dict[str, int] = {}  # schema name → the id it was registered under, when writing this format
_writers: dict[int, dict[str, Any]] = {}  # id → parsed writer schema (ids are immutable in a registry)


def configure(registry: SchemaRegistry | None, writer_ids: dict[str, int] | None = None) -> None:
    """Set the process's registry (None: Confluent-framed values are dead letters) and, to write this
    format, the id of each product schema; without ids the codec writes the single-object encoding."""
    global _registry
    _registry = registry
    _writer_ids.clear()
    _writer_ids.update(writer_ids or {})
    _writers.clear()


def registry() -> SchemaRegistry | None:
    return _registry


def writer_id(schema_name: str) -> int | None:
    """The id to frame values of `schema_name` with, or None to write the single-object encoding."""
    return _writer_ids.get(schema_name)


def encode(codec: Codec, schema_id: int, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(wire.frame(schema_id, b""))
    schemaless_writer(out, codec.schema, record)
    return out.getvalue()


async def prefetch(value: bytes | None) -> None:
    """Fetch the writer schema of a Confluent-framed `value` in a thread, so that the decode that
    follows finds it cached and the event loop never waits on the registry. Raises what the decode
    would (a `CodecError` for the record, `RegistryUnavailable` for an outage)."""
    if _registry is None or not wire.is_confluent(value):
        return
    schema_id = wire.schema_id(cast(bytes, value))
    if not _registry.is_cached(schema_id):
        await asyncio.to_thread(_registry.schema, schema_id)


def decode(codec: Codec, data: bytes) -> dict[str, Any]:
    """The record in a Confluent-framed value, resolved against `codec`'s current schema."""
    schema_id = wire.schema_id(data)
    if _registry is None:
        raise wire.NoSchemaRegistry(f"{codec.name}: a Confluent-framed value (schema id {schema_id}) but no "
                                    "schema registry is configured (MILESTONES_SCHEMA_REGISTRY_URL)")
    writer = _writer(codec, schema_id, _registry.schema(schema_id))
    body = wire.body(data)
    stream = io.BytesIO(body)
    try:
        record = schemaless_reader(stream, writer, codec.schema)
    except SchemaResolutionError as exc:
        raise wire.SchemaMismatch(f"{codec.name}: the writer schema of id {schema_id} does not resolve against "
                                  f"the current contract: {str(exc)[:300]}") from exc
    except (EOFError, StopIteration, IndexError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise CorruptBody(f"{codec.name}: body does not decode with writer schema {schema_id} ({exc!r})"[:500]
                          ) from exc
    if stream.tell() != len(body):
        raise CorruptBody(f"{codec.name}: {len(body) - stream.tell()} trailing bytes after the record "
                          f"(writer schema {schema_id})")
    return cast(dict[str, Any], record)


def _writer(codec: Codec, schema_id: int, registered: RegisteredSchema) -> dict[str, Any]:
    """The parsed writer schema of `schema_id`, checked to be an Avro record of the contract's name."""
    writer = _writers.get(schema_id)
    if writer is None:
        if registered.schema_type.upper() != "AVRO":
            raise wire.SchemaMismatch(f"{codec.name}: schema id {schema_id} is a {registered.schema_type[:20]!r} "
                                      "schema, not Avro")
        try:
            writer = cast(dict[str, Any], parse_schema(json.loads(registered.text), named_schemas={}))
        except (ValueError, TypeError, KeyError, SchemaParseException, UnknownType, RecursionError) as exc:
            raise wire.SchemaMismatch(f"{codec.name}: schema id {schema_id} is not a valid Avro schema "
                                      f"({str(exc)[:200]})") from exc
        if len(_writers) >= 1024:  # ids are few in practice; a flood of distinct ones must not grow this
            _writers.clear()
        _writers[schema_id] = writer
    # Avro schema resolution matches records by unqualified name: another team's namespace is fine
    if not isinstance(writer, dict) or writer.get("type") != "record" or _short(writer.get("name")) != _short(
            codec.schema["name"]):
        name = writer.get("name") if isinstance(writer, dict) else writer
        raise wire.SchemaMismatch(f"{codec.name}: schema id {schema_id} describes {str(name)[:100]!r}, "
                                  f"not the record {codec.schema['name']!r} of this topic")
    return writer


def _short(name: object) -> str:
    return str(name).rsplit(".", 1)[-1]
