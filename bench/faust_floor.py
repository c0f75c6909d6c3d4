"""The Faust floor: what a Faust agent costs before it does any work, on the benchmark's input.

    python bench/faust_floor.py BOOTSTRAP TOPIC GROUP consume|produce|drain

`consume`: an agent that takes the stream in batches (as the usage agent did) and does nothing.
`produce`: the same, sending each event's value on to TOPIC.floor, as a table write per event does.
`drain`: the floor raised: each fetch's messages handed to a batch step that does nothing, past Faust's
per-message stream, as the worker's usage agent takes telemetry now (faust_compat/drain.py).
Both use the worker's broker settings (at_least_once, commit interval, producer linger), so the
gap between them and the raw aiokafka loop is Faust's own per-message cost.
"""
from __future__ import annotations

import asyncio
import sys
import tempfile

import faust

from milestone_stream import faust_compat
from milestone_stream.settings import Settings


def build(bootstrap: str, topic: str, group: str, mode: str) -> faust.App:
    s = Settings.from_env()
    app = faust.App(group, broker=f"kafka://{bootstrap}", store="memory://", processing_guarantee=s.guarantee,
                    broker_commit_interval=s.commit_interval, producer_linger=s.producer_linger, producer_acks=-1,
                    web_enabled=False, consumer_auto_offset_reset="earliest", datadir=tempfile.mkdtemp(),
                    topic_partitions=s.partitions)
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    source, sink = app.topic(topic, **raw), app.topic(f"{topic}.floor", **raw)

    @app.agent(source, name="floor")
    async def floor(stream):
        async for events in stream.take_events(s.batch_size, within=s.batch_seconds):
            if mode == "produce":
                for event in events:
                    await sink.send(key=event.message.key, value=event.message.value)

    if mode == "drain":  # the agent above keeps the topic subscribed; its messages come here instead
        async def nothing(events: list) -> None:
            return None

        async def park(stage: str, message: object, exc: Exception) -> None:
            raise exc  # the step does nothing, so it cannot fail

        faust_compat.install(app)
        faust_compat.deliver_batches(app, topic, "floor", nothing, s.batch_size, park)
    return app


def main() -> None:
    bootstrap, topic, group, mode = sys.argv[1:5]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = faust_compat.worker(build(bootstrap, topic, group, mode), loop=loop, loglevel="ERROR")  # no spinner
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
