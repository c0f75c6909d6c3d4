"""An exception is a dead letter, never a loss: rules that raise inside a real worker process.

Faults come from tests/faults.py: the usage rule raises for one account's events of value 13, the
CRM rule for one account's changes, the drafter for one account's note. Everything else must come
out exactly as without the faults; each record that raised must be on the dead-letter topic with
its stage, reason, exception and origin, counted in the metrics, and count once when replayed.
"""
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import aiohttp

from milestone_stream.dev.kafka_local import free_port
from milestone_stream.kafka_io import read_topic, wait_for
from milestone_stream.schemas.records import ApprovalRequest, Contact, CrmChange, FieldChange, TelemetryEvent
from milestone_stream.topics import ensure_topics

from support.faults import MARK
from support.helpers import Worker, dead_letters, final_totals, publish

NOW = datetime.now(UTC).replace(microsecond=0)
ACCOUNTS = [f"a{i}" for i in range(8)] + ["mixed", "drafty"]


def ev(account: str, i: int, value: float = 10.0) -> TelemetryEvent:
    return TelemetryEvent(event_id=f"{account}-{i}", account_id=account, metric="emails_sent", value=value,
                          occurred_at=NOW - timedelta(hours=1) + timedelta(seconds=i), source="platform.mailer")


def profile(account: str) -> CrmChange:
    values = {"name": f"Account {account}", "csm_email": "sam@vendor.example", "csm_name": "Sam Rivera"}
    return CrmChange(change_id=f"p-{account}", account_id=account, source="salesforce", occurred_at=NOW,
                     changes=[FieldChange(field=k, value=v) for k, v in values.items()],
                     contacts=[Contact(name="Jane Doe", email="jane@example.com", role="executive_sponsor")])


def cli(bootstrap, topics, *args):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MILESTONES_TOPIC_PREFIX": topics.prefix}
    return subprocess.run([sys.executable, "-m", "milestone_stream.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


async def test_a_record_that_raises_is_dead_lettered_the_rest_applied_and_a_replay_counts_it_once(
        kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    port = free_port()
    # commits rarely, so that the worker after the kill reads everything again, parked events included
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, "faulty",
                    faults="usage=mixed,crm=crm-poison,draft=drafty",
                    MILESTONES_WEB_PORT=str(port), MILESTONES_GATHER_SECONDS="0.2", MILESTONES_DRAFTER_INTERVAL="0.2",
                    MILESTONES_BATCH_SIZE="50", MILESTONES_COMMIT_INTERVAL="60").start()
    events = [ev(a, i) for i in range(120) for a in ACCOUNTS]  # 1,200 each: the 500 and 1,000 tiers
    poison = [ev("mixed", 1000 + i, MARK) for i in range(5)]  # interleaved with the same account's good events
    for n, p in enumerate(poison):
        events.insert(100 + 200 * n, p)
    try:
        await publish(kafka_bootstrap, topics.crm, [profile(a) for a in ACCOUNTS] + [profile("crm-poison")])
        await publish(kafka_bootstrap, topics.telemetry, events)

        async def settled():
            letters = await dead_letters(kafka_bootstrap, topics.deadletter)
            return letters if len(letters) >= 5 + 1 + 2 else None
        letters = await wait_for(settled, 120, interval=0.5, what="eight dead letters")
        totals = await wait_for(lambda: _totals_if(kafka_bootstrap, topics.prefix, {a: 1200.0 for a in ACCOUNTS}),
                                60, interval=0.5, what="every good event counted")
        assert totals["mixed"] == 1200.0  # the batches holding a poison event still applied the others

        usage = sorted((d for d in letters if d.stage == "usage"), key=lambda d: d.offset)
        assert [(d.reason, d.error.split(":")[0]) for d in usage] == [("unexpected_error", "InjectedFault")] * 5
        assert [TelemetryEvent.from_avro(d.value) for d in usage] == poison and all(d.key == b"mixed" for d in usage)
        assert {d.topic for d in usage} == {topics.telemetry}
        [crm] = [d for d in letters if d.stage == "crm"]
        assert crm.reason == "unexpected_error" and "InjectedFault: injected fault for p-crm-poison" in crm.error
        drafted = [d for d in letters if d.stage == "drafter"]
        assert sorted(d.reason for d in drafted) == ["draft_failed", "draft_failed"]  # its 500 and 1,000 tiers
        assert all("injected drafting fault" in d.error and d.topic == topics.milestones for d in drafted)
        requests = [ApprovalRequest.from_avro(r.value) for r in await read_topic(kafka_bootstrap,
                                                                                 topics.approval_requests)]
        assert {r.account_id for r in requests} == set(ACCOUNTS) - {"drafty"}  # the drafter went on
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                scrape = await r.text()
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200
        assert 'milestones_dead_letters_total{reason="unexpected_error",stage="usage"} 5.0' in scrape
        assert 'milestones_dead_letters_total{reason="draft_failed",stage="drafter"} 2.0' in scrape
    finally:
        worker.kill()  # SIGKILL, nothing committed: the next worker reads every event again

    # the cause fixed (a worker without the faults) reads everything again: a parked event is not taken
    # for an applied one; then the usage dead letters are replayed, and each counts once
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, "fixed").start()
    try:
        listed = cli(kafka_bootstrap, topics, "deadletter", "list", "--stage", "usage", "--json")
        ids = [json.loads(line)["id"] for line in listed.stdout.splitlines()]
        assert len(ids) == 5, listed.stdout + listed.stderr
        replayed = cli(kafka_bootstrap, topics, "deadletter", "replay", *ids)
        assert replayed.returncode == 0, replayed.stderr
        expected = {a: 1200.0 for a in ACCOUNTS} | {"mixed": 1200.0 + 5 * MARK}
        await wait_for(lambda: _totals_if(kafka_bootstrap, topics.prefix, expected), 60, interval=0.5,
                       what="the replayed events counted once")
    finally:
        assert worker.stop() == 0


async def _totals_if(bootstrap, prefix, expected):
    got = await final_totals(bootstrap, prefix)
    return got if all(got.get(a) == v for a, v in expected.items()) else None
