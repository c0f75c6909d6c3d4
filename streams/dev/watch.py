"""Print milestones as they are fired (what `milestones up` shows a new user)."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from milestone_stream.schemas.records import Milestone
from milestone_stream.settings import Settings
from milestone_stream.topics import TopicNames


async def watch_milestones(bootstrap: str, settings: Settings, exit_after: float | None = None,
                           alive: Callable[[], bool] = lambda: True,
                           last_activity: Callable[[], float] = lambda: 0.0) -> int:
    """Print each distinct milestone; stop after `exit_after` quiet seconds (milestones and other
    activity, such as emails landing, count) or when a process it depends on has stopped."""
    consumer = AIOKafkaConsumer(TopicNames(settings.topic_prefix).milestones, bootstrap_servers=bootstrap,
                                group_id=None, auto_offset_reset="earliest", isolation_level="read_committed")
    await consumer.start()
    seen: set[str] = set()
    copies = 0
    print("watching for milestones (Ctrl-C to stop) ...", flush=True)
    try:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while exit_after is None or loop.time() - max(last, last_activity()) < exit_after:
            if not alive():
                raise SystemExit("a process stopped (worker, ui or sender); see its log in the data folder")
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    m = Milestone.from_avro(r.value)
                    if m.milestone_id in seen:
                        copies += 1  # a re-delivered copy: same id, same content
                        continue
                    seen.add(m.milestone_id)
                    last = loop.time()
                    print(f"  milestone  {m.account_id:<8} {m.kind:<18} {m.title}  [{m.milestone_id[:12]}]", flush=True)
    finally:
        await consumer.stop()
    print(f"{len(seen)} distinct milestones ({copies} re-delivered copies)", flush=True)
    return len(seen)
