"""A stand-in for a Faust event of which only its message's partition is read: the tables pick a partition's
RocksDB database by it (faust_compat.tables, the store's own `_set` and `_get`)."""
from __future__ import annotations


class Message:
    def __init__(self, partition: int) -> None:
        self.partition = partition


class Event:
    def __init__(self, partition: int) -> None:
        self.message = Message(partition)
