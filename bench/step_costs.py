"""What the usage step's own work costs per event, without Kafka: the floor under the worker's rate.

    .venv/bin/python bench/step_costs.py [--events 100000] [--accounts 2000] [--gc-as-it-comes]

Why it exists: issue 13 asks for the worker at 0.8 x the raised Faust floor (a no-op batch step fed a
fetch at a time, about 83,000 events/s here, so about 12 us per event of Kafka and Faust). This times,
in one process and on the bench's own input, each piece of work the worker does per event beyond that
floor: decoding the Avro value, validating it (pydantic, the edge's bounds), applying the rules
(`usage.apply_event`: replay check, dedupe, totals, periods, tiers), and encoding and decoding the
account's row (one per event: an upper bound, as a batch reads and writes each of its accounts once).
Their sum bounds the worker's rate from above, however the Kafka side is done. Prints microseconds per
event.

Measured as the worker runs them: a batch at a time (MILESTONES_BATCH_SIZE's default), each batch's
results dropped before the next, with the worker's garbage-collector setting (MILESTONES_GC_GEN0's
default) and the inputs frozen out of the collector's way as the worker freezes its startup heap.
Before 2026-11-26 15:00 this kept every result of 100,000 events alive under Python's default
collector, which added its collections to the figures (row decoding read 6.5-8.1 us, 2.4 here).
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from detector import events
from faust.utils import json as faust_json

from milestone_stream import gc_tuning
from milestone_stream.agents.detector import usage
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import TelemetryEvent, codec
from milestone_stream.settings import Settings


def per_event(label: str, work: Callable[[Sequence[Any]], object], items: Sequence[Any], batch: int) -> float:
    """Microseconds per item of `work` over `items`, a batch at a time; each batch's result is dropped."""
    began = time.perf_counter()
    for start in range(0, len(items), batch):
        work(items[start:start + batch])
    cost = (time.perf_counter() - began) / len(items) * 1e6
    print(f"{label:62s} {cost:6.2f} us/event")
    return cost


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--gc-as-it-comes", action="store_true", help="Python's collector defaults, nothing frozen")
    args = parser.parse_args()
    defaults = Settings.from_env({})
    n, batch = args.events, defaults.batch_size
    values = [e.to_avro() for e in events(n, args.accounts)]
    avro = codec(TelemetryEvent.schema_name)
    decoded = [avro.decode(v) for v in values]
    records = [TelemetryEvent.from_avro(v) for v in values]
    rules, seen, now, rows = Rules.load(None), usage.MemorySeenIds(), datetime.now(UTC), {}
    for offset, event in enumerate(records, 1):  # the rows as the run leaves them, for the row codec's figures
        row = rows.get(event.account_id) or rows.setdefault(event.account_id, usage.UsageRow())
        usage.apply_event(row, event, offset, rules, seen, now)
    stored = {account: faust_json.dumps(row.to_stored()) for account, row in rows.items()}
    accounts = [e.account_id for e in records]
    if not args.gc_as_it_comes:
        gc_tuning.tune(defaults.gc_gen0)
        gc_tuning.freeze_startup()
    print(f"batches of {batch}; collector {'as it comes' if args.gc_as_it_comes else f'gen-0 {defaults.gc_gen0:,}'}")

    per_event("  Avro decode (fastavro)", lambda vs: [avro.decode(v) for v in vs], values, batch)
    per_event("  validation (pydantic model_validate)",
              lambda ds: [TelemetryEvent.model_validate(d) for d in ds], decoded, batch)
    total = per_event("decode and validate (TelemetryEvent.from_avro)",
                      lambda vs: [TelemetryEvent.from_avro(v) for v in vs], values, batch)
    rules_rows: dict[str, usage.UsageRow] = {}
    rules_seen = usage.MemorySeenIds()
    numbered = list(enumerate(records, 1))

    def apply(part: Sequence[tuple[int, TelemetryEvent]]) -> None:
        for offset, event in part:
            row = rules_rows.get(event.account_id) or rules_rows.setdefault(event.account_id, usage.UsageRow())
            usage.apply_event(row, event, offset, rules, rules_seen, now)

    total += per_event("rules (usage.apply_event, default rules)", apply, numbered, batch)
    total += per_event("row encoded (to_stored, json), one per event",
                       lambda keys: [faust_json.dumps(rows[a].to_stored()) for a in keys], accounts, batch)
    total += per_event("row decoded (json, from_stored), one per event",
                       lambda keys: [usage.UsageRow.from_stored(faust_json.loads(stored[a])) for a in keys],
                       accounts, batch)
    print(f"{'sum of the step work':62s} {total:6.2f} us/event: at most {1e6 / total:,.0f} events/s on one core, "
          "before any Kafka or Faust cost")


if __name__ == "__main__":
    main()
