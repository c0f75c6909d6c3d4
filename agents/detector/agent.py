"""The detector's agents: telemetry into the usage rows, CRM changes into the profile rows, and the
anniversary timer — each firing milestones exactly once.

Why this shape: one consumer group (Faust) owns partitions, tables and their changelogs; the rules
themselves are plain functions beside this module (usage.py, crm.py, anniversary.py). "Fires once"
rests on the account row, not on Kafka transactions: each row records the last input offset it
applied and what it fired, so a replay after a crash regenerates the same milestone ids and counts
nothing twice; a milestone is acknowledged by the broker before the row that records it is written.
Next: milestones go to the drafter (agents/drafter/agent.py).
"""
from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from faust.types import AppT, TableT
from mode import BaseSignalT

from milestone_stream import faust_compat, observability
from milestone_stream.agents.detector import crm, usage
from milestone_stream.agents.detector.anniversary import next_due
from milestone_stream.deadletter import Unprocessable
from milestone_stream.runtime import Runtime
from milestone_stream.schedule import DueIndex
from milestone_stream.schemas.records import CrmChange, FieldChange, TelemetryEvent


class BatchIds:
    """The event-id table as one batch sees it (`usage.SeenIds`): ids remembered in the batch are seen at
    once, and written (`entries`) after the batch's milestones are acknowledged, each to its event's partition."""

    def __init__(self, table: TableT[bytes, bytes]) -> None:
        self.table = table
        self.event: Any = None  # the event being applied: its partition is the id's changelog partition
        self._pending: dict[bytes, tuple[int, Any]] = {}

    def first_offset(self, key: bytes) -> int | None:
        if key in self._pending:
            return self._pending[key][0]
        stored = faust_compat.read(self.table, key, self.event)
        return int(stored) if stored is not None else None

    def remember(self, key: bytes, offset: int) -> None:
        self._pending[key] = (offset, self.event)

    def forget(self, key: bytes, offset: int) -> None:
        """Undo `remember` for an event that raised (it is parked, and counts when replayed)."""
        if self._pending.get(key, (None,))[0] == offset:
            del self._pending[key]

    def entries(self, current: Any) -> list[tuple[bytes, bytes, Any]]:
        """The ids to write: those of events still `current`, each with the offset that first carried it."""
        return [(key, str(offset).encode(), event) for key, (offset, event) in self._pending.items() if current(event)]


class DetectorAgents:
    """The usage and CRM agents and the anniversary timer of one worker."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.zone = ZoneInfo(rt.rules.timezone)
        self.anniversaries: DueIndex[date] = DueIndex()

    def install(self) -> None:
        rt, app = self.rt, self.rt.app
        app.agent(rt.channels.telemetry, name="usage")(self.usage_agent)
        if rt.settings.batch_consume and rt.settings.guarantee == "at_least_once":
            # the agent above keeps the topic subscribed and co-partitioned; its messages come here instead
            faust_compat.deliver_batches(app, rt.names.telemetry, "usage", self.count_usage,
                                         rt.settings.batch_size, rt.park)
        app.agent(rt.channels.crm_input, name="crm")(self.crm_agent)
        faust_compat.timer(app, rt.settings.anniversary_interval)(self.anniversary_clock)
        app.on_rebalance_complete.connect(self.reindex)
        observability.PROGRESS.register("usage", {rt.names.telemetry})
        observability.PROGRESS.register("crm", {rt.names.crm, rt.names.clock})

    # -- usage --------------------------------------------------------------------------------

    async def usage_agent(self, stream: Any) -> None:
        s = self.rt.settings
        await faust_compat.batches_in_order(self.rt.app, stream, "usage", self.count_usage, s.batch_size,
                                            s.batch_seconds, self.rt.park)

    def reject_usage(self, record: TelemetryEvent) -> tuple[str, str] | None:
        return usage.rejection(record, self.rt.rules, self.rt.clock.now())

    async def count_usage(self, events: list[Any]) -> None:
        """A batch: each account's row copied once, its milestones acknowledged together, then one write
        per row and one per new event id. An event whose rules raise is parked and its account's row
        taken again from the table with the batch's other events re-applied, so the rest still counts."""
        rt, rules, table = self.rt, self.rt.rules, self.rt.tables.usage
        rows: dict[str, usage.UsageRow] = {}
        applied: dict[str, Any] = {}
        taken: dict[str, list[tuple[TelemetryEvent, int, Any]]] = {}
        fired, now = [], rt.clock.now()
        seen = BatchIds(rt.tables.event_ids)
        for event in events:
            record = await rt.decode(event, TelemetryEvent, "usage", check=self.reject_usage)
            if record is None:
                continue
            account, offset = record.account_id, event.message.offset
            if account not in rows:
                rows[account] = self.usage_row(account, event)
            seen.event = event
            try:
                status, new = usage.apply_event(rows[account], record, offset, rules, seen, now)
            except Exception as exc:
                seen.forget(usage.id_key(account, record.event_id), offset)
                rows[account] = self.usage_row(account, event)
                for earlier, at, by in taken.get(account, []):
                    seen.event = by
                    usage.apply_event(rows[account], earlier, at, rules, seen, now)
                await rt.park("usage", event.message, exc)
                rows[account].mark_parked(offset)  # never counted: its id stays free for the replay
                applied[account] = event
                continue
            taken.setdefault(account, []).append((record, offset, event))
            if status == usage.BEYOND_HORIZON:
                msg = event.message
                await rt.dead_letters.send(stage="usage", reason=status, topic=msg.topic, partition=msg.partition,
                                           offset=msg.offset, key=msg.key, value=msg.value,
                                           error=f"occurred_at {record.occurred_at.isoformat()} is more than "
                                                 f"{rules.dedupe.horizon_days:g} days before now "
                                                 f"({now.isoformat()}): a duplicate could no longer be recognised")
            fired += new
            # every status writes the row: a duplicate or a parked event advances its offset, and an
            # event read again re-writes a row a crash may have kept only locally (RocksDB)
            applied[account] = event
        await rt.emit(fired, "usage")
        # a write only for events still current: else a rebalance began during the acks and the input
        # is read again by the partition's next owner; each changelog partition is the input's partition
        still = lambda e: faust_compat.current(rt.app, e.message)  # noqa: E731
        await faust_compat.write_many(rt.app, rt.tables.event_ids, seen.entries(still))
        await faust_compat.write_many(rt.app, table, [(account, rows[account].to_stored(), event)
                                                      for account, event in applied.items() if still(event)])

    def usage_row(self, account: str, event: Any) -> usage.UsageRow:
        """The account's row to change: as read when the read is the caller's own, else a copy (the memory
        store hands out the stored containers themselves)."""
        table = self.rt.tables.usage
        row = usage.UsageRow.from_stored(faust_compat.read(table, account, event))
        return row if faust_compat.reads_copies(table) else row.copy()

    # -- CRM and anniversaries ----------------------------------------------------------------

    async def crm_agent(self, stream: Any) -> None:
        await faust_compat.each_in_order(self.rt.app, stream, "crm", self.track_crm, self.rt.park)

    async def track_crm(self, event: Any) -> None:
        rt = self.rt
        record = await rt.decode(event, CrmChange, "crm")
        if record is None:
            return
        tick = next((fc.value for fc in record.changes if fc.field == crm.ANNIVERSARY_DUE), None)
        if tick is not None and event.message.topic != rt.names.clock:
            raise Unprocessable("reserved_field", f"{crm.ANNIVERSARY_DUE} is set by the worker's own clock only; "
                                                  "a CRM change may not carry it")
        row = crm.ProfileRow.from_stored(rt.tables.profiles.get(record.account_id)).copy()
        # a tick carries its own date, so a replay decides exactly as the first run did
        today = date.fromisoformat(str(tick)) if tick else rt.clock.now().astimezone(self.zone).date()
        origin = (event.message.topic, event.message.offset)
        fired = crm.apply_change(row, record, origin, rt.rules, today)
        stored = row.to_stored()
        rt.check_fits(stored, f"profile of account {record.account_id!r}")
        await rt.emit(fired, "crm")
        rt.tables.profiles[record.account_id] = stored
        self.anniversaries.schedule(record.account_id, self.next_anniversary(row))

    def next_anniversary(self, row: crm.ProfileRow) -> date | None:
        start = row.contract_start()
        due = next_due(start, self.rt.rules.anniversary_years, set(row.years_done)) if start else None
        return due[0] if due else None

    async def anniversary_clock(self) -> None:
        """Ticks to the CRM agent for the accounts whose anniversary is due (only a stream writes a table)."""
        rt = self.rt
        today = rt.clock.now().astimezone(self.zone).date()
        due = self.anniversaries.due_now(rt.tables.profiles.items,
                                         lambda stored: self.next_anniversary(crm.ProfileRow.from_stored(stored)),
                                         today)
        for account in due:
            tick = CrmChange(change_id=f"clock:{account}:{today.isoformat()}", account_id=account,
                             changes=[FieldChange(field=crm.ANNIVERSARY_DUE, value=today.isoformat())],
                             occurred_at=rt.clock.now(), source="milestone-stream.clock")
            await rt.channels.clock.send(key=account.encode(), value=tick.to_avro())

    async def reindex(self, app: AppT, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
        """on_rebalance_complete's receiver: mode calls receiver(sender, *args, signal=..., **kwargs), so the
        sender is positional-only (a keyword in kwargs cannot collide with it)."""
        self.anniversaries.clear()

