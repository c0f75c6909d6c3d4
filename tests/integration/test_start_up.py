"""Start-up that cannot race: workers of several stacks (and two of one group) started at the same
moment on topics that do not exist yet all come up with every agent running, and say so honestly.

Before, Faust declared each changelog topic as its agents started; stacks starting together saw a
changelog with 0 partitions (`PartitionsMismatch`) and their agents crashed at every restart while
`/readyz` answered 200.
"""
import json
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp

from milestone_stream.dev.kafka_local import free_port
from milestone_stream.kafka_io import read_topic, wait_for
from milestone_stream.schemas.records import CrmChange, FieldChange, TelemetryEvent
from milestone_stream.topics import TopicNames, ensure_topics

from support.helpers import Worker, milestones, publish

NOW = datetime.now(UTC)


async def probe(port: int, path: str) -> tuple[int, dict] | None:
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                return response.status, json.loads(await response.text())
    except aiohttp.ClientConnectionError:
        return None


async def test_stacks_and_group_members_started_together_all_run_every_agent(kafka_bootstrap, tmp_path):
    stacks = [TopicNames(prefix=f"t{uuid.uuid4().hex[:8]}.") for _ in range(3)]
    ports = [free_port() for _ in range(4)]
    members = [(stacks[0], "a"), (stacks[0], "b"), (stacks[1], "c"), (stacks[2], "d")]  # two of one group
    workers = [Worker(kafka_bootstrap, names.prefix, tmp_path, name, MILESTONES_WEB_PORT=str(port),
                      MILESTONES_LOG_LEVEL="info")
               for (names, name), port in zip(members, ports, strict=True)]
    for w in workers:
        w.start()
    try:
        async def all_ready():
            answers = [await probe(port, "/readyz") for port in ports]
            return answers if all(a and a[0] == 200 for a in answers) else None
        answers = await wait_for(all_ready, 180, interval=0.5, what="every worker ready")
        assert all(body["agents_not_running"] == [] for _, body in answers)
        for names in stacks:
            account = f"acct-{names.prefix}"
            await publish(kafka_bootstrap, names.crm, [CrmChange(
                change_id="c1", account_id=account, source="salesforce", occurred_at=NOW,
                changes=[FieldChange(field="implementation_signed_off_at", value=NOW.date().isoformat())])])
            await publish(kafka_bootstrap, names.telemetry, [TelemetryEvent(
                event_id="e1", account_id=account, metric="emails_sent", value=600.0,
                occurred_at=NOW - timedelta(minutes=1), source="platform.mailer")])
        for names in stacks:  # the CRM and the usage agents of every stack work
            got = await wait_for(lambda names=names: _kinds_if(kafka_bootstrap, names), 90, interval=0.5,
                                 what=f"both milestones of {names.prefix}")
            assert got == {"implementation_signed_off", "usage_threshold"}
        for port in ports:
            status, body = await probe(port, "/healthz")
            assert status == 200 and body["crash_looping_agents"] == {}, body
        for names in stacks:  # the drafter's changelog exists with the inputs' partitions (it took the milestones)
            assert await read_topic(kafka_bootstrap, f"{names.prefix}detector-celebrations-changelog", idle_ms=300)
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0, 0, 0]
    for w in workers:
        assert "PartitionsMismatch" not in w.log.read_text(), w.log


async def _kinds_if(bootstrap, names):
    kinds = {m.kind for m in await milestones(bootstrap, names.milestones)}
    return kinds if len(kinds) == 2 else None


async def test_a_changelog_with_other_partitions_than_the_inputs_stops_start_up_with_one_line(
        kafka_bootstrap, topics, tmp_path):
    """The lasting form of the race: Faust would crash the agents of that table at every restart."""
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    await ensure_topics(kafka_bootstrap, [f"{topics.prefix}detector-profiles-changelog"], partitions=1)
    w = Worker(kafka_bootstrap, topics.prefix, tmp_path).start()
    assert w.process.wait(60) == 2
    lines = w.log.read_text().strip().splitlines()
    assert lines == [f"milestones: configuration error: topic {topics.prefix}detector-profiles-changelog has 1 "
                     "partitions where 3 are needed (MILESTONES_PARTITIONS; inputs and table changelogs must match)"]


async def test_an_agent_that_keeps_crashing_is_not_ready_and_not_healthy(kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    port = free_port()
    w = Worker(kafka_bootstrap, topics.prefix, tmp_path, faults="loop=crm", MILESTONES_WEB_PORT=str(port),
               MILESTONES_STALL_SECONDS="60").start()
    try:
        await wait_for(lambda: _status_is(port, "/readyz", 200), 90, interval=0.3, what="the worker ready")
        changes = [CrmChange(change_id=f"c{i}", account_id=f"acct{i}", source="salesforce", occurred_at=NOW,
                             changes=[FieldChange(field="name", value="Acme")]) for i in range(6)]
        await publish(kafka_bootstrap, topics.crm, changes)
        body = await wait_for(lambda: _status_is(port, "/healthz", 503), 90, interval=0.3, what="healthz 503")
        assert "crm" in body["crash_looping_agents"]
        status, ready = await probe(port, "/readyz")
        assert status == 503 and ready["agents_not_running"] == ["crm"], ready
    finally:
        w.stop()


async def _status_is(port: int, path: str, status: int):
    answer = await probe(port, path)
    return answer[1] if answer and answer[0] == status else None


async def test_the_event_id_changelog_follows_the_dedupe_horizon_in_force(kafka_bootstrap, topics):
    """A longer horizon with the old retention would let ids expire that a duplicate could still match."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from milestone_stream.topics import TopicSpec, ensure

    name = f"{topics.prefix}detector-event_ids-changelog"

    def spec(days: int) -> TopicSpec:
        return TopicSpec(name, 3, (("cleanup.policy", "compact,delete"), ("retention.ms", str(days * 86_400_000))))

    await ensure(kafka_bootstrap, [spec(31)])
    await ensure(kafka_bootstrap, [spec(91)])  # the rules now keep 90 days
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                                                  {"retention.ms": None, "cleanup.policy": None})])
        assert {e[0]: e[1] for e in response.resources[0][4]} == {"retention.ms": str(91 * 86_400_000),
                                                                 "cleanup.policy": "compact,delete"}
    finally:
        await admin.close()
