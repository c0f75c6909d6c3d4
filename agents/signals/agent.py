"""The signals agent: CRM changes and clock ticks into each account's risk row, risk episodes onto `risks`.

Why a second stream on `crm.changes` but none on telemetry: the CRM topic is low-volume, while a
second telemetry stream would halve the worker's events/s; the usage agent keeps the day totals the
signals read (agents/detector/usage.py), and this agent reads them read-only in the tick's partition
(tables are co-partitioned). Why ticks: a usage drop or "no new users" shows exactly when events stop
arriving, so a timer sends a tick per owned account that has day totals, through an internal topic
(only a stream writes a table); the tick carries its instant and the day totals it saw, so a replay decides
as the first run did.

Exactly once, as the detector: the risk row (`risk_rows`, written only here) records the episodes
open and the last CRM offset applied; each record is acknowledged by the broker before the row that
records it is written, so a crash between the two re-sends the same signal_id (consumers keep the
first) and never loses one. Anything that cannot be processed is dead-lettered and the stream goes on.
"""
from __future__ import annotations

import json
import logging
from datetime import UTC, date
from typing import Any

from faust.types import AppT
from mode import BaseSignalT

from milestone_stream import faust_compat, observability, tables
from milestone_stream.agents.detector.usage import UsageRow
from milestone_stream.agents.signals.episodes import RiskRow, evaluate, observe_change
from milestone_stream.agents.signals.rules import SignalRules
from milestone_stream.dates import iso_instant
from milestone_stream.deadletter import Unprocessable
from milestone_stream.runtime import RAW, Runtime
from milestone_stream.schemas.records import CrmChange, RiskSignal

log = logging.getLogger(__name__)
STAGE = "signals"


class SignalAgents:
    """The signals agent and its timer, installed only when the rules have a `signals` section."""

    def __init__(self, rt: Runtime, rules: SignalRules) -> None:
        self.rt, self.rules = rt, rules
        app, names = rt.app, rt.names
        self.risks = app.topic(names.risks, **RAW)
        self.clock = app.topic(names.risk_clock, **RAW)
        self.input = app.topic(names.crm, names.risk_clock, **RAW)
        self.table = tables.table(app, "risk_rows", rt.settings)
        # account → (usage row's input offset, UTC day) at its last tick: the usage signals depend on nothing
        # else, so an account whose row and day are unchanged is not ticked again
        self.ticked: dict[str, tuple[object, date]] = {}

    def install(self) -> None:
        rt, app = self.rt, self.rt.app
        app.agent(self.input, name=STAGE)(self.signals_agent)
        faust_compat.timer(app, self.rules.evaluate_every_seconds)(self.signals_clock)
        app.on_rebalance_complete.connect(self.reindex)
        observability.PROGRESS.register(STAGE, {rt.names.crm, rt.names.risk_clock})

    async def signals_agent(self, stream: Any) -> None:
        await faust_compat.each_in_order(self.rt.app, stream, STAGE, self.step, self.rt.park)

    async def step(self, event: Any) -> None:
        """A tick: the usage signals at its instant. A CRM change: the CRM signals. Then publish, then write."""
        rt, msg = self.rt, event.message
        if msg.topic == rt.names.risk_clock:
            account, now, usage = _tick(msg.key, msg.value)
            stored_row = RiskRow.from_stored(faust_compat.read(self.table, account, event))
            row = stored_row.copy()  # the stored row's containers stay as they were: it is what "unchanged" means
            records = evaluate(row, account, usage, now, self.rules)
            if not records and row == stored_row:
                return  # nothing changed: no changelog write for a quiet tick
        else:
            change = await rt.decode(event, CrmChange, STAGE)
            if change is None:
                return
            account = change.account_id
            row = RiskRow.from_stored(faust_compat.read(self.table, account, event)).copy()
            records = observe_change(row, change, (msg.topic, msg.offset), self.rules)
        stored = row.to_stored()
        rt.check_fits(stored, f"risk row of account {account!r}")
        await self.emit(records)
        self.table[account] = stored

    async def emit(self, records: list[RiskSignal]) -> None:
        """Send, then wait for every ack, so no row records an opening or clearing the log lacks."""
        acks = [await self.risks.send(key=r.account_id.encode(), value=r.to_avro()) for r in records]
        for r, ack in zip(records, acks, strict=True):
            await ack
            observability.EVENTS_OUT.labels(STAGE).inc()
            log.info("risk signal %s", r.state, extra={"agent": STAGE, "account_id": r.account_id,
                                                       "signal_id": r.signal_id, "kind": r.kind, "title": r.title})

    async def signals_clock(self) -> None:
        """A tick per owned account whose usage row has day totals and changed, or whose UTC day changed,
        since its last tick (only a stream writes a table)."""
        rt = self.rt
        instant = rt.clock.now()
        now, today = instant.isoformat(), instant.astimezone(UTC).date()
        # only this worker's own accounts: a standby replica's row lags, and its totals would be stale
        mine = faust_compat.owned(rt.app, rt.names.telemetry, rt.settings.partitions)
        for account, stored in list(rt.tables.usage.items()):
            if isinstance(stored, dict) and stored.get("d") and mine(account.encode()):
                state = (stored.get("o"), today)
                if self.ticked.get(account) != state:
                    tick = json.dumps({"at": now, "d": stored["d"]}, separators=(",", ":")).encode()
                    await self.clock.send(key=account.encode(), value=tick)
                    self.ticked[account] = state

    async def reindex(self, app: AppT, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
        """on_rebalance_complete's receiver: after a rebalance every owned account is ticked again."""
        self.ticked.clear()


def _tick(key: bytes | None, value: bytes | None) -> tuple[str, Any, UsageRow]:
    """(account, instant, the day totals it saw) of a tick; a tick that is not one is unprocessable.

    Why the totals travel in the tick: the usage row keeps moving, and a tick replayed after a crash
    (its records acknowledged, its row not written) must decide as the first run did, or an opening on
    `risks` would be left without the row that clears it."""
    try:
        account = (key or b"").decode()
        tick = json.loads(value or b"")
        now = iso_instant(tick["at"])
        days = tick["d"]
        if not isinstance(days, dict):
            raise ValueError("its day totals are not an object")
    except (UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
        raise Unprocessable("invalid_tick", "a risk clock tick is an account key and {\"at\": ISO instant, "
                                            f"\"d\": day totals}}: {type(exc).__name__}: {exc}") from None
    if not account:
        raise Unprocessable("invalid_tick", "a risk clock tick has no account key")
    return account, now, UsageRow.from_stored({"d": days})
