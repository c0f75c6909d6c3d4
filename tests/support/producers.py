"""aiokafka's own producer, unstarted, keeping the record batches it is given instead of sending them.

For the unit tests of what the worker hands straight to aiokafka (faust_compat/tables.py, produce.py).
"""
from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from faust.types import TP


class Recorded:
    """aiokafka's batch builder, the records it took kept beside it."""

    def __init__(self, builder) -> None:
        self.builder, self.records = builder, []

    def append(self, *, key, value, timestamp):
        taken = self.builder.append(key=key, value=value, timestamp=timestamp)
        if taken is not None:
            self.records.append((key, value))
        return taken

    def __getattr__(self, name):
        return getattr(self.builder, name)


class RecordingProducer(AIOKafkaProducer):
    """aiokafka's producer, unstarted: its own record batches, kept here instead of sent to a broker."""

    def __init__(self, partitions: int = 6) -> None:
        super().__init__(bootstrap_servers="127.0.0.1:1", max_batch_size=1024)
        self.sent: list[tuple[TP, Recorded, asyncio.Future]] = []
        self.partitions = partitions

    async def partitions_for(self, topic):
        return set(range(self.partitions))

    def create_batch(self):
        return Recorded(super().create_batch())

    async def send_batch(self, batch, topic, *, partition):
        acked = asyncio.get_running_loop().create_future()
        self.sent.append((TP(topic, partition), batch, acked))
        return acked


class StubApp:
    """What `write_many` and `send_now` read of an app: no transaction, the producer, its max_request_size."""

    in_transaction = False

    def __init__(self, producer: RecordingProducer, limit: int = 1_000_000) -> None:
        self.producer = type("FaustProducer", (), {"_ensure_producer": lambda _: producer})()
        self.conf = type("Conf", (), {"producer_max_request_size": limit})()
