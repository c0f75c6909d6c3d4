"""On a real broker, `send_now` puts every record on the partition a keyed aiokafka `send` puts it on, in
order, and every record is there (read_committed) when it returns. Why it matters: the drafter reads an
account's milestones from one partition; `Runtime.emit` sends them with `send_now` (faust_compat/produce.py)."""
from __future__ import annotations

from milestone_stream.faust_compat import send_now
from milestone_stream.kafka_io import producer, read_topic
from milestone_stream.topics import ensure_topics

from support.producers import StubApp


class Topic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


RECORDS = [(f"acct{i % 97}".encode(), f"record {i}".encode()) for i in range(600)]


async def test_records_land_where_a_keyed_send_puts_them_in_order(kafka_bootstrap, topics):
    ours, theirs = f"{topics.prefix}send-now", f"{topics.prefix}keyed-send"
    await ensure_topics(kafka_bootstrap, [ours, theirs], partitions=6)
    async with producer(kafka_bootstrap) as prod:
        for start in range(0, len(RECORDS), 100):  # as the worker emits: a batch's milestones at a time
            await send_now(StubApp(prod), Topic(ours), RECORDS[start:start + 100])
        acks = [await prod.send(theirs, key=key, value=value) for key, value in RECORDS]
        for ack in acks:
            await ack
    sent = await read_topic(kafka_bootstrap, ours)
    keyed = await read_topic(kafka_bootstrap, theirs)
    assert len(sent) == len(RECORDS)
    assert {(r.key, r.value, r.partition) for r in sent} == {(r.key, r.value, r.partition) for r in keyed}
    for partition in range(6):
        assert [r.value for r in sent if r.partition == partition] == \
               [r.value for r in keyed if r.partition == partition]  # each partition in the order sent
