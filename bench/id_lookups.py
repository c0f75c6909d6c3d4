"""What an event-id lookup costs in the worker's RocksDB options, with Faust's bloom filters and with the worker's.

    .venv/bin/python bench/id_lookups.py [--ids 300000] [--lookups 50000]

Why: nearly every event-id lookup (`usage.SeenIds.first_offset`, one per event) is for an id not stored, and
RocksDB answers those from each file's bloom filter unless it gives a false positive, which costs a data block
read. Faust's default is 3 bits per key; the worker's tables use `tables.ROCKSDB_OPTIONS`. A latency run cannot
show a difference of a few percent on these noisy cores, so this times the lookups alone: a database opened
with the worker's own options class (`faust_compat.rocksdb_memory.BoundedOptions`, the shared budget), `--ids`
16-byte keys written in batches and flushed to files, then `--lookups` absent keys, stored keys, absent again.
Prints microseconds per lookup for each bloom filter size.
"""
from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import rocksdict

from milestone_stream.faust_compat.rocksdb_memory import BoundedOptions
from milestone_stream.settings import Settings
from milestone_stream.tables import ROCKSDB_OPTIONS


def per_lookup(db: rocksdict.Rdict, keys: list[bytes]) -> float:
    began = time.perf_counter()
    for key in keys:
        db.get(key)
    return (time.perf_counter() - began) / len(keys) * 1e6


def measure(bits: int, stored: list[bytes], absent: list[bytes], path: Path) -> str:
    options = BoundedOptions(**{**ROCKSDB_OPTIONS, "bloom_filter_size": bits})
    options.budget = Settings.from_env({}).rocksdb_memory_mb * 2**20  # the worker's default budget
    db = options.open(path)
    for start in range(0, len(stored), 1000):
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key in stored[start:start + 1000]:
            batch.put(key, b"1234567")
        db.write(batch)
    db.flush()
    missing, present, again = per_lookup(db, absent), per_lookup(db, stored[:len(absent)]), per_lookup(db, absent)
    db.close()
    return f"{bits:2d} bits per key: absent {missing:.2f} us, stored {present:.2f} us, absent again {again:.2f} us"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ids", type=int, default=300_000)
    parser.add_argument("--lookups", type=int, default=50_000)
    args = parser.parse_args()
    keys = [hashlib.blake2b(str(i).encode(), digest_size=16).digest() for i in range(args.ids + args.lookups)]
    stored, absent = keys[:args.ids], keys[args.ids:]
    with tempfile.TemporaryDirectory(prefix="bench-ids-") as tmp:
        for bits in (3, ROCKSDB_OPTIONS["bloom_filter_size"], 3, ROCKSDB_OPTIONS["bloom_filter_size"]):
            print(measure(bits, stored, absent, Path(tmp) / f"db{bits}-{time.monotonic_ns()}"))


if __name__ == "__main__":
    main()
