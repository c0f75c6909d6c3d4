"""The bytes `faust_compat.tables` reads and writes are the bytes Faust's own store reads and writes.

Why: the usage rows and event ids go to RocksDB and the changelog without Faust's serializer layers
(`RawTable`); Faust still recovers them from the changelog and other stages read them through
`table.get`. Both sides must agree on every key and value, hostile ones included, on a real RocksDB.
"""
from __future__ import annotations

import asyncio
import math

import faust
import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP

from milestone_stream.faust_compat import as_current, tables as tables_module
from milestone_stream.faust_compat.tables import (
    MemoryTable,
    direct_table,
    raw_table,
    read,
    reads_copies,
    use_bytes,
    write_many,
)

from support.partitioned import Event
from support.producers import RecordingProducer, StubApp

KEYS = ["acc-1", 'quote"and\\slash', "line\r\nbreak", "ünïcødé ✓", "<addr@example.com>", "x" * 10_000, ""]
ROWS = [{"t": {"api_calls": 1.5, "seats": 1e308}, "o": 42, "w": {}},
        {"t": {"a\nb": -0.0}, "o": -1, "w": {"x": {"s": 0, "m": 2.0, "p": 1.0, "f": None}}, "k": [1, 2]},
        {"note": "<b>bold</b>\u0000", "nested": [[{"deep": True}]]}]


class Point(faust.Record):
    x: int


class Yaml(faust.Record, serializer="yaml"):
    x: int


@pytest.fixture
def app(tmp_path):
    app = faust.App("raw-table-test", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path),
                    web_enabled=False)
    yield app
    for table in app.tables.values():
        table.data._dbs.clear()


def test_the_worker_tables_are_read_as_bytes_and_others_through_faust(app):
    usage = app.Table("usage", key_type=str, partitions=6)
    ids = app.Table("event_ids", key_type=bytes, value_type=bytes, partitions=6)
    assert isinstance(usage.data, RocksDBStore)
    assert raw_table(usage) is not None and raw_table(ids) is not None
    memory = faust.App("raw-table-memory", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
    in_memory = memory.Table("usage", key_type=str, partitions=6)
    assert raw_table(in_memory) is None and isinstance(direct_table(in_memory), MemoryTable)
    for modelled in (app.Table("modelled", key_type=str, value_type=Point, partitions=6),
                     app.Table("yaml", key_type=str, value_type=Yaml, partitions=6),
                     memory.Table("modelled", key_type=str, value_type=Point, partitions=6)):
        assert direct_table(modelled) is None


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("row", ROWS)
def test_json_rows_have_faust_bytes_both_ways(app, key, row):
    table = app.Table("usage", key_type=str, partitions=6)
    raw, store, event = raw_table(table), table.data, Event(3)
    assert raw is not None
    assert raw.encode_key(key) == store._encode_key(key)
    assert raw.encode_value(row) == store._encode_value(row)
    assert raw.decode_value(store._encode_value(row)) == store._decode_value(store._encode_value(row))
    with as_current(event):  # written by Faust, read as bytes
        store[key] = row
    assert read(table, key, event) == store._decode_value(store._encode_value(row))
    assert read(table, key, Event(2)) is None  # another partition's database
    other = {"t": {"b": 2.0}, "o": 7}  # written as bytes, read by Faust
    store._db_for_partition(3).put(raw.encode_key(key), raw.encode_value(other))
    with as_current(event):
        assert store[key] == other


def test_a_figure_json_cannot_hold_reads_back_as_faust_reads_it(app):
    table = app.Table("usage", key_type=str, partitions=6)
    raw, store = raw_table(table), table.data
    assert raw is not None
    row = {"t": {"nan": math.nan, "inf": math.inf}}
    assert raw.encode_value(row) == store._encode_value(row)
    # null with orjson, NaN / Infinity with the standard json module: whichever Faust uses here (repr: nan != nan)
    assert repr(raw.decode_value(raw.encode_value(row))) == repr(store._decode_value(store._encode_value(row)))


def test_event_ids_are_bytes_as_they_are(app):
    table = app.Table("event_ids", key_type=bytes, value_type=bytes, partitions=6)
    raw, store = raw_table(table), table.data
    assert raw is not None
    for key, value in [(b"\x00\xff" * 8, b"123"), (b"\r\n", b"")]:
        assert raw.encode_key(key) == store._encode_key(key)
        assert raw.encode_value(value) == store._encode_value(value)
        assert raw.decode_value(store._encode_value(value)) == store._decode_value(store._encode_value(value))


def test_reads_are_the_callers_own_only_as_bytes(app):
    table = app.Table("usage", key_type=str, partitions=6)
    assert reads_copies(table)
    event = Event(1)
    with as_current(event):
        table.data["a"] = {"t": {"x": 1.0}}
    first = read(table, "a", event)
    first["t"]["x"] = 2.0  # changed in place by the reader: the stored row is not
    assert read(table, "a", event) == {"t": {"x": 1.0}}


def test_a_memory_table_is_read_in_its_dict_as_faust_stores_it_and_reads_are_shared():
    app = faust.App("memory-direct", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
    table = app.Table("usage", key_type=str, partitions=6)
    assert not reads_copies(table)  # the caller copies before it changes a row
    event = Event(2)
    with as_current(event):
        table.data["a"] = {"t": {"x": 1.0}}
    assert read(table, "a", event) is table.data["a"] and read(table, "b", event) is None


@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
def test_the_faust_path_can_be_chosen_for_an_app(tmp_path, store):
    app = faust.App("raw-table-off", broker="kafka://127.0.0.1:1", store=store, datadir=str(tmp_path),
                    web_enabled=False)
    use_bytes(app, False)
    table = app.Table("usage", key_type=str, partitions=6)
    assert direct_table(table) is None and not reads_copies(table)
    event = Event(0)
    with as_current(event):
        table.data["a"] = {"o": 1}
    assert read(table, "a", event) == {"o": 1}
    if isinstance(table.data, RocksDBStore):
        table.data._dbs.clear()


@pytest.fixture
async def producer():
    producer = RecordingProducer()
    yield producer
    await producer.stop()


@pytest.fixture(params=["rocksdb://", "memory://", "rocksdb:// through Faust's store"])
def any_app(request, tmp_path):
    """A RocksDB app (rows as bytes, `RawTable`), a memory-store app (rows in its dict, `MemoryTable`), and a
    RocksDB app writing through Faust's store and serializers (MILESTONES_TABLE_BYTES=false)."""
    store, _, faust_path = request.param.partition(" ")
    app = faust.App(f"write-many-{store[:-3]}", broker="kafka://127.0.0.1:1", store=store,
                    datadir=str(tmp_path), web_enabled=False)
    use_bytes(app, not faust_path)
    yield app
    for table in app.tables.values():
        if isinstance(table.data, RocksDBStore):
            table.data._dbs.clear()


def changelog_bytes(table, key, value) -> tuple[bytes, bytes]:
    """The key and value bytes Faust's own `Table.on_key_set` sends to the changelog."""
    changelog = table.changelog_topic
    return (changelog.prepare_key(key, table.key_serializer)[0],
            changelog.prepare_value(value, table.value_serializer)[0])


async def test_a_partitions_rows_go_in_closed_batches_in_order_and_recovery_resumes_after_the_last(any_app, producer):
    table = any_app.Table("usage", key_type=str, partitions=6)
    event = Event(4)
    rows = [(f"acct{i}", {"t": {"x": float(i)}, "o": i}, event) for i in range(60)]  # more than one 1 KiB batch
    await write_many(StubApp(producer), table, rows)
    assert len(producer.sent) > 1 and all(tp == TP(table.changelog_topic.get_topic_name(), 4)
                                          for tp, _, _ in producer.sent)
    assert all(batch.closed() for _, batch, _ in producer.sent)  # sent at once, and nothing else joins them
    sent = [record for _, batch, _ in producer.sent for record in batch.records]
    assert sent == [changelog_bytes(table, k, v) for k, v, _ in rows]
    assert read(table, "acct59", event) == rows[59][1]
    base = 1000
    for tp, batch, acked in producer.sent:  # the broker acknowledges each batch with its first offset
        acked.set_result(RecordMetadata(tp.topic, tp.partition, tp, base, -1, 0, None))
        base += batch.record_count()
    await asyncio.sleep(0)  # (done callbacks run on the loop's next turn)
    if isinstance(table.data, RocksDBStore):  # (the memory store keeps no persisted offset)
        assert table.data.persisted_offset(producer.sent[0][0]) == 1000 + len(rows) - 1


async def test_a_row_over_max_request_size_is_refused_before_any_of_the_calls_rows_is_stored(any_app, producer):
    table = any_app.Table("usage", key_type=str, partitions=6)
    event = Event(1)
    with pytest.raises(MessageSizeTooLargeError):
        await write_many(StubApp(producer, limit=2_000), table,
                         [("small", {"o": 1}, event), ("big", {"note": "x" * 5_000}, event)])
    assert read(table, "small", event) is None and read(table, "big", event) is None and not producer.sent


async def test_a_failed_changelog_write_stops_the_process(app, producer, monkeypatch):
    table = app.Table("usage", key_type=str, partitions=6)
    halted: list[str] = []
    monkeypatch.setattr(tables_module, "halt", halted.append)
    await write_many(StubApp(producer), table, [("a", {"o": 1}, Event(2))])
    producer.sent[0][2].set_exception(KafkaTimeoutError("expired"))
    await asyncio.sleep(0)
    assert len(halted) == 1 and "failed: KafkaTimeoutError" in halted[0]


async def test_under_exactly_once_each_row_goes_through_the_table_on_its_own_event(producer):
    """In a transaction Faust's own table write is the one that joins it: no bytes path, no batches of our own."""
    from faust.streams import current_event

    class Recording(dict):
        def __setitem__(self, key, value):
            super().__setitem__(key, (value, current_event()))

    app = StubApp(producer)
    app.in_transaction = True
    table, first, second = Recording(), Event(2), Event(5)
    await write_many(app, table, [("a", {"o": 1}, first), ("b", {"o": 2}, second)])
    assert table == {"a": ({"o": 1}, first), "b": ({"o": 2}, second)} and not producer.sent
