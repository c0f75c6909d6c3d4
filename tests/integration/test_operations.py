"""SRE tooling against the real broker: `milestones lag` and `milestones deadletter list | replay`."""
import json
import os
import re
import subprocess
import sys

import aiohttp
from prometheus_client import generate_latest

from milestone_stream.dev.kafka_local import free_port
from milestone_stream.kafka_io import wait_for
from milestone_stream.ops.lag import measure, product_groups
from milestone_stream.sinks.approvals.signing import Signer
from milestone_stream.sinks.approvals.view import ApprovalView
from milestone_stream.sinks.approvals.web import ApprovalUI
from milestone_stream.topics import ensure_topics

from support.events import ev
from support.helpers import REPO, Worker, dead_letters, milestones, publish


def every_metric_in_the_runbook_is_scraped(scrape: str) -> None:
    runbook = (REPO / "README.md").read_text().split("## Operations (runbook)")[1].split("\n## ")[0]
    named = set(re.findall(r"`(milestones_[a-z_]+)`", runbook))
    families = {line.split()[2] for line in scrape.splitlines() if line.startswith("# HELP ")}
    missing = {n for n in named if n not in families and n.removesuffix("_total") not in families}
    assert len(named) >= 10 and not missing, f"named in the runbook but not scraped: {sorted(missing)}"


async def get(url: str, status: int = 200) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == status, (url, response.status)
            return await response.text()


async def probe_until_ready(base: str, timeout: float = 90) -> list[int]:
    """Every answer of /readyz from the first one the web server gives until the first 200."""
    seen: list[int] = []

    async def ready():
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{base}/readyz") as response:
                    seen.append(response.status)
                    return response.status == 200
        except aiohttp.ClientConnectionError:
            return False  # the web server is not listening yet

    await wait_for(ready, timeout, interval=0.05, what="/readyz")
    return seen


def metric(scrape: str, name: str) -> float:
    line = next(line for line in scrape.splitlines() if line.startswith(name + " "))
    return float(line.split()[-1])


def cli(bootstrap, topics, *args):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MILESTONES_TOPIC_PREFIX": topics.prefix,
           "MILESTONES_APP_ID": f"{topics.prefix}detector"}
    return subprocess.run([sys.executable, "-m", "milestone_stream.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


async def test_lag_counts_what_a_stopped_worker_has_not_read_then_falls_to_zero(kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    await publish(kafka_bootstrap, topics.telemetry, [ev(f"a{i % 50}", i, 3.0) for i in range(10_000)])  # 600 each
    stopped = cli(kafka_bootstrap, topics, "lag", "--json", "--max-lag", "100")
    assert stopped.stdout, stopped.stderr[-3000:]
    report = json.loads(stopped.stdout)
    assert stopped.returncode == 1, stopped.stderr  # over --max-lag: an alert fires
    assert report["total_lag"] == 10_000
    telemetry = [p for p in report["partitions"] if p["topic"] == topics.telemetry]
    assert sum(p["lag"] for p in telemetry) == 10_000 and all(p["committed"] is None for p in telemetry)
    assert all(p["age_seconds"] is not None and p["age_seconds"] >= 0 for p in telemetry if p["lag"])
    port = free_port()
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, MILESTONES_WEB_PORT=str(port),
                    MILESTONES_LOG_LEVEL="info").start()
    try:
        probes = await probe_until_ready(f"http://127.0.0.1:{port}")
        assert probes[0] == 503 and probes[-1] == 200, probes  # not ready before assignment, ready after
        groups = product_groups(f"{topics.prefix}detector", topics)

        async def caught_up():
            return sum(r.lag for r in await measure(kafka_bootstrap, groups)) == 0

        await wait_for(caught_up, 120, interval=1, what="the worker to consume everything")
        scrape = await get(f"http://127.0.0.1:{port}/metrics")
        assert metric(scrape, 'milestones_events_in_total{agent="usage"}') == 10_000
        assert metric(scrape, 'milestones_fired_total{kind="usage_threshold"}') == 50  # the 500 tier, each account
        assert metric(scrape, f'milestones_consumer_lag{{partition="0",topic="{topics.telemetry}"}}') == 0
        assert json.loads(await get(f"http://127.0.0.1:{port}/healthz"))["stalled_agents"] == {}
        ui = ApprovalUI(ApprovalView(kafka_bootstrap, topics), Signer(b"k" * 32), publish=None)
        every_metric_in_the_runbook_is_scraped(scrape + generate_latest(ui.registry).decode())
    finally:
        assert worker.stop() == 0
    lines = [json.loads(line) for line in worker.log.read_text().splitlines() if line.strip()]  # JSON, every line
    fired = [line for line in lines if line["message"] == "milestone fired"]
    assert len(fired) == 50 and {"time", "level", "agent", "account_id", "milestone_id"} <= set(fired[0])
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
