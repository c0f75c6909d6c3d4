"""The Faust worker: detector agents over changelog-backed per-account tables.

Why this shape: one consumer group (Faust) owns partitions, tables and their changelogs; the
rules themselves are plain functions in `milestone_stream.agents`. "Fires once" rests on the
account row, not on Kafka transactions: each row records the last input offset it applied and
what it fired, so a replay after a crash regenerates the same milestone ids and counts nothing
twice; a milestone is acknowledged by the broker before the row that records it is written.
"""
from __future__ import annotations

import copy
import heapq
import logging
from datetime import date
from zoneinfo import ZoneInfo

import faust

from milestone_stream.agents import crm, usage
from milestone_stream.agents.anniversary import next_due
from milestone_stream import faust_guards, observability
from milestone_stream.adapters import AdaptersConfig, install_adapters
from milestone_stream.clock import Clock
from milestone_stream.deadletter import DeadLetters, decode_or_park
from milestone_stream.drafter import install_drafter
from milestone_stream.models import CrmChange, FieldChange, Milestone, TelemetryEvent
from milestone_stream.rules import Rules
from milestone_stream.settings import Settings
from milestone_stream.topics import TopicNames

log = logging.getLogger(__name__)


class AnniversaryIndex:
    """Accounts of this worker by their next anniversary date: the timer pops only those due."""

    def __init__(self) -> None:
        self._heap: list[tuple[date, str]] = []
        self._next: dict[str, date] = {}
        self.stale = True

    def schedule(self, account_id: str, row: dict, years: list[int]) -> None:
        start = crm.contract_start(row)
        due = next_due(start, years, set(row["a"])) if start else None
        if due is None:
            self._next.pop(account_id, None)
            return
        if self._next.get(account_id) != due[0]:
            self._next[account_id] = due[0]
            heapq.heappush(self._heap, (due[0], account_id))

    def pop_due(self, today: date) -> list[str]:
        accounts = []
        while self._heap and self._heap[0][0] <= today:
            when, account = heapq.heappop(self._heap)
            if self._next.get(account) == when:  # skip entries superseded by a later schedule
                del self._next[account]
                accounts.append(account)
        return accounts

    def clear(self) -> None:
        self._heap.clear()
        self._next.clear()
        self.stale = True


def build_app(settings: Settings, rules: Rules | None = None, clock: Clock | None = None,
              adapters: AdaptersConfig | None = None) -> faust.App:
    rules = rules or Rules.load(settings.rules_file)
    adapters = adapters or AdaptersConfig.load(settings.adapters_file, rules)
    clock = clock or Clock()
    names = TopicNames(settings.topic_prefix)
    zone = ZoneInfo(rules.timezone)
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
    )
    faust_guards.install(app)
    if settings.web_port > 0:
        observability.install(app, settings.stall_seconds)
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    telemetry_topic = app.topic(names.telemetry, **raw)
    crm_topic = app.topic(names.crm, names.clock, **raw)  # CRM changes and anniversary ticks
    milestones_topic = app.topic(names.milestones, **raw)
    deadletter_topic = app.topic(names.deadletter, **raw)
    clock_topic = app.topic(names.clock, **raw)

    # keys are account ids; values are JSON rows (see agents/usage.py and agents/crm.py)
    usage_table = app.Table("usage", key_type=str, partitions=settings.partitions)
    profiles = app.Table("profiles", key_type=str, partitions=settings.partitions)

    async def produce_dead_letter(topic: str, key: bytes | None, value: bytes):
        return await deadletter_topic.send(key=key, value=value)

    dead_letters = DeadLetters(names.deadletter, produce_dead_letter)
    anniversaries = AnniversaryIndex()

    async def emit(milestones: list[Milestone], agent: str) -> None:
        """Send, then wait for every ack, so no row records a milestone the log lacks."""
        acks = [await milestones_topic.send(key=m.account_id.encode(), value=m.to_avro()) for m in milestones]
        for m, ack in zip(milestones, acks):
            await ack
            observability.FIRED.labels(m.kind).inc()
            observability.EVENTS_OUT.labels(agent).inc()
            log.info("milestone fired", extra={"agent": agent, "account_id": m.account_id, "milestone_id": m.milestone_id,
                                               "kind": m.kind, "title": m.title})

    async def decode(event, record_type, stage: str, check=lambda record: None):
        """The valid record, or None after dead-lettering it (undecodable, invalid, wrong key, rejected)."""
        msg = event.message
        where = dict(key=msg.key, value=msg.value, topic=msg.topic, partition=msg.partition, offset=msg.offset)
        record = await decode_or_park(record_type, stage=stage, dead_letters=dead_letters, **where)
        if record is None:
            return None
        problem = (("key_mismatch", f"record key {msg.key!r} is not its account_id {record.account_id!r}")
                   if msg.key != record.account_id.encode() else check(record))
        if problem:
            await dead_letters.send(stage=stage, reason=problem[0], error=problem[1], **where)
            return None
        return record

    def reject_usage(record: TelemetryEvent):
        return usage.rejection(record, rules, clock.now())

    @app.agent(telemetry_topic, name="usage")
    async def usage_agent(stream):
        await faust_guards.batches_in_order(app, stream, "usage", count_usage, settings.batch_size,
                                            settings.batch_seconds)

    async def count_usage(events) -> None:
        """A batch: each account's row copied once, its milestones acknowledged together, then one write per row."""
        rows, applied, fired = {}, {}, []
        for event in events:
            record = await decode(event, TelemetryEvent, "usage", check=reject_usage)
            if record is None:
                continue
            account = record.account_id
            if account not in rows:  # a copy: Faust serializes changelog values late (see usage.copy_row)
                rows[account] = usage.copy_row(usage_table.get(account))
            status, new = usage.apply_event(rows[account], record, event.message.offset, rules)
            fired += new
            if status != usage.REPLAYED:  # a duplicate still advances the row's offset
                applied[account] = event
        await emit(fired, "usage")
        for account, event in applied.items():
            if faust_guards.current(app, event.message):  # else a rebalance began during the acks: re-read later
                with faust_guards.as_current(event):  # the changelog partition is the account's input partition
                    usage_table[account] = rows[account]

    @app.agent(crm_topic, name="crm")
    async def crm_agent(stream):
        await faust_guards.each_in_order(app, stream, "crm", track_crm)

    async def track_crm(event) -> None:
        record = await decode(event, CrmChange, "crm")
        if record is None:
            return
        row = copy.deepcopy(profiles.get(record.account_id)) or crm.new_row()
        # a tick carries its own date, so a replay decides exactly as the first run did
        tick = next((fc.value for fc in record.changes if fc.field == crm.ANNIVERSARY_DUE), None)
        today = date.fromisoformat(tick) if tick else clock.now().astimezone(zone).date()
        origin = (event.message.topic, event.message.offset)
        fired = crm.apply_change(row, record, origin, rules, today)
        await emit(fired, "crm")
        profiles[record.account_id] = row
        anniversaries.schedule(record.account_id, row, rules.anniversary_years)

    @app.timer(interval=settings.anniversary_interval)
    async def anniversary_clock():
        if not faust_guards.settled(app):
            return
        if anniversaries.stale:
            anniversaries.stale = False
            for account, row in list(profiles.items()):
                anniversaries.schedule(account, row, rules.anniversary_years)
        today = clock.now().astimezone(zone).date()
        for account in anniversaries.pop_due(today):
            tick = CrmChange(change_id=f"clock:{account}:{today.isoformat()}", account_id=account,
                             changes=[FieldChange(field=crm.ANNIVERSARY_DUE, value=today.isoformat())],
                             occurred_at=clock.now(), source="milestone-stream.clock")
            await clock_topic.send(key=account.encode(), value=tick.to_avro())

    @app.on_rebalance_complete.connect
    async def _reindex(app, **kwargs):
        anniversaries.clear()

    observability.PROGRESS.register("usage", {names.telemetry})
    observability.PROGRESS.register("crm", {names.crm, names.clock})
    install_drafter(app, settings=settings, rules=rules, clock=clock, names=names, raw=raw,
                    usage_table=usage_table, profiles=profiles, dead_letters=dead_letters, decode=decode)
    install_adapters(app, config=adapters, names=names, raw=raw, dead_letters=dead_letters)

    return app
