"""SRE tooling against the real broker: `milestones lag` and `milestones deadletter list | replay`."""
import json
import os
import subprocess
import sys

from milestone_stream.kafka_io import wait_for
from milestone_stream.lag import measure, product_groups
from milestone_stream.topics import ensure_topics

from helpers import Worker, dead_letters, milestones, publish
from test_detection import ev


def cli(bootstrap, topics, *args):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MILESTONES_TOPIC_PREFIX": topics.prefix,
           "MILESTONES_APP_ID": f"{topics.prefix}detector"}
    return subprocess.run([sys.executable, "-m", "milestone_stream.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


async def test_lag_counts_what_a_stopped_worker_has_not_read_then_falls_to_zero(kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    await publish(kafka_bootstrap, topics.telemetry, [ev(f"a{i % 50}", i, 1.0) for i in range(10_000)])
    stopped = cli(kafka_bootstrap, topics, "lag", "--json", "--max-lag", "100")
    assert stopped.stdout, stopped.stderr[-3000:]
    report = json.loads(stopped.stdout)
    assert stopped.returncode == 1, stopped.stderr  # over --max-lag: an alert fires
    assert report["total_lag"] == 10_000
    telemetry = [p for p in report["partitions"] if p["topic"] == topics.telemetry]
    assert sum(p["lag"] for p in telemetry) == 10_000 and all(p["committed"] is None for p in telemetry)
    assert all(p["age_seconds"] is not None and p["age_seconds"] >= 0 for p in telemetry if p["lag"])
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path).start()
    try:
        groups = product_groups(f"{topics.prefix}detector", topics)

        async def caught_up():
            return sum(r.lag for r in await measure(kafka_bootstrap, groups)) == 0

        await wait_for(caught_up, 120, interval=1, what="the worker to consume everything")
    finally:
        assert worker.stop() == 0
    done = cli(kafka_bootstrap, topics, "lag", "--max-lag", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "total lag: 0" in done.stdout


async def test_a_fixed_dead_letter_is_replayed_once_and_a_second_replay_is_refused(kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, "before").start()
    try:
        await publish(kafka_bootstrap, topics.telemetry, [ev("acme", 1, 12.0, metric="campaigns_run")])
        [letter] = await wait_for(lambda: dead_letters(kafka_bootstrap, topics.deadletter), 60, what="a dead letter")
    finally:
        assert worker.stop() == 0
    assert letter.reason == "unknown_metric"
    listed = cli(kafka_bootstrap, topics, "deadletter", "list", "--stage", "usage", "--json")
    [entry] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert entry["reason"] == "unknown_metric" and entry["topic"] == topics.telemetry and entry["replayed_at"] is None
    assert cli(kafka_bootstrap, topics, "deadletter", "list", "--reason", "invalid").stdout.startswith("0 dead letter")

    rules = tmp_path / "rules.yaml"  # the fix: campaigns_run becomes a configured metric
    rules.write_text("usage:\n  emails_sent: {tiers: [500, 1000]}\n  campaigns_run: {tiers: [10, 50]}\n")
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, "after", MILESTONES_RULES=str(rules)).start()
    try:
        first = cli(kafka_bootstrap, topics, "deadletter", "replay", entry["id"])
        assert first.returncode == 0 and f"replayed {entry['id']}" in first.stdout, first.stderr
        second = cli(kafka_bootstrap, topics, "deadletter", "replay", entry["id"])
        assert second.returncode == 1 and "already replayed" in second.stderr
        [fired] = await wait_for(lambda: milestones(kafka_bootstrap, topics.milestones), 60, what="the milestone")
        assert (fired.account_id, fired.metric, fired.threshold) == ("acme", "campaigns_run", 10)
    finally:
        assert worker.stop() == 0
    again = json.loads(cli(kafka_bootstrap, topics, "deadletter", "list", "--json").stdout)
    assert again["replayed_at"] is not None
