"""The product's topics, with explicit partition counts, created through the admin API.

Every topic is keyed by account_id (or a stable id derived from it), so one account's events stay
on one partition and one worker owns its state.
"""
from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

# logical name → (Kafka topic name, schema of its values)
TOPICS = {
    "telemetry": ("telemetry.events", "telemetry_event"),
    "crm": ("crm.changes", "crm_change"),
    "milestones": ("milestones", "milestone"),
    "approval_requests": ("approvals.requests", "approval_request"),
    "approval_decisions": ("approvals.decisions", "approval_decision"),
    "email_outcomes": ("emails.outcomes", "email_outcome"),
    "deadletter": ("deadletter", "dead_letter"),
    # Salesforce CDC gaps: CRM records to re-read (key: entity name)
    "resync": ("crm.resync", "resync_needed"),
    # which dead letters were replayed (key: the dead letter's partition:offset, value: when)
    "deadletter_replays": ("deadletter.replays", "replay marker, raw text"),
    # internal: anniversary ticks from the timer to the CRM agent, co-partitioned with crm.changes
    "clock": ("milestones.clock", "crm_change"),
    # internal: "this account's held milestones may be due" ticks from the drafter's timer to its agent
    "drafter_clock": ("milestones.drafter-clock", "account id, raw bytes"),
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


async def ensure_topics(bootstrap_servers: str, names: list[str], partitions: int,
                        replication_factor: int = 1) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(n, num_partitions=partitions, replication_factor=replication_factor) for n in missing])
            except TopicAlreadyExistsError:
                pass  # another worker created them first
        return missing
    finally:
        await admin.close()
