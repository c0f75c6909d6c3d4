"""One memory budget for all of a worker's RocksDB databases: a block cache they share, and their memtables
charged to it.

Why: Faust opens a RocksDB database per table partition, each with a block cache and write buffers of its
own, so a worker's memory grows with the data it holds until every database reaches its own bounds — with
bounds of 4 MiB x 2 and 8 MiB, RSS still rose from 150 to 328 MiB between 10k and 1M accounts
(bench/results.md, 2026-11-26 05:49). RocksDB's answer, as Kafka Streams' bounded-memory config, is one
`Cache` for every database and a `WriteBufferManager` that counts their memtables against it. Faust builds
each database's options in `RocksDBOptions.as_options`, which a store reads from its `rocksdb_options`
attribute (private: declared in private.py) when it opens a partition; `bound` gives the store options that
add the shared budget. Only for the rocksdict driver, the one this project installs.
"""
from __future__ import annotations

import functools
from typing import Any

from faust.stores.rocksdb import RocksDBOptions, Store
from faust.types import TableT

try:
    import rocksdict
except ImportError:
    rocksdict = None  # type: ignore[assignment]  # (the rocksdb extra is not installed: nothing to bound)


@functools.cache
def _budget(total: int) -> tuple[Any, Any]:
    """The process's shared cache of `total` bytes, and the write buffer manager charging memtables to it
    (at most half of it; writers are not stalled, a flush is triggered instead)."""
    cache = rocksdict.Cache(total)
    return cache, rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(total // 2, False, cache)


class BoundedOptions(RocksDBOptions):
    """Faust's options for a database, with the shared cache (index and filter blocks in it too) and manager."""

    budget: int

    def as_options(self) -> Any:
        options = super().as_options()
        cache, manager = _budget(self.budget)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        options.set_write_buffer_manager(manager)
        return options


def bound(table: TableT, budget: int) -> bool:
    """Give `table`'s RocksDB store the shared budget of `budget` bytes (before its partitions open); False when
    the table's store is not RocksDB through rocksdict."""
    store = table.data
    if rocksdict is None or not isinstance(store, Store) or not store.use_rocksdict:
        return False
    bounded = BoundedOptions.__new__(BoundedOptions)
    bounded.__dict__.update(vars(store.rocksdb_options))  # every option Faust set, ttl included
    bounded.budget = budget
    store.rocksdb_options = bounded
    return True
