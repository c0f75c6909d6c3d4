"""`send_now` (faust_compat/produce.py): records in closed batches, partitioned as a keyed send, and it
returns only once every batch is acknowledged. The partitioning against a real broker is in
tests/integration/test_send_now_on_a_broker.py."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata

from milestone_stream.faust_compat import send_now

from support.producers import RecordingProducer, StubApp


class Topic:
    def __init__(self, name: str = "t.milestones") -> None:
        self.name, self.sent = name, []

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, *, key, value):  # Faust's `send`: a future per record
        self.sent.append((key, value))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.fixture
async def producer():
    producer = RecordingProducer(partitions=6)
    yield producer
    await producer.stop()


RECORDS = [(f"acct{i}".encode(), b"v" * 100 + str(i).encode()) for i in range(40)]


async def _acknowledge_all(producer: RecordingProducer) -> None:
    while True:
        for tp, _, acked in producer.sent:
            if not acked.done():
                acked.set_result(RecordMetadata(tp.topic, tp.partition, tp, 0, -1, 0, None))
        await asyncio.sleep(0)


async def test_each_key_goes_to_the_partition_of_a_keyed_send_in_order_in_closed_batches(producer):
    acknowledging = asyncio.create_task(_acknowledge_all(producer))
    try:
        await asyncio.wait_for(send_now(StubApp(producer), Topic(), RECORDS), 10)
    finally:
        acknowledging.cancel()
    partitioner = DefaultPartitioner()
    by_partition: dict[int, list] = {}
    for tp, batch, _ in producer.sent:
        assert tp.topic == "t.milestones" and batch.closed()  # sent at once: no linger, nothing joins them
        by_partition.setdefault(tp.partition, []).extend(batch.records)
    assert sum(len(r) for r in by_partition.values()) == len(RECORDS)
    for partition, records in by_partition.items():
        assert records == [r for r in RECORDS if partitioner(r[0], list(range(6)), list(range(6))) == partition]
    assert len(by_partition) > 1


async def test_it_returns_only_once_every_batch_is_acknowledged(producer):
    sending = asyncio.create_task(send_now(StubApp(producer), Topic(), RECORDS))
    while not producer.sent or any(not batch.closed() for _, batch, _ in producer.sent):
        await asyncio.sleep(0)
    for _ in range(10):
        await asyncio.sleep(0)
    *first, (tp, _, last) = producer.sent
    for tp_, _, acked in first:
        acked.set_result(RecordMetadata(tp_.topic, tp_.partition, tp_, 0, -1, 0, None))
    for _ in range(10):
        await asyncio.sleep(0)
    assert not sending.done()  # one batch still unacknowledged
    last.set_result(RecordMetadata(tp.topic, tp.partition, tp, 0, -1, 0, None))
    await asyncio.wait_for(sending, 5)


async def test_a_failed_batch_raises(producer):
    sending = asyncio.create_task(send_now(StubApp(producer), Topic(), RECORDS[:1]))
    while not producer.sent:
        await asyncio.sleep(0)
    producer.sent[0][2].set_exception(KafkaTimeoutError("expired"))
    with pytest.raises(KafkaTimeoutError):
        await asyncio.wait_for(sending, 5)


async def test_a_record_over_max_request_size_is_refused_before_anything_is_sent(producer):
    with pytest.raises(MessageSizeTooLargeError):
        await send_now(StubApp(producer, limit=2_000), Topic(), [RECORDS[0], (b"big", b"x" * 5_000)])
    assert not producer.sent


async def test_under_exactly_once_each_record_goes_through_faust_s_send(producer):
    """In a transaction Faust's own send is the one that joins it: no batches of our own."""
    app, topic = StubApp(producer), Topic()
    app.in_transaction = True
    await send_now(app, topic, RECORDS[:3])
    assert topic.sent == RECORDS[:3] and not producer.sent


async def test_nothing_to_send_sends_nothing(producer):
    await send_now(StubApp(producer), Topic(), [])
    assert not producer.sent
