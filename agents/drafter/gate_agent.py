"""The gates agent: follows the `risks` topic and keeps each account's open risk signals in its own
table (`gates`), which the drafter reads to hold celebrations while an account is at risk.

Why its own agent and table: the signals agent (agents/signals/) publishes episodes to `risks`, and
that topic is this stage's only interface to it. `risks` is keyed by account and co-partitioned with
`milestones`, so the account's gate row lives on the worker that drafts its notes. Only this agent
writes the `gates` table and only the drafter writes `celebrations`: two agents writing one row would
lose updates. Applying a record is idempotent (a repeat or a late `open` of a cleared episode changes
nothing), so a record re-read after a crash is harmless. The drafter's timer re-checks held accounts,
so a clearing releases them without this agent touching the drafter's row.
"""
from __future__ import annotations

import logging
from typing import Any

from faust.types import TableT

from milestone_stream import faust_compat, observability, tables
from milestone_stream.agents.drafter import gates
from milestone_stream.deadletter import Unprocessable
from milestone_stream.runtime import RAW, Runtime
from milestone_stream.schemas.records import RiskSignal

log = logging.getLogger(__name__)


class GateAgents:
    """The `gates` table and the agent that writes it; the drafter reads it through `row`, `holding`, `titles`."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.table: TableT[str, dict] = tables.table(rt.app, "gates", rt.settings)
        self.topic = rt.app.topic(rt.names.risks, **RAW)

    def install(self) -> None:
        self.rt.app.agent(self.topic, name="gates")(self.gates_agent)
        observability.PROGRESS.register("gates", {self.rt.names.risks})

    async def gates_agent(self, stream: Any) -> None:
        await faust_compat.each_in_order(self.rt.app, stream, "gates", self.step, self.rt.park)

    async def step(self, event: Any) -> None:
        rt = self.rt
        signal = await rt.decode(event, RiskSignal, "gates")
        if signal is None:
            return
        account = signal.account_id
        row = gates.GateRow.from_stored(faust_compat.read(self.table, account, event)).copy()
        try:
            changed = gates.apply(row, signal)
        except gates.TooManyOpen as exc:
            raise Unprocessable("too_many_open_signals", str(exc)) from None
        if not changed:
            return
        stored = row.to_stored()
        rt.check_fits(stored, f"risk gate row of account {account!r}")
        self.table[account] = stored
        log.info("risk signal %s", signal.state, extra={"account_id": account, "signal_id": signal.signal_id,
                                                       "level": signal.level, "kind": signal.kind})

    def row(self, account: str) -> gates.GateRow:
        return gates.GateRow.from_stored(self.table.get(account))

    def holding(self, account: str) -> list[gates.OpenSignal]:
        """The account's open signals that hold its celebrations under the rules' gate level."""
        return self.row(account).holding(self.rt.rules.risk.gate_level)

    def titles(self, account: str) -> list[str]:
        """The titles of the account's open signals (every level), for the approval request."""
        return [s.title for s in self.row(account).signals()]
