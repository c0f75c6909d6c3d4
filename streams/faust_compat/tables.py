"""Table writes in bulk: a batch's entries set in the table's store, and their changelog records handed
straight to aiokafka instead of one Faust send per key.

Why: a Faust table write (`table[key] = value`) is one `FutureMessage` through Faust's producer
buffer, which a single task drains one message at a time, and the conductor stops handing out input
while that buffer holds more than 100 messages. The usage agent writes a row and an event id per
event, so the worker spent most of its time there (bench/results.md, 2026-11-26). `write_many` does
what Faust's `Table.on_key_set` does for a plain table — the value into the store (`table.data`, with
the event current, which the RocksDB store needs to pick its partition's database) and the record to
the changelog partition of the event's input partition — but hands the records straight to the
app's own aiokafka producer (`Producer._ensure_producer`, private), where they join the batch already
filling for their partition (`send_batch` would wait out the previous batch's linger, per partition).
That producer is the one Faust flushes before it commits offsets, so a commit never passes a write
that is not acknowledged, exactly as before. The RocksDB store's persisted changelog offset (where recovery resumes) is
advanced when a partition's last record is acknowledged, as Faust's `_on_changelog_sent` does per record.

`read` is the matching read: one look-up, in the event's partition.

A table written with `write_many` must be written only with it: two paths into one changelog could
reorder writes to a key. Under exactly_once Faust writes through a transactional producer per
partition, so there this falls back to Faust's per-key writes.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from faust import Table
from faust.types import TP, AppT, EventT, TableT

from milestone_stream.faust_compat.events import as_current


def read(table: TableT, key: Any, event: EventT) -> Any:
    """`table.get(key)` for a key of `event`'s partition. With the event current, the RocksDB store looks
    in that partition's database alone; without (a batched agent is outside Faust's per-event loop) it
    searches every partition's database, twice (`in`, then the read): a fifth of the worker's time."""
    with as_current(event):
        try:
            return table.data[key]
        except KeyError:
            return None


async def write_many(app: AppT, table: TableT, entries: Iterable[tuple[Any, Any, EventT]]) -> None:
    """Set each `key` to `value` in `table`, its changelog record on `event`'s partition; returns once
    every record is queued in the producer (Faust's commit waits for their acknowledgements)."""
    if app.in_transaction:
        for key, value, event in entries:
            with as_current(event):
                table[key] = value
        return
    if not isinstance(table, Table):
        raise TypeError(f"write_many writes Faust tables, not {type(table).__name__}")
    changelog = table.changelog_topic
    topic = changelog.get_topic_name()
    producer = app.producer._ensure_producer()  # type: ignore[attr-defined]  # the aiokafka producer (private)
    last: dict[int, asyncio.Future] = {}
    for key, value, event in entries:
        partition = event.message.partition
        with as_current(event):
            table.data[key] = value
        raw_key, _ = changelog.prepare_key(key, table.key_serializer)
        raw_value, _ = changelog.prepare_value(value, table.value_serializer)
        last[partition] = await producer.send(topic, raw_value, key=raw_key, partition=partition)
    for partition, acked in last.items():
        acked.add_done_callback(_persisted(table, TP(topic, partition)))


def _persisted(table: Table, tp: TP) -> Callable[[asyncio.Future], None]:
    """Where RocksDB's recovery resumes: advanced once a partition's last record of the batch is acknowledged."""
    def done(acked: asyncio.Future) -> None:
        if not acked.cancelled() and acked.exception() is None:
            table.data.set_persisted_offset(tp, acked.result().offset)
    return done
