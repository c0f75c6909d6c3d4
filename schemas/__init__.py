"""The Avro contracts: one `.avsc` per topic value; `history/` keeps older versions still readable."""
from __future__ import annotations

import json
from importlib import resources

#: topic value → schema file (without `.avsc`)
SCHEMA_NAMES = (
    "telemetry_event", "crm_change", "milestone", "approval_request",
    "approval_decision", "email_outcome", "dead_letter", "resync_needed", "risk_signal",
)


def load(name: str) -> dict:
    """The current schema for `name`, as JSON."""
    return json.loads(resources.files(__name__).joinpath(f"{name}.avsc").read_text())


def history() -> list[dict]:
    """Every older schema version kept for readers (see history/)."""
    folder = resources.files(__name__).joinpath("history")
    return [json.loads(p.read_text()) for p in folder.iterdir() if p.name.endswith(".avsc")]
