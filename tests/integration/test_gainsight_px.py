"""Gainsight PX custom events through a real worker and broker: duplicates (PX has no event id) count once."""
import json
import random

import yaml

from milestone_stream.ids import milestone_id
from milestone_stream.kafka_io import producer, read_topic, wait_for
from milestone_stream.ops.lag import measure
from milestone_stream.schemas.records import TelemetryEvent
from milestone_stream.topics import ensure_topics

from support.helpers import Worker, dead_letters, final_totals, milestones
from support.px import JUNE_1, px_config, px_event, px_webhook

# the events are dated 2026-06-01: the worker's clock the day after, within the dedupe horizon
CLOCK = dict(MILESTONES_NOW="2026-06-02T00:00:00Z")


async def test_px_events_with_duplicates_go_through_the_adapter_and_the_worker_and_count_once(
        kafka_bootstrap, topics, tmp_path):
    px_topic = f"{topics.prefix}px.events"
    await ensure_topics(kafka_bootstrap, topics.all() + [px_topic], partitions=3)
    config = tmp_path / "adapters.yaml"
    config.write_text(yaml.safe_dump({"gainsight_px": px_config(px_topic)}))

    # 1,000 distinct "Report Exported" events of one account (distinct by time and session); every tenth
    # delivered again later — half of those again as the same body, half in PX's webhook envelope with the
    # attributes in another order — which PX gives no id to recognise: only the derived key does
    rng = random.Random(5)
    events = [px_event(date=JUNE_1 + i * 1000, session=f"s-{i // 50}", attributes={"format": "csv", "rows": i})
              for i in range(1000)]
    copies = []
    for i in range(0, 1000, 10):
        again = dict(events[i], attributes={"rows": i, "format": "csv"})
        copies.append(px_webhook(again) if i % 20 else again)
    stream = events + copies
    rng.shuffle(stream)
    hostile = [px_event(account=None), px_event(date=1e20), px_event("Emails Delivered", attributes={"count": "NaN"}),
               px_event(date="2026-13-45"), b"{not json", px_event("Page Scrolled")]
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, MILESTONES_ADAPTERS=str(config), **CLOCK).start()
    try:
        async with producer(kafka_bootstrap, linger_ms=20) as prod:
            futures = [await prod.send(px_topic, key=b"user-42",
                                       value=m if isinstance(m, bytes) else json.dumps(m).encode())
                       for m in stream + hostile]
            for f in futures:
                await f

        async def counted():
            total = (await final_totals(kafka_bootstrap, topics.prefix)).get("acct-1")
            assert total is None or total <= 1000.0, f"counted {total}: a duplicate counted twice"
            return total == 1000.0
        await wait_for(counted, 90, interval=0.5, what="acct-1 at 1,000")

        async def all_applied():  # every one of the 1,100 passed on is committed: a late duplicate had its chance
            rows = await measure(kafka_bootstrap, {f"{topics.prefix}detector": [topics.telemetry]})
            return rows and sum(r.end for r in rows) == 1100 and all(r.lag == 0 for r in rows)
        await wait_for(all_applied, 60, interval=0.5, what="all 1,100 telemetry events committed")
        assert (await final_totals(kafka_bootstrap, topics.prefix)).get("acct-1") == 1000.0

        telemetry = [TelemetryEvent.from_avro(r.value) for r in await read_topic(kafka_bootstrap, topics.telemetry)]
        assert len(telemetry) == 1100 and len({t.event_id for t in telemetry}) == 1000  # passed on, recognised
        assert {t.source for t in telemetry} == {"Gainsight PX"}
        got = await milestones(kafka_bootstrap, topics.milestones)
        assert sorted(m.milestone_id for m in got) == sorted(
            milestone_id("acct-1", "usage_threshold", "emails_sent", t) for t in (500, 1000))
        assert all(m.evidence[0].source == "Gainsight PX" for m in got)

        async def parked():
            got = {(d.stage, d.reason, d.topic) for d in await dead_letters(kafka_bootstrap, topics.deadletter)}
            return got if len(got) >= 4 else None
        assert await wait_for(parked, 30, what="the hostile events parked") == {
            ("gainsight_px", "no_account", px_topic), ("gainsight_px", "invalid_timestamp", px_topic),
            ("gainsight_px", "invalid_value", px_topic), ("gainsight_px", "malformed_json", px_topic)}
        assert len(await dead_letters(kafka_bootstrap, topics.deadletter)) == 5  # the unmapped name is a skip
    finally:
        assert worker.stop() == 0, f"worker did not exit cleanly; log: {worker.log}"
