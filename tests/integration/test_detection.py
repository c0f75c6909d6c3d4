"""Milestone detection through a real worker process and a real broker."""
import random
from datetime import UTC, datetime, timedelta

import pytest

from milestone_stream.ids import milestone_id
from milestone_stream.kafka_io import producer, read_topic, wait_for
from milestone_stream.schemas.records import Contact, CrmChange, FieldChange, TelemetryEvent
from milestone_stream.topics import ensure_topics

from support.events import T0, TIERS, ev
from support.helpers import Worker, dead_letters, milestones, publish


@pytest.fixture
async def worker(kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    w = Worker(kafka_bootstrap, topics.prefix, tmp_path).start()
    yield w
    assert w.stop() == 0, f"worker did not exit cleanly; log: {w.log}"


async def until_milestones(bootstrap, topics, count, timeout=60):
    async def enough():
        got = await milestones(bootstrap, topics.milestones)
        return got if len({m.milestone_id for m in got}) >= count else None
    return await wait_for(enough, timeout, interval=0.5, what=f"{count} milestones")


async def test_tier_crossings_single_multi_and_exact_boundary_with_duplicates(kafka_bootstrap, topics, worker):
    events = [ev("jumper", 1, 900), ev("jumper", 2, 11100),  # 900 → 12,000: 1k, 5k and 10k at once
              ev("exact", 1, 999), ev("exact", 2, 1)]          # reaching exactly 1,000 fires 1k
    await publish(kafka_bootstrap, topics.telemetry, events + events)  # every event published twice
    got = await until_milestones(kafka_bootstrap, topics, 6)
    fired = {(m.account_id, m.threshold) for m in got}
    assert fired == {("jumper", 500), ("jumper", 1000), ("jumper", 5000), ("jumper", 10000),
                     ("exact", 500), ("exact", 1000)}
    assert len(got) == 6, "a duplicate event fired a milestone twice"
    jump = {m.threshold: m for m in got if m.account_id == "jumper"}
    assert jump[10000].value == 12000 and jump[10000].evidence[0].record == "event jumper-2"
    assert jump[1000].milestone_id == milestone_id("jumper", "usage_threshold", "emails_sent", 1000)
    # one more small event: totals were not inflated by the duplicates (12,000 + 100 stays under 50k)
    await publish(kafka_bootstrap, topics.telemetry, [ev("exact", 3, 3999)])  # exact: 1,000 → 4,999
    await publish(kafka_bootstrap, topics.telemetry, [ev("exact", 4, 1)])     # → 5,000 exactly
    got = await until_milestones(kafka_bootstrap, topics, 7)
    assert [m.value for m in got if m.threshold == 5000 and m.account_id == "exact"] == [5000]


async def test_bad_input_is_dead_lettered_and_the_stream_goes_on(kafka_bootstrap, topics, worker):
    good = ev("ok", 1, 1000)
    bad = {
        "unknown_metric": ev("ok", 2, 5, metric="tweets"),
        "future_timestamp": ev("ok", 3, 5, at=datetime.now(UTC) + timedelta(days=30)),
        "invalid": TelemetryEvent.model_construct(**{**ev("ok", 4, 1).model_dump(), "value": -5.0}),
        "invalid_account": TelemetryEvent.model_construct(**{**ev("ok", 5, 1).model_dump(), "account_id": ""}),
    }
    async with producer(kafka_bootstrap) as prod:
        for e in bad.values():
            await prod.send_and_wait(topics.telemetry, key=b"ok", value=e.to_avro())
        await prod.send_and_wait(topics.telemetry, key=b"ok", value=b"not avro at all")
        await prod.send_and_wait(topics.telemetry, key=b"someone-else", value=ev("ok", 6, 1).to_avro())
        await prod.send_and_wait(topics.telemetry, key=b"ok", value=good.to_avro())
    got = await until_milestones(kafka_bootstrap, topics, 2)
    assert {m.threshold for m in got} == {500, 1000}
    letters = await wait_for(lambda: _letters_if(kafka_bootstrap, topics, 6), 30, what="6 dead letters")
    reasons = sorted(d.reason for d in letters)
    assert reasons == sorted(["unknown_metric", "future_timestamp", "invalid", "invalid", "wrong_marker",
                              "key_mismatch"])
    for d in letters:
        assert d.stage == "usage" and d.topic == topics.telemetry and d.offset >= 0 and d.error
    negative = next(d for d in letters if d.reason == "invalid" and "value" in d.error)
    assert "finite number >= 0" in negative.error


async def _letters_if(bootstrap, topics, n):
    got = await dead_letters(bootstrap, topics.deadletter)
    return got if len(got) >= n else None


def crm(account, i, at=None, contacts=None, **fields):
    return CrmChange(change_id=f"{account}-c{i}", account_id=account, source="salesforce",
                     source_record=f"001{account}", occurred_at=at or T0 + timedelta(minutes=i),
                     changes=[FieldChange(field=k.replace("__", "."), value=v) for k, v in fields.items()],
                     contacts=contacts)


async def test_crm_milestones_fire_once(kafka_bootstrap, topics, worker):
    changes = [
        crm("acme", 1, name="Acme Corp", industry="financial services", roi_percent=120.0,
            contacts=[Contact(name="Jane Doe", email="jane@acme.example", role="executive_sponsor")]),
        crm("acme", 2, adoption__automation=True),
        crm("acme", 3, adoption__automation=False),
        crm("acme", 4, adoption__automation=True),                # true→false→true: no second fire
        crm("acme", 5, roi_percent=160.0),                         # crosses 150 only
        crm("acme", 6, roi_percent=90.0),
        crm("acme", 7, roi_percent=155.0),                         # 100 and 150 already fired
        crm("acme", 8, certification__admin=5),
        crm("acme", 9, qbr_completed_at="2026-06-10"),
        crm("acme", 10, implementation_signed_off_at="2026-06-11"),
        crm("acme", 11, implementation_signed_off_at="2026-06-12"),  # signed off once, ever
        crm("acme", 12, renewal_signed_at="2026-06-15"),
    ]
    await publish(kafka_bootstrap, topics.crm, changes + changes[:4])  # some re-sent
    got = await until_milestones(kafka_bootstrap, topics, 7)
    kinds = sorted((m.kind, m.threshold) for m in got)
    assert kinds == sorted([("roi_threshold", 100), ("feature_adopted", None), ("roi_threshold", 150),
                            ("certification", None), ("qbr_completed", None),
                            ("implementation_signed_off", None), ("renewal_signed", None)])
    assert len(got) == 7
    roi = next(m for m in got if m.threshold == 150)
    assert roi.value == 160 and "acme-c5" in roi.evidence[0].record and roi.evidence[0].source == "salesforce"


async def test_a_thousand_accounts_on_six_partitions_out_of_order(kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=6)
    rng = random.Random(7)
    events = []
    for a in range(1000):
        for i in range(6):  # event times shuffled: late and out-of-order input
            events.append(ev(f"acct{a}", i, rng.choice([100, 250, 400, 900]),
                             at=T0 - timedelta(hours=rng.randint(0, 500))))
    rng.shuffle(events)  # accounts interleaved
    expected = _offline(events)
    w = Worker(kafka_bootstrap, topics.prefix, tmp_path, MILESTONES_PARTITIONS="6").start()
    try:
        await publish(kafka_bootstrap, topics.telemetry, events)
        got = await until_milestones(kafka_bootstrap, topics, len(expected), timeout=120)
        assert {m.milestone_id for m in got} == expected
        assert len(got) == len(expected)
    finally:
        assert w.stop() == 0


def _offline(events):
    totals, ids = {}, set()
    for e in events:
        before = totals.get(e.account_id, 0)
        totals[e.account_id] = after = before + e.value
        ids |= {milestone_id(e.account_id, "usage_threshold", "emails_sent", t) for t in TIERS if before < t <= after}
    return ids


async def test_anniversary_on_a_leap_day_contract_fires_once_from_the_timer(kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    w = Worker(kafka_bootstrap, topics.prefix, tmp_path, MILESTONES_NOW="2025-02-28T10:00:00Z",
               MILESTONES_ANNIVERSARY_INTERVAL="0.5").start()
    try:
        await publish(kafka_bootstrap, topics.crm, [
            crm("leap", 1, contract_start="2024-02-29"),       # 1st anniversary: 28 Feb 2025
            crm("notyet", 1, contract_start="2024-03-01"),     # due tomorrow: must not fire
            crm("old", 1, contract_start="2019-02-28"),        # years 1, 2, 3, 5 passed long ago: not flooded
        ])
        got = await until_milestones(kafka_bootstrap, topics, 1)
        await publish(kafka_bootstrap, topics.crm, [crm("leap", 2, name="Leap Ltd")])  # a later change: no refire
        records = await read_topic(kafka_bootstrap, topics.milestones)
        assert [(m.account_id, m.kind, m.threshold, m.reached_at.date().isoformat()) for m in got] == \
            [("leap", "anniversary", 1, "2025-02-28")]
        assert len(records) == 1
    finally:
        assert w.stop() == 0
