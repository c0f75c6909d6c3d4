"""Every RocksDB database a worker opens shares one block cache, with its memtables charged to it.

Why: memory flat in the number of accounts (issue 13) rests on it; a Faust upgrade that stopped reading
`Store.rocksdb_options` would quietly give each partition its own cache again.
"""
from __future__ import annotations

import faust

from milestone_stream import tables
from milestone_stream.faust_compat import as_current
from milestone_stream.faust_compat.rocksdb_memory import BoundedOptions, _budget
from milestone_stream.settings import Settings

from support.partitioned import Event


def test_the_worker_tables_share_one_budget_and_use_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MILESTONES_ROCKSDB_MEMORY_MB", "16")
    settings = Settings.from_env()
    app = faust.App("rocksdb-memory-test", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path),
                    web_enabled=False)
    usage, ids = tables.table(app, "usage", settings), tables.table(app, "ids", settings)
    for table in (usage, ids):
        assert isinstance(table.data.rocksdb_options, BoundedOptions)
        assert table.data.rocksdb_options.write_buffer_size == tables.ROCKSDB_OPTIONS["write_buffer_size"]
        assert table.data.rocksdb_options.bloom_filter_size == 10  # (Faust's default is 3)
    cache, manager = _budget(16 * 2**20)
    before = cache.get_usage()
    try:
        for partition in range(3):
            event = Event(partition)  # (held: the current event is a weak reference)
            with as_current(event):
                for i in range(2_000):
                    usage.data[f"acct{i}"] = {"t": {"x": float(i)}, "o": i}
                    ids.data[f"id{partition}-{i}".encode()] = b"1"
        assert manager.get_usage() > 0          # the memtables of six databases counted in one place ...
        assert cache.get_usage() > before       # ... and charged to the one cache
        assert cache.get_usage() <= 16 * 2**20 * 1.1
    finally:
        for table in (usage, ids):
            table.data._dbs.clear()


def test_the_memory_store_is_left_alone():
    app = faust.App("rocksdb-memory-none", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
    assert type(tables.table(app, "usage", Settings.from_env()).data).__module__ == "faust.stores.memory"


def test_without_the_budget_the_tables_keep_their_options(tmp_path, monkeypatch):
    """MILESTONES_ROCKSDB_MEMORY_MB=0: Faust's own options class, still with the worker's buffers and bloom filters."""
    monkeypatch.setenv("MILESTONES_ROCKSDB_MEMORY_MB", "0")
    app = faust.App("rocksdb-memory-off", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path),
                    web_enabled=False)
    options = tables.table(app, "ids", Settings.from_env(), key_type=bytes).data.rocksdb_options
    assert not isinstance(options, BoundedOptions)
    assert options.bloom_filter_size == tables.ROCKSDB_OPTIONS["bloom_filter_size"] == 10
    assert options.write_buffer_size == tables.ROCKSDB_OPTIONS["write_buffer_size"]
