"""JSON Schema of the records producers may send as JSON, generated from the pydantic models.

Why generated and shipped: platform teams validate their documents in their own language and CI
against `schemas/json/*.schema.json`; the files are written from the same models the worker
validates with (`milestones json-schema`), and `tests/unit/test_json_input.py` fails when a shipped
file differs from what the models generate, so the two never drift.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from milestone_stream.schemas.json_input import JSON_RECORDS
from milestone_stream.schemas.records import Record

DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: what JSON Schema cannot say (pydantic's validators): the worker refuses these too
NOTES = {
    "telemetry_event": "value: a finite number >= 0 (and at most the rules' max_event_value); attribute names "
                       "at most 256 characters, values at most 2,000.",
    "crm_change": "changes[].value: text at most 2,000 characters, numbers finite and at most 1e15 in magnitude.",
}


def folder() -> Path:
    """Where the shipped files are (the package's `schemas/json/`)."""
    return Path(str(resources.files("milestone_stream.schemas").joinpath("json")))


def file_name(record_type: type[Record]) -> str:
    return f"{record_type.schema_name}.schema.json"


def generate(record_type: type[Record]) -> dict[str, Any]:
    name = record_type.schema_name
    schema = record_type.model_json_schema(mode="validation")
    return {
        "$schema": DIALECT,
        "title": schema.pop("title", record_type.__name__),
        "description": (f"{record_type.__name__} sent as a JSON document (UTF-8, one per Kafka record, keyed by "
                        f"account_id) instead of Avro; the same contract as schemas/{name}.avsc. Times are RFC 3339 "
                        f"with a UTC offset. {NOTES.get(name, '')} Generated from schemas/records.py by "
                        "`milestones json-schema`: do not edit.").replace("  ", " "),
        **schema,
    }


def render(record_type: type[Record]) -> str:
    return json.dumps(generate(record_type), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def write(target: Path | None = None) -> list[Path]:
    """Write every JSON record's schema file into `target` (default: the package's `schemas/json/`)."""
    target = target or folder()
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for record_type in JSON_RECORDS:
        path = target / file_name(record_type)
        path.write_text(render(record_type), encoding="utf-8")
        written.append(path)
    return written
