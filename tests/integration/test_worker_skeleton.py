"""The worker starts against the broker, creates its topics, and exits cleanly on SIGTERM."""
import subprocess
import sys

from aiokafka.admin import AIOKafkaAdminClient

from milestone_stream.kafka_io import wait_for

from support.helpers import Worker


async def test_worker_creates_its_topics_and_exits_cleanly_on_sigterm(kafka_bootstrap, topics, tmp_path):
    w = Worker(kafka_bootstrap, topics.prefix, tmp_path, MILESTONES_LOG_LEVEL="info").start()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        async def all_there():
            return set(topics.all()) <= set(await admin.list_topics())
        await wait_for(all_there, 60, what="the product topics")
        await wait_for(lambda: "Worker ready" in w.log.read_text() or not w.alive(), 60, what="worker ready")
        assert w.alive(), w.log.read_text()[-2000:]
    finally:
        await admin.close()
    assert w.stop() == 0


def test_config_error_stops_start_up_with_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
           "MILESTONES_RULES": str(tmp_path / "no.yaml")}
    result = subprocess.run([sys.executable, "-m", "milestone_stream.cli", "worker"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"milestones: configuration error: rules file {tmp_path / 'no.yaml'} does not exist"]


async def test_a_table_that_cannot_be_recovered_stops_the_worker_loudly(kafka_bootstrap, topics, tmp_path):
    """Faust logs changelog recovery errors as warnings and runs on a half-restored table; we stop."""
    from milestone_stream.kafka_io import producer
    from milestone_stream.topics import ensure_topics

    changelog = f"{topics.prefix}detector-usage-changelog"
    await ensure_topics(kafka_bootstrap, topics.all() + [changelog], partitions=3)
    async with producer(kafka_bootstrap) as prod:
        await prod.send_and_wait(changelog, key=b'"acme"', value=b"{not json", partition=0)
    w = Worker(kafka_bootstrap, topics.prefix, tmp_path).start()
    assert w.process.wait(120) == 70
    assert "table recovery failed, stopping the worker" in w.log.read_text()
