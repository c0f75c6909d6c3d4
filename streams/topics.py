"""The product's topics, with explicit partition counts, created through the admin API.

Every topic is keyed by account_id (or a stable id derived from it), so one account's events stay
on one partition and one worker owns its state.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from milestone_stream.settings import ConfigError

# logical name → (Kafka topic name, schema of its values)
TOPICS = {
    "telemetry": ("telemetry.events", "telemetry_event"),
    "crm": ("crm.changes", "crm_change"),
    "milestones": ("milestones", "milestone"),
    "approval_requests": ("approvals.requests", "approval_request"),
    "approval_decisions": ("approvals.decisions", "approval_decision"),
    "email_outcomes": ("emails.outcomes", "email_outcome"),
    # each sent email recorded in a CRM (Gainsight CS Timeline): the outbound stage's state, key approval_id
    "activity_outcomes": ("activities.outcomes", "activity_outcome"),
    # risk episodes opening and clearing (the signals agent), keyed by account_id
    "risks": ("risks", "risk_signal"),
    "deadletter": ("deadletter", "dead_letter"),
    # Salesforce CDC gaps: CRM records to re-read (key: entity name)
    "resync": ("crm.resync", "resync_needed"),
    # which dead letters were replayed (key: the dead letter's partition:offset, value: when)
    "deadletter_replays": ("deadletter.replays", "replay marker, raw text"),
    # internal: anniversary ticks from the timer to the CRM agent, co-partitioned with crm.changes
    "clock": ("milestones.clock", "crm_change"),
    # internal: "this account's held milestones may be due" ticks from the drafter's timer to its agent
    "drafter_clock": ("milestones.drafter-clock", "account id, raw bytes"),
    # internal: "evaluate this account's risk signals at this instant" ticks from the signals timer to its agent
    "risk_clock": ("milestones.risk-clock", "account id; value: JSON {at: ISO instant, d: the day totals seen}"),
    # internal: the anniversary sequence's inputs, keyed by account: b"S" + start JSON (the drafter), b"D" +
    # approval decision Avro (routed from approvals.decisions, keyed by approval id), b"T" (its timer's ticks)
    "sequence": ("milestones.sequence", "tagged raw bytes"),
}


@dataclass(frozen=True)
class TopicNames:
    """Topic names under an optional prefix (tests and multi-tenant clusters use one)."""

    prefix: str = ""

    def __getattr__(self, logical: str) -> str:
        try:
            return self.prefix + TOPICS[logical][0]
        except KeyError:
            raise AttributeError(logical) from None

    def all(self) -> list[str]:
        return [self.prefix + name for name, _ in TOPICS.values()]


@dataclass(frozen=True)
class TopicSpec:
    """A topic a process needs before it starts: its partitions are checked, its configs used to create it."""

    name: str
    partitions: int
    configs: tuple[tuple[str, str], ...] = ()


async def ensure_topics(bootstrap_servers: str, names: list[str], partitions: int,
                        replication_factor: int = 1) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    return await ensure(bootstrap_servers, [TopicSpec(n, partitions) for n in names], replication_factor,
                        check=False)


async def ensure(bootstrap_servers: str, specs: list[TopicSpec], replication_factor: int = 1,
                 check: bool = True) -> list[str]:
    """Create the topics of `specs` that do not exist yet (returns their names); with `check`, stop with
    one line when one exists with other partitions than the spec's.

    Why before any agent starts: Faust declares changelog topics itself as agents start, and workers
    starting together on a new cluster raced there (one saw a changelog with 0 partitions and its
    agents crashed at every restart); a partition count that differs from the inputs' does the same."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        for spec in missing:  # one request each: a topic another process created first is not an error
            try:
                await admin.create_topics([NewTopic(spec.name, num_partitions=spec.partitions,
                                                    replication_factor=replication_factor,
                                                    topic_configs=dict(spec.configs))])
            except TopicAlreadyExistsError:
                pass
        if check:
            await _check_partitions(admin, specs)
            await _align_configs(admin, [s for s in specs if s.configs and s not in missing])
        return [s.name for s in missing]
    finally:
        await admin.close()


async def _align_configs(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    """Existing topics take the configs of their spec: the event-id changelog's retention follows the
    dedupe horizon of the rules in force (a longer horizon with the old retention would let ids expire
    that a duplicate could still match)."""
    for spec in specs:
        wanted = dict(spec.configs)
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name,
                                                                  dict.fromkeys(wanted))])
        current = {entry[0]: entry[1] for entry in response.resources[0][4]}
        if any(current.get(k) != v for k, v in wanted.items()):
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, wanted)])


async def _check_partitions(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    wanted = {s.name: s.partitions for s in specs}
    for _ in range(50):  # metadata of a topic just created can take a moment to show its partitions
        described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(list(wanted))}
        if all(described.get(n) for n in wanted):
            break
        await asyncio.sleep(0.1)
    wrong = {n: described.get(n, 0) for n, p in wanted.items() if described.get(n, 0) != p}
    if wrong:
        name, got = next(iter(sorted(wrong.items())))
        raise ConfigError(f"topic {name} has {got} partitions where {wanted[name]} are needed "
                          f"(MILESTONES_PARTITIONS; inputs and table changelogs must match)"
                          + (f", and {len(wrong) - 1} more" if len(wrong) > 1 else ""))
