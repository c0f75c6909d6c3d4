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
import json
import logging
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import faust

from milestone_stream.agents import crm, usage
from milestone_stream.agents.anniversary import next_due
from milestone_stream import faust_guards, observability
from milestone_stream.adapters import AdaptersConfig, install_adapters
from milestone_stream.clock import Clock
from milestone_stream.deadletter import DeadLetters, Unprocessable, decode_or_park
from milestone_stream.drafter import install_drafter
from milestone_stream.models import CrmChange, FieldChange, Milestone, TelemetryEvent
from milestone_stream.rules import Rules
from milestone_stream.settings import Settings
from milestone_stream.topics import TopicNames, TopicSpec

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


class BatchIds:
    """The event-id table as one batch sees it (`usage.SeenIds`): ids remembered in the batch are seen at
    once and written after the batch's milestones are acknowledged, each to its event's partition."""

    def __init__(self, table) -> None:
        self.table = table
        self.event = None  # the event being applied: its partition is the id's changelog partition
        self._pending: dict[bytes, tuple[int, object]] = {}

    def first_offset(self, key: bytes) -> int | None:
        if key in self._pending:
            return self._pending[key][0]
        stored = self.table.get(key)
        return int(stored) if stored is not None else None

    def remember(self, key: bytes, offset: int) -> None:
        self._pending[key] = (offset, self.event)

    def forget(self, key: bytes, offset: int) -> None:
        """Undo `remember` for an event that raised (it is parked, and counts when replayed)."""
        if self._pending.get(key, (None,))[0] == offset:
            del self._pending[key]

    def write(self, current) -> None:
        for key, (offset, event) in self._pending.items():
            if current(event):
                with faust_guards.as_current(event):
                    self.table[key] = str(offset).encode()


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
        producer_max_request_size=settings.max_message_bytes,
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
    # event id key → offset that first carried it (agents/usage.py); the broker drops entries once no
    # event they could match is accepted any more (horizon + future skew + a day)
    retention = timedelta(days=rules.dedupe.horizon_days + 1, seconds=rules.max_future_skew_seconds)
    event_ids = app.Table("event_ids", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                          extra_topic_configs={"cleanup.policy": "compact,delete",
                                               "retention.ms": str(int(retention.total_seconds() * 1000))})

    async def produce_dead_letter(topic: str, key: bytes | None, value: bytes):
        return await (await deadletter_topic.send(key=key, value=value))  # acknowledged before the input is

    dead_letters = DeadLetters(names.deadletter, produce_dead_letter, settings.max_message_bytes)
    row_limit = settings.max_message_bytes - 4096  # a changelog record: the row and its key

    def check_fits(row: dict, what: str) -> None:
        """Refuse a change that would make a row too large for its changelog (the broker would refuse it later)."""
        size = len(json.dumps(row, separators=(",", ":")))
        if size > row_limit:
            raise Unprocessable("row_too_large", f"the {what} would be {size:,} bytes, over the "
                                                 f"{row_limit:,} a changelog record may hold; nothing was applied")

    async def park(agent: str, message, exc: Exception):
        return await dead_letters.failed(agent, message, exc)
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
                                            settings.batch_seconds, park)

    async def count_usage(events) -> None:
        """A batch: each account's row copied once, its milestones acknowledged together, then one write
        per row and one per new event id. An event whose rules raise is parked and its account's row
        taken again from the table with the batch's other events re-applied, so the rest still counts."""
        rows, applied, fired, now = {}, {}, [], clock.now()
        taken: dict[str, list] = {}
        seen = BatchIds(event_ids)
        for event in events:
            record = await decode(event, TelemetryEvent, "usage", check=reject_usage)
            if record is None:
                continue
            account, offset = record.account_id, event.message.offset
            if account not in rows:  # a copy: Faust serializes changelog values late (see usage.copy_row)
                rows[account] = usage.copy_row(usage_table.get(account))
            seen.event = event
            try:
                status, new = usage.apply_event(rows[account], record, offset, rules, seen, now)
            except Exception as exc:
                seen.forget(usage.id_key(account, record.event_id), offset)
                rows[account] = usage.copy_row(usage_table.get(account))
                for earlier, at, by in taken.get(account, []):
                    seen.event = by
                    usage.apply_event(rows[account], earlier, at, rules, seen, now)
                await park("usage", event.message, exc)
                usage.mark_parked(rows[account], offset)  # never counted: its id stays free for the replay
                applied[account] = event
                continue
            taken.setdefault(account, []).append((record, offset, event))
            if status == usage.BEYOND_HORIZON:
                msg = event.message
                await dead_letters.send(stage="usage", reason=status, topic=msg.topic, partition=msg.partition,
                                        offset=msg.offset, key=msg.key, value=msg.value,
                                        error=f"occurred_at {record.occurred_at.isoformat()} is more than "
                                              f"{rules.dedupe.horizon_days:g} days before now "
                                              f"({now.isoformat()}): a duplicate could no longer be recognised")
            fired += new
            # every status writes the row: a duplicate or a parked event advances its offset, and an
            # event read again re-writes a row a crash may have kept only locally (RocksDB)
            applied[account] = event
        await emit(fired, "usage")
        # a write only for events still current: else a rebalance began during the acks and the input
        # is read again by the partition's next owner
        seen.write(lambda e: faust_guards.current(app, e.message))
        for account, event in applied.items():
            if faust_guards.current(app, event.message):
                with faust_guards.as_current(event):  # the changelog partition is the account's input partition
                    usage_table[account] = rows[account]

    @app.agent(crm_topic, name="crm")
    async def crm_agent(stream):
        await faust_guards.each_in_order(app, stream, "crm", track_crm, park)

    async def track_crm(event) -> None:
        record = await decode(event, CrmChange, "crm")
        if record is None:
            return
        tick = next((fc.value for fc in record.changes if fc.field == crm.ANNIVERSARY_DUE), None)
        if tick is not None and event.message.topic != names.clock:
            raise Unprocessable("reserved_field", f"{crm.ANNIVERSARY_DUE} is set by the worker's own clock only; "
                                                  "a CRM change may not carry it")
        row = copy.deepcopy(profiles.get(record.account_id)) or crm.new_row()
        # a tick carries its own date, so a replay decides exactly as the first run did
        today = date.fromisoformat(str(tick)) if tick else clock.now().astimezone(zone).date()
        origin = (event.message.topic, event.message.offset)
        fired = crm.apply_change(row, record, origin, rules, today)
        check_fits(row, f"profile of account {record.account_id!r}")
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
                    usage_table=usage_table, profiles=profiles, dead_letters=dead_letters, decode=decode,
                    park=park, check_fits=check_fits)
    install_adapters(app, config=adapters, names=names, raw=raw, park=park)

    return app


def required_topics(app: faust.App, settings: Settings) -> list[TopicSpec]:
    """Every topic the worker's agents and tables use, with the partitions they must have: the inputs
    (co-partitioned), each table's changelog (compacted, with the table's extra configs) and Faust's
    leader topic. `topics.ensure` creates and checks them before any agent starts."""
    names = TopicNames(settings.topic_prefix)
    inputs = [names.telemetry, names.crm, names.clock, names.milestones, names.drafter_clock]
    specs = [TopicSpec(n, settings.partitions) for n in inputs]
    for table in app.tables.values():
        configs = {"cleanup.policy": "compact", **{k: str(v) for k, v in table.extra_topic_configs.items()}}
        specs.append(TopicSpec(table.changelog_topic.get_topic_name(), table.partitions or settings.partitions,
                               tuple(sorted(configs.items()))))
    specs.append(TopicSpec(f"{app.conf.id}-__assignor-__leader", 1))
    return specs
