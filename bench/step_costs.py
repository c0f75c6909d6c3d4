"""What the usage step's own work costs per event, without Kafka: the floor under the worker's rate.

    .venv/bin/python bench/step_costs.py [--events 100000] [--accounts 2000]

Why it exists: issue 13 asks for the worker at 0.8 x the raised Faust floor (a no-op batch step fed a
fetch at a time, about 83,000 events/s here, so about 12 us per event of Kafka and Faust). This times,
in one process and on the bench's own input, each piece of work the worker does per event beyond that
floor: decoding the Avro value, validating it (pydantic, the edge's bounds), applying the rules
(`usage.apply_event`: replay check, dedupe, totals, periods, tiers), and encoding and decoding the
account's row (at 2,000 accounts a batch of 500 touches about one row per event). Their sum bounds the
worker's rate from above, however the Kafka side is done. Prints microseconds per event.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

from detector import events
from faust.utils import json as faust_json

from milestone_stream.agents.detector import usage
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import TelemetryEvent, codec


def per_event(label: str, work: Callable[[], object], n: int) -> float:
    began = time.perf_counter()
    work()
    cost = (time.perf_counter() - began) / n * 1e6
    print(f"{label:62s} {cost:6.2f} us/event")
    return cost


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    args = parser.parse_args()
    n = args.events
    values = [e.to_avro() for e in events(n, args.accounts)]
    avro = codec(TelemetryEvent.schema_name)
    decoded = [avro.decode(v) for v in values]
    per_event("  Avro decode (fastavro)", lambda: [avro.decode(v) for v in values], n)
    per_event("  validation (pydantic model_validate)", lambda: [TelemetryEvent.model_validate(d) for d in decoded], n)
    total = per_event("decode and validate (TelemetryEvent.from_avro)", lambda: [TelemetryEvent.from_avro(v)
                                                                                for v in values], n)
    records = [TelemetryEvent.from_avro(v) for v in values]
    rules, seen, now, rows = Rules.load(None), usage.MemorySeenIds(), datetime.now(UTC), {}

    def apply_all() -> None:
        for offset, event in enumerate(records, 1):
            row = rows.get(event.account_id) or rows.setdefault(event.account_id, usage.UsageRow())
            usage.apply_event(row, event, offset, rules, seen, now)

    total += per_event("rules (usage.apply_event, default rules)", apply_all, n)
    total += per_event("row encoded (to_stored, json), one per event", lambda: [
        faust_json.dumps(rows[e.account_id].to_stored()) for e in records], n)
    stored = {account: faust_json.dumps(row.to_stored()) for account, row in rows.items()}
    total += per_event("row decoded (json, from_stored), one per event", lambda: [
        usage.UsageRow.from_stored(faust_json.loads(stored[e.account_id])) for e in records], n)
    print(f"{'sum of the step work':62s} {total:6.2f} us/event: at most {1e6 / total:,.0f} events/s on one core, "
          "before any Kafka or Faust cost")


if __name__ == "__main__":
    main()
