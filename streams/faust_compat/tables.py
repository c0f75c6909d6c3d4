"""Table reads and writes in bulk: a batch's rows read from and written to the table's RocksDB databases (as
bytes) or memory store directly, and their changelog records handed straight to aiokafka instead of one Faust
send per key.

Why: a Faust table write (`table[key] = value`) is one `FutureMessage` through Faust's producer
buffer, which a single task drains one message at a time, and the conductor stops handing out input
while that buffer holds more than 100 messages. The usage agent writes a row and an event id per
event, so the worker spent most of its time there (bench/results.md, 2026-11-26). `write_many` does
what Faust's `Table.on_key_set` does for a plain table — the value into the store and the record to
the changelog partition of the event's input partition — but hands the records straight to the
app's own aiokafka producer (`Producer._ensure_producer`, private), in Kafka record batches of their
own, closed and sent at once (one future per batch, not per record), whatever the store. (Through
Faust's store — the memory store, the default — it was one `send` per record, which held the worker
at 13,700-15,500 events/s: bench/results.md, 2026-11-26 15:16.) That producer is the one Faust
flushes before it commits offsets, so a commit never passes a write still in flight; and a write that
fails (a broker's refusal, a delivery timeout) stops the process at once, before any commit can pass
it (`loops.halt`: aiokafka's flush waits for a failed batch without raising). A record over the
producer's `max_request_size` is refused, as `send` refuses it, before any of the call's rows is
stored. The RocksDB store's persisted changelog offset (where recovery resumes) is
advanced when a batch's last record is acknowledged, as Faust's `_on_changelog_sent` does per record.

`read` is the matching read: one look-up, in the event's partition.

Why bytes: through Faust's store a read is a key encoding, a look-up, a value decoding through its
serializer registry and a model check, with the event made current so that the store picks the
partition's database; a write encodes the value twice (store, changelog). Together they were half of the
usage step (bench/results.md, 2026-11-26 profile). For a RocksDB table whose serializers are `json` or
`raw`, `RawTable` does the same with the partition's database (`Store._db_for_partition`, private) and
Faust's own json functions: the same bytes Faust writes and reads (a unit test compares them), each
row serialized once. A memory-store table (`MemoryTable`) is read and written in the store's own dict, its
changelog bytes made the same way: Faust's store would make the event current, look the key up through
its mapping layers and encode each record through the serializer registry: read and written directly,
16,879 -> 20,781 events/s (median of four runs each, bench/results.md 2026-11-26 15:45). Any other store
or serializer takes Faust's own path.

A table written with `write_many` must be written only with it: two paths into one changelog could
reorder writes to a key. Under exactly_once Faust writes through a transactional producer per
partition, so there this falls back to Faust's per-key writes.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from faust import Table
from faust.stores.memory import Store as MemoryStore
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP, AppT, EventT, TableT
from faust.utils import json as faust_json

try:
    import rocksdict
except ImportError:  # the rocksdb extra is not installed: no RocksDB table, so no raw table either
    rocksdict = None  # type: ignore[assignment]

from milestone_stream.faust_compat.events import as_current
from milestone_stream.faust_compat.loops import halt
from milestone_stream.faust_compat.produce import aiokafka_producer, append, check_size, send_in_order


def _json_dumps(value: Any) -> bytes:
    if isinstance(value, bytes):  # Faust's registry passes bytes as they are
        return value
    out = faust_json.dumps(value)  # bytes with orjson (a dependency of faust-streaming), else str
    return out if isinstance(out, bytes) else out.encode()


def _json_loads(raw: bytes) -> Any:
    return faust_json.loads(raw)  # type: ignore[arg-type]  # (orjson and json both read bytes)


def _raw_dumps(value: Any) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


#: the serializers whose bytes are reproduced here exactly as Faust's registry makes them: (encode, decode)
CODECS: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {
    "json": (_json_dumps, _json_loads),
    "raw": (_raw_dumps, bytes),
}


Row = tuple[Any, Any, bytes, bytes, EventT]  # key, value, their changelog bytes, the event whose partition it is


class RawTable:
    """A RocksDB table's partitions read and written as bytes, with the table's own key and value encodings."""

    __slots__ = ("store", "encode_key", "encode_value", "decode_value")

    def __init__(self, store: RocksDBStore, key_serializer: str, value_serializer: str) -> None:
        self.store = store
        self.encode_key = CODECS[key_serializer][0]
        self.encode_value, self.decode_value = CODECS[value_serializer]

    def get(self, key: Any, partition: int) -> Any:
        raw = self.store._db_for_partition(partition).get(self.encode_key(key))
        return None if raw is None else self.decode_value(raw)

    def put_all(self, rows: list[Row]) -> None:
        """Store the rows' bytes: one RocksDB write batch per partition, not one `put` per row."""
        batches: dict[int, Any] = {}
        for _, _, raw_key, raw_value, event in rows:
            partition = event.message.partition
            if partition not in batches:  # (an empty write batch is falsy: no `get(...) or setdefault(...)` here)
                batches[partition] = rocksdict.WriteBatch(raw_mode=True)
            batches[partition].put(raw_key, raw_value)
        for partition, batch in batches.items():
            self.store._db_for_partition(partition).write(batch)


class MemoryTable:
    """A memory-store table (`memory://`, MILESTONES_STORE's default): its one dict read and written directly,
    its changelog bytes made as `RawTable` makes them (the bytes Faust's serializers make). Values are kept as
    they are, as Faust's memory store keeps them: a read hands out the stored containers themselves."""

    __slots__ = ("store", "encode_key", "encode_value")

    def __init__(self, store: MemoryStore, key_serializer: str, value_serializer: str) -> None:
        self.store = store
        self.encode_key, self.encode_value = CODECS[key_serializer][0], CODECS[value_serializer][0]

    def get(self, key: Any, partition: int) -> Any:
        return self.store.data.get(key)  # (one dict for every partition, as in Faust's store)

    def put_all(self, rows: list[Row]) -> None:
        data = self.store.data
        for key, value, _, _, _ in rows:
            data[key] = value


def use_bytes(app: AppT, enabled: bool) -> None:
    """Read and write `app`'s tables directly where this module can (the default), or always through Faust's
    store and serializers (MILESTONES_TABLE_BYTES=false: the bench's before; the changelog records still go in
    batches of their own, so since 2026-11-26 15:16 that before leaves out the batching). Before any table is
    read or written."""
    app.__dict__["_ms_table_bytes"] = enabled


def direct_table(table: TableT) -> RawTable | MemoryTable | None:
    """The table read and written directly, or None when its store or serializers are not ones this module
    reproduces. Decided at the first call and kept on the table (as the consumer keeps its holes): `read` and
    `write_many` ask for every row."""
    if "_ms_direct" not in table.__dict__:
        direct: RawTable | MemoryTable | None = None
        if (type(table) is Table and table.app.__dict__.get("_ms_table_bytes", True)
                and not table.is_global and not table.use_partitioner
                and table.key_type in (str, bytes) and table.value_type in (None, bytes)  # (models: Faust's path)
                and table.key_serializer in CODECS and table.value_serializer in CODECS):
            serializers = str(table.key_serializer), str(table.value_serializer)
            if isinstance(table.data, RocksDBStore) and table.data.use_rocksdict:
                direct = RawTable(table.data, *serializers)
            elif type(table.data) is MemoryStore:
                direct = MemoryTable(table.data, *serializers)
        table.__dict__["_ms_direct"] = direct
    return table.__dict__["_ms_direct"]


def raw_table(table: TableT) -> RawTable | None:
    """The table as bytes (a RocksDB table `direct_table` reads and writes), else None."""
    direct = direct_table(table)
    return direct if isinstance(direct, RawTable) else None


def reads_copies(table: TableT) -> bool:
    """Does `read` hand out a value of the caller's own, decoded at each read, which it may change in place?
    (Faust's memory store hands out the stored containers themselves: change a copy.)"""
    return raw_table(table) is not None


def read(table: TableT, key: Any, event: EventT) -> Any:
    """`table.get(key)` for a key of `event`'s partition: in that partition's database alone. (Through
    Faust's store without the event current — a batched agent is outside Faust's per-event loop — it
    searches every partition's database, twice: `in`, then the read.)"""
    direct = direct_table(table)
    if direct is not None:
        return direct.get(key, event.message.partition)
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
    producer = aiokafka_producer(app)
    direct, changelog = direct_table(table), table.changelog_topic
    # the changelog records of a partition in Kafka record batches of their own (one future per batch, not per
    # record); where `direct_table` can, the keys and values encoded once, for the store and the changelog
    batches: dict[int, list[Any]] = {}
    rows: list[Row] = []
    limit = app.conf.producer_max_request_size
    for key, value, event in entries:
        if direct is not None:
            raw_key, raw_value = direct.encode_key(key), direct.encode_value(value)
        else:
            raw_key = changelog.prepare_key(key, table.key_serializer)[0]
            raw_value = changelog.prepare_value(value, table.value_serializer)[0]
        check_size(raw_key, raw_value, limit, table.name)
        rows.append((key, value, raw_key, raw_value, event))
        append(producer, batches.setdefault(event.message.partition, []), raw_key, raw_value)
    # stored once every row has passed the size check, before their changelog records go
    if direct is not None:
        direct.put_all(rows)
    else:
        for key, value, _, _, event in rows:
            with as_current(event):
                table.data[key] = value
    topic = changelog.get_topic_name()
    await asyncio.gather(*(send_in_order(producer, topic, p, builders, then=_persisting(table, TP(topic, p)))
                           for p, builders in batches.items()))


def _persisting(table: Table, tp: TP) -> Callable[[asyncio.Future, int], None]:
    """For `send_in_order`: a batch of `count` records advances the persisted offset to its last record."""
    return lambda acked, count: acked.add_done_callback(_persisted(table, tp, count - 1))


def _persisted(table: Table, tp: TP, after_first: int) -> Callable[[asyncio.Future], None]:
    """Where RocksDB's recovery resumes: advanced once a batch's last record (`after_first` records after the
    acknowledged offset) is acknowledged. A write that failed stops the process before a commit passes it."""
    def done(acked: asyncio.Future) -> None:
        if acked.cancelled():  # the producer stopped: so is the worker, and nothing was acknowledged
            return
        if (failure := acked.exception()) is not None:
            halt(f"the changelog write to {tp.topic}[{tp.partition}] failed: {type(failure).__name__}: {failure}")
        table.data.set_persisted_offset(tp, acked.result().offset + after_first)
    return done
