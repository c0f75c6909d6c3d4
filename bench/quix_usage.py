"""The usage job in Quix Streams: a peer for the benchmark, to tell the worker's cost from the framework's.

    python bench/quix_usage.py BOOTSTRAP INPUT_TOPIC GROUP OUTPUT_TOPIC STATE_DIR

Why it exists: issue 13 asks for the worker "at the speed of Quix Streams"; bench/detector.py runs
this in the same run over the same input and reports its events/s beside the worker's.

The same job as the worker's usage agent, as closely as Quix allows: the Avro single-object
telemetry decoded by `TelemetryEvent.from_avro` and checked by `usage.rejection`; the account's
`UsageRow` and one state key per event id under the account (`usage.id_key`, value the input offset
that first carried it, as the worker's event-id table) in Quix's RocksDB state store with its
changelog topic (Quix's defaults); `usage.apply_event` itself (the replay check by offset, exact
dedupe, horizon, totals, first/last times, spike windows, tier crossings by bisection, with the
default rules); one Avro `Milestone` per tier crossed, produced to OUTPUT_TOPIC keyed by account;
at-least-once, commit interval 0.2 s, its own consumer group, auto_offset_reset earliest.

What it cannot do identically:
- a record Quix's callback raises on stops the application (Quix's default error callback); the
  worker parks it to the dead-letter topic and goes on. Here a record that fails to decode or is
  rejected by the rules is counted and skipped (the bench's input has none), not dead-lettered;
  nor is an event beyond the dedupe horizon (Quix would need a branch and a second output topic).
- Quix processes one message at a time (no batches of up to 2,000 per agent call) and writes state to
  its changelog at each checkpoint (every 0.2 s), once per changed key, after the produced
  records are flushed; the worker writes the row once per account per batch and each new id.
- the rows are JSON (Quix's state serializer) as in the worker's table; the id values are JSON
  integers, not the worker's decimal bytes.
"""
from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

from quixstreams import Application, State, message_context

from milestone_stream.agents.detector import usage
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import TelemetryEvent

ROW = b"\x00row"  # the account's UsageRow; id keys are 16 bytes of a hash, so never this one


class StateIds:
    """`usage.SeenIds` over Quix's per-account state: one key per event id."""

    def __init__(self, state: State) -> None:
        self.state = state

    def first_offset(self, key: bytes) -> int | None:
        stored = self.state.get(key)
        return int(stored) if stored is not None else None

    def remember(self, key: bytes, offset: int) -> None:
        self.state.set(key, offset)


def build(bootstrap: str, source: str, group: str, sink: str, state_dir: str) -> Application:
    rules = Rules()
    skipped = 0
    app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                      processing_guarantee="at-least-once", commit_interval=0.2, state_dir=state_dir,
                      loglevel="WARNING")
    telemetry = app.topic(source, key_deserializer="bytes", value_deserializer="bytes")
    milestones = app.topic(sink, key_serializer="bytes", value_serializer="bytes")

    def count(value: bytes, key: Any, timestamp: int, headers: Any, state: State) -> list[bytes]:
        nonlocal skipped
        now = datetime.now(UTC)
        try:
            record = TelemetryEvent.from_avro(value)
        except Exception:  # noqa: BLE001 - the worker dead-letters it; here it is counted and skipped
            skipped += 1
            return []
        if usage.rejection(record, rules, now) is not None:
            skipped += 1
            return []
        row = usage.UsageRow.from_stored(state.get(ROW))  # a fresh copy: Quix deserializes on every get
        status, fired = usage.apply_event(row, record, message_context().offset, rules, StateIds(state), now)
        state.set(ROW, row.to_stored())  # every status, as the worker: the row's offset moves on
        return [m.to_avro() for m in fired]

    sdf = app.dataframe(telemetry)
    sdf = sdf.apply(count, stateful=True, expand=True, metadata=True)
    sdf.to_topic(milestones)
    return app


def main() -> None:
    bootstrap, source, group, sink, state_dir = sys.argv[1:6]
    logging.basicConfig(level=logging.WARNING)
    build(bootstrap, source, group, sink, state_dir).run()


if __name__ == "__main__":
    main()
