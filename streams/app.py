"""The app factory: one Faust app, its channels and tables, and every stage's agents registered on it.

Why a factory rather than a module-global app: tests and the benchmark build workers with their own
settings, rules and clock. The flow reads top to bottom in `agents/`: ingest (Segment, Salesforce
CDC) → detector (usage, CRM, anniversaries) → drafter (policy, context, template, model, guard),
then `sinks/` (the approval UI and the sender, in their own processes).
"""
from __future__ import annotations

import faust

from milestone_stream import faust_compat, observability, tables
from milestone_stream.agents.detector.agent import DetectorAgents
from milestone_stream.agents.drafter.agent import DrafterAgents
from milestone_stream.agents.ingest.agent import IngestAgents
from milestone_stream.agents.ingest.config import AdaptersConfig
from milestone_stream.agents.signals.agent import SignalAgents
from milestone_stream.clock import Clock
from milestone_stream.deadletter import DeadLetters
from milestone_stream.rules import Rules
from milestone_stream.runtime import Channels, Runtime
from milestone_stream.settings import Settings
from milestone_stream.topics import TopicNames, TopicSpec

MAX_POLL_RECORDS = 5_000


def build_app(settings: Settings, rules: Rules | None = None, clock: Clock | None = None,
              adapters: AdaptersConfig | None = None) -> faust.App:
    rules = rules or Rules.load(settings.rules_file)
    adapters = adapters or AdaptersConfig.load(settings.adapters_file, rules)
    datadir = settings.data_dir / "faust" / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        store=settings.store,
        processing_guarantee=settings.guarantee,
        broker_commit_interval=settings.commit_interval,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_bind=settings.web_bind,
        datadir=str(datadir),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=settings.producer_linger,
        producer_max_request_size=settings.max_message_bytes,
        # records per fetch (Faust's default: no bound): the usage agent takes a whole fetch at a time
        # (faust_compat/drain.py), and an unbounded one held tens of thousands of messages in memory
        # while the other topics' messages waited behind it
        broker_max_poll_records=MAX_POLL_RECORDS,
        table_standby_replicas=settings.standby_replicas,
    )
    faust_compat.install(app, table_bytes=settings.table_bytes)
    if settings.web_port > 0:
        observability.install(app, settings.stall_seconds)
    names = TopicNames(settings.topic_prefix)
    channels = Channels.declare(app, names)

    async def produce_dead_letter(topic: str, key: bytes | None, value: bytes) -> object:
        return await (await channels.deadletter.send(key=key, value=value))  # acknowledged before the input is

    rt = Runtime(app=app, settings=settings, rules=rules, clock=clock or Clock(), names=names, channels=channels,
                 tables=tables.declare(app, settings, rules),
                 dead_letters=DeadLetters(names.deadletter, produce_dead_letter, settings.max_message_bytes))
    IngestAgents(rt, adapters).install()
    DetectorAgents(rt).install()
    DrafterAgents(rt).install()
    if rules.signals is not None:  # risk signals (docs/risk-signals.md): off unless the rules have a section
        SignalAgents(rt, rules.signals).install()
    return app


def required_topics(app: faust.App, settings: Settings) -> list[TopicSpec]:
    """Every topic the worker's agents and tables use, with the partitions they must have: the inputs
    (co-partitioned), each table's changelog (compacted, with the table's extra configs) and Faust's
    leader topic. `topics.ensure` creates and checks them before any agent starts."""
    names = TopicNames(settings.topic_prefix)
    inputs = [names.telemetry, names.crm, names.clock, names.milestones, names.drafter_clock, names.risks,
              names.risk_clock]
    if "sequences" in app.tables:  # the anniversary sequence's agents read these (agents/drafter/sequence_agent.py)
        inputs += [names.sequence, names.approval_decisions]
    specs = [TopicSpec(n, settings.partitions) for n in inputs]
    for table in app.tables.values():
        configs = {"cleanup.policy": "compact", **{k: str(v) for k, v in table.extra_topic_configs.items()}}
        specs.append(TopicSpec(table.changelog_topic.get_topic_name(), table.partitions or settings.partitions,
                               tuple(sorted(configs.items()))))
    specs.append(TopicSpec(f"{app.conf.id}-__assignor-__leader", 1))
    return specs
