"""Segment and Salesforce CDC payloads through a real worker and broker: what comes out, once."""
import json
import random

import yaml

from milestone_stream.ids import milestone_id
from milestone_stream.kafka_io import producer, read_topic, wait_for
from milestone_stream.schemas.records import CrmChange, ResyncNeeded, TelemetryEvent
from milestone_stream.topics import ensure_topics

from support.helpers import Worker, dead_letters, final_totals, milestones, table_rows
from support.payloads import adapters_config, cdc, group, track

# the payloads are dated 2026-06-01: the workers' clock the day after, within the dedupe horizon
CLOCK = dict(MILESTONES_NOW="2026-06-02T00:00:00Z")


async def setup(bootstrap, topics, tmp_path, partitions=3):
    segment_topic, cdc_topic = f"{topics.prefix}segment.events", f"{topics.prefix}sf.accounts"
    await ensure_topics(bootstrap, topics.all() + [segment_topic, cdc_topic], partitions=partitions)
    path = tmp_path / "adapters.yaml"
    path.write_text(yaml.safe_dump(adapters_config(segment_topic, cdc_topic)))
    return segment_topic, cdc_topic, str(path)


async def send_json(bootstrap, topic, messages, key=lambda m: None):
    async with producer(bootstrap, linger_ms=20) as prod:
        futures = [await prod.send(topic, key=key(m), value=m if isinstance(m, bytes) else json.dumps(m).encode())
                   for m in messages]
        for f in futures:
            await f


def records(raw, record_type):
    return [record_type.from_avro(r.value) for r in raw]


async def test_segment_and_salesforce_cdc_payloads_become_telemetry_crm_changes_and_resyncs(
        kafka_bootstrap, topics, tmp_path):
    segment_topic, cdc_topic, config = await setup(kafka_bootstrap, topics, tmp_path)
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, MILESTONES_ADAPTERS=config, **CLOCK).start()
    try:
        await send_json(kafka_bootstrap, cdc_topic, [
            cdc("CREATE", ["001A"], {"Name": "Acme Corp", "Industry": "financial services",
                                     "CSM_Email__c": "sam@vendor.example", "ROI_Percent__c": 90.0}, sequence=1),
            cdc("UPDATE", ["001A"], {"ROI_Percent__c": 152.0, "Industry": None},
                changed=["ROI_Percent__c", "Industry", "LastModifiedDate"], nulled=["Industry"], sequence=2),
            cdc("UPDATE", ["001A", "001B", "001C"], {"Uses_Automation__c": True}, changed=["Uses_Automation__c"],
                sequence=3, envelope="cometd"),
            cdc("GAP_UPDATE", ["001D", "001E"], sequence=4),
            cdc("GAP_OVERFLOW", ["000000000000000AAA"], sequence=5),
            cdc("DELETE", ["001C"], sequence=6),
            b"{not json",
        ])
        # Segment: a group call, then 1,000 "Email Sent" for 001A, every tenth delivered again a little
        # later (a retry repeats the messageId: the detector recognises it within the dedupe horizon),
        # plus noise the adapter must not count
        rng, tracks = random.Random(3), [track(f"ajs-{i}", "001A") for i in range(1000)]
        for i in range(990, -1, -10):
            tracks.insert(i + rng.randint(1, 40), tracks[i])
        await send_json(kafka_bootstrap, segment_topic,
                        [group("g-1", "001A", plan="enterprise", employees=900)] + tracks +
                        [track("noise-1", "001A", "Page Scrolled"), track("orphan-1", None), b"\xff\xfe"],
                        key=lambda m: b"user-42")

        await wait_for(lambda: _kinds(kafka_bootstrap, topics, 7), 60, interval=0.5, what="7 milestones")
        got = await milestones(kafka_bootstrap, topics.milestones)
        assert len(got) == 7, "a milestone fired twice"
        assert {(m.account_id, m.kind, m.threshold) for m in got} == {
            ("001A", "usage_threshold", 500.0), ("001A", "usage_threshold", 1000.0),
            ("001A", "roi_threshold", 100.0), ("001A", "roi_threshold", 150.0),
            ("001A", "feature_adopted", None), ("001B", "feature_adopted", None), ("001C", "feature_adopted", None)}
        k1 = next(m for m in got if m.threshold == 1000.0)
        assert k1.milestone_id == milestone_id("001A", "usage_threshold", "emails_sent", 1000)
        assert k1.evidence[0].source == "segment"

        assert await wait_for(lambda: _total(kafka_bootstrap, topics, "001A", 1000.0), 30, what="total 1,000")
        profile = (await table_rows(kafka_bootstrap, topics.prefix, "profiles"))["001A"]["p"]
        assert profile["name"] == "Acme Corp" and profile["plan"] == "enterprise" and profile["roi_percent"] == 152.0
        assert "industry" not in profile  # nulledFields cleared it
        assert (await table_rows(kafka_bootstrap, topics.prefix, "profiles"))["001C"]["p"]["crm_deleted"] is True

        crm = records(await read_topic(kafka_bootstrap, topics.crm), CrmChange)
        assert sorted(c.account_id for c in crm) == ["001A", "001A", "001A", "001A", "001B", "001C", "001C"]
        assert all(c.origin and c.origin.topic in (cdc_topic, segment_topic) for c in crm)
        telemetry = records(await read_topic(kafka_bootstrap, topics.telemetry), TelemetryEvent)
        # duplicates passed on, counted once
        assert len(telemetry) == 1100 and len({t.event_id for t in telemetry}) == 1000

        resync = records(await read_topic(kafka_bootstrap, topics.resync), ResyncNeeded)
        assert sorted((r.change_type, tuple(r.record_ids)) for r in resync) == [
            ("GAP_OVERFLOW", ()), ("GAP_UPDATE", ("001D", "001E"))]
        parked = {(d.stage, d.reason, d.topic) for d in await dead_letters(kafka_bootstrap, topics.deadletter)}
        assert parked == {("salesforce_cdc", "malformed_json", cdc_topic), ("segment", "no_account", segment_topic),
                          ("segment", "malformed_json", segment_topic)}
    finally:
        assert worker.stop() == 0, f"worker did not exit cleanly; log: {worker.log}"


async def test_an_adapter_killed_mid_stream_republishes_and_nothing_counts_twice(kafka_bootstrap, topics, tmp_path):
    """SIGKILL while the Segment adapter has published far more than it committed (commit every 30 s):
    the restarted worker re-publishes those records, and the detector applies each source message once."""
    segment_topic, _, config = await setup(kafka_bootstrap, topics, tmp_path)
    accounts, per_account = [f"acct{i}" for i in range(6)], 1000
    messages = [track(f"m-{a}-{i}", a) for a in accounts for i in range(per_account)]
    random.Random(7).shuffle(messages)
    env = dict(MILESTONES_ADAPTERS=config, MILESTONES_COMMIT_INTERVAL="30", MILESTONES_LOG_LEVEL="info", **CLOCK)
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, **env).start()
    try:
        await send_json(kafka_bootstrap, segment_topic, messages, key=lambda m: m["messageId"].encode())

        async def published():
            return len(await read_topic(kafka_bootstrap, topics.telemetry, idle_ms=300))
        await wait_for(lambda: _at_least(published, 1500), 120, interval=0.3, what="1,500 records adapted")
        worker.kill()
        worker.start()
        expected = {a: float(per_account) for a in accounts}
        await wait_for(lambda: _totals_are(kafka_bootstrap, topics, expected), 180, interval=1,
                       what="every account at 1,000")
        copies = await published() - len(messages)
        print(f"\nthe adapter re-published {copies} records after the SIGKILL")
        assert copies > 0, "the kill came after a commit: nothing was re-published, so nothing was proven"
        got = await milestones(kafka_bootstrap, topics.milestones)
        assert {m.milestone_id for m in got} == {milestone_id(a, "usage_threshold", "emails_sent", t)
                                                 for a in accounts for t in (500, 1000)}
        assert all(len({m.model_dump_json() for m in got if m.milestone_id == i}) == 1
                   for i in {m.milestone_id for m in got})
    finally:
        assert worker.stop() == 0, f"worker did not exit cleanly; log: {worker.log}"


async def _kinds(bootstrap, topics, n):
    got = {(m.account_id, m.kind, m.threshold) for m in await milestones(bootstrap, topics.milestones)}
    return got if len(got) >= n else None


async def _total(bootstrap, topics, account, want):
    got = (await final_totals(bootstrap, topics.prefix)).get(account)
    assert got is None or got <= want, f"{account} counted {got}, more than {want}"
    return got == want


async def _totals_are(bootstrap, topics, expected):
    got = await final_totals(bootstrap, topics.prefix)
    assert all(v <= expected.get(k, 0) for k, v in got.items()), f"counted twice: {got}"
    return got == expected


async def _at_least(count, n):
    return await count() >= n
