"""A real Kafka broker for the test session, and per-test topics.

Order: KAFKA_BOOTSTRAP_SERVERS if set; testcontainers' Kafka when a Docker engine answers; else the
project's local launcher (Apache Kafka jars run by `java`), started once per session.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from milestone_stream.dev.kafka_local import LocalKafka
from milestone_stream.topics import TopicNames, ensure_topics

from support.helpers import REPO
from support.registry import schema_registry  # noqa: F401 (a session fixture: the local schema registry)


def pytest_collection_modifyitems(items) -> None:
    """`unit` for tests/unit (no broker, no process), `integration` for tests/integration (real broker):
    `./dev test -m unit` runs the fast ones alone."""
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in ("unit", "integration"):
            item.add_marker(folder)


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:3.9.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    os.environ.setdefault("MILESTONES_CACHE_DIR", str(REPO / ".cache"))
    kafka = LocalKafka(tmp_path_factory.mktemp("kafka"))
    kafka.start()
    try:
        yield kafka.bootstrap_servers
    finally:
        kafka.stop()


@pytest.fixture
def topics(request) -> TopicNames:
    """Topic names unique to this test (its own topics and consumer groups)."""
    return TopicNames(prefix=f"t{uuid.uuid4().hex[:8]}.")


@pytest.fixture
async def created_topics(kafka_bootstrap, topics) -> TopicNames:
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    return topics
