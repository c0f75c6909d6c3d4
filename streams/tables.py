"""The worker's tables, declared once: each a changelog-backed Faust table keyed by account.

Why here and not in each stage: the drafter reads the detector's rows (the context of a note), so
the tables are shared; declaring them in one place keeps their names, partitions and changelog
settings (the event-id table's retention) together. Each row's shape is owned by one module:
`usage` by agents/detector/usage.py, `profiles` by agents/detector/crm.py, `celebrations` by
agents/drafter/policy.py, `event_ids` by agents/detector/usage.py (`SeenIds`). The tables hold
the rows' stored form (plain JSON dicts); each owner's row class is a `StoredRow`, and an agent
converts at the table: `Row.from_stored(table.get(key)).copy()` to change it, `table[key] = row.to_stored()`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import faust
from faust.types import TableT

from milestone_stream import faust_compat
from milestone_stream.rules import Rules
from milestone_stream.settings import Settings

Row = TypeVar("Row", bound="StoredRow")


class StoredRow(Protocol):
    """A table row as its owner module types it, apart from the compact form the changelog holds."""

    @classmethod
    def from_stored(cls: type[Row], value: object) -> Row: ...  # a read sharing value's containers (None: a new row)

    def to_stored(self) -> dict: ...                            # exactly the compact form

    def copy(self: Row) -> Row: ...                             # a working copy to change


@dataclass(frozen=True)
class Tables:
    # the values are the rows' stored form (`StoredRow.to_stored`); a changelog may hold anything, so readers
    # check (`StoredRow.from_stored` takes an object)
    usage: TableT[str, dict]         # account → usage row (totals, spike windows, input offset)
    profiles: TableT[str, dict]      # account → CRM profile row
    event_ids: TableT[bytes, bytes]  # 16-byte event id key → input offset that first carried it (decimal text)
    celebrations: TableT[str, dict]  # account → the drafter's row (held milestones, last note)


#: each partition's RocksDB write buffers (Faust's default: 64 MiB, three of them, per database); their memory
#: and the block cache are the worker's one budget (MILESTONES_ROCKSDB_MEMORY_MB, faust_compat.bound_rocksdb).
#: Bloom filters of 10 bits per key (Faust's default: 3, about one false positive in four where 10 give under one in
#: a hundred): nearly every event-id lookup is for an id not stored, and each false positive reads a data block
ROCKSDB_OPTIONS = {"write_buffer_size": 4 * 2**20, "max_write_buffer_number": 2, "bloom_filter_size": 10}


def table(app: faust.App, name: str, settings: Settings, key_type: type = str, **kwargs: Any) -> TableT:
    """A changelog-backed table with one partition per input partition, within the worker's RocksDB budget."""
    # a copy for each table: Faust's RocksDB store takes the keys it reads out of the mapping it is given
    declared = app.Table(name, key_type=key_type, partitions=settings.partitions, options=dict(ROCKSDB_OPTIONS),
                         **kwargs)
    if settings.rocksdb_memory_mb:
        faust_compat.bound_rocksdb(declared, settings.rocksdb_memory_mb * 2**20)
    return declared


def declare(app: faust.App, settings: Settings, rules: Rules) -> Tables:
    # the broker drops event-id entries once no event they could match is accepted any more
    retention = timedelta(days=rules.dedupe.horizon_days + 1, seconds=rules.max_future_skew_seconds)
    return Tables(
        usage=table(app, "usage", settings),
        profiles=table(app, "profiles", settings),
        event_ids=table(app, "event_ids", settings, key_type=bytes, value_type=bytes,
                        extra_topic_configs={"cleanup.policy": "compact,delete",
                                             "retention.ms": str(int(retention.total_seconds() * 1000))}),
        celebrations=table(app, "celebrations", settings),
    )
