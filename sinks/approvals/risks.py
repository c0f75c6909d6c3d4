"""The open risk signals of a CSM's accounts, as a page of the approval UI (`/risks`).

Why here: a CSM deciding whether to send a congratulations note wants to see which of their accounts
are at risk right now, not only the titles a request carried when it was drafted. The board follows
the `risks` topic from the beginning (a Follower, like the approval view) and keeps each account's
open signals with the drafter's own gate logic (agents/drafter/gates.py: a repeated opening, a late
opening of a cleared episode, a repeated clearing change nothing), so the page shows what the
drafter's gate sees. A CSM sees the accounts whose latest signal names them as CSM. A record the
board cannot read is skipped with a log line: the gates agent and the sender read the same record
and dead-letter it, so it is not lost (one dead letter per stage is enough).
"""
from __future__ import annotations

import logging

from aiohttp import web
from aiokafka import ConsumerRecord

from milestone_stream.agents.drafter.context import clean_text
from milestone_stream.agents.drafter.gates import GateRow, OpenSignal, TooManyOpen, apply
from milestone_stream.follow import Follower
from milestone_stream.schemas.records import RiskSignal
from milestone_stream.sinks.approvals.web import ApprovalUI, page, problem
from milestone_stream.topics import TopicNames

log = logging.getLogger(__name__)


class RiskBoard:
    def __init__(self, bootstrap_servers: str, names: TopicNames, ui: ApprovalUI) -> None:
        self.ui = ui
        self.rows: dict[str, GateRow] = {}
        self.owners: dict[str, tuple[str, str]] = {}  # account → (CSM email, account name), from its latest record
        self._follow = Follower(bootstrap_servers, [names.risks], self._apply_record, name="risk board")

    async def start(self) -> None:
        await self._follow.start()

    async def stop(self) -> None:
        await self._follow.stop()

    async def caught_up(self, timeout: float = 30) -> None:
        await self._follow.caught_up(timeout)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/risks", self.page)]

    async def _apply_record(self, r: ConsumerRecord) -> None:
        try:
            self.apply(RiskSignal.from_avro(r.value))
        except Exception as exc:  # noqa: BLE001 — the gates agent and the sender dead-letter the same record
            log.warning("risk board: a record could not be read; skipped", extra={
                "origin": f"{r.topic}[{r.partition}]@{r.offset}", "error": f"{type(exc).__name__}: {exc}"[:300]})

    def apply(self, signal: RiskSignal) -> None:
        row = self.rows.setdefault(signal.account_id, GateRow())
        try:
            apply(row, signal)
        except TooManyOpen:
            log.warning("risk board: too many open signals; one not shown", extra={"account_id": signal.account_id})
        if signal.csm_email:
            name = clean_text(signal.account_name, 120) or clean_text(signal.account_id, 120)
            self.owners[signal.account_id] = (signal.csm_email, name)

    def open_for(self, csm_email: str) -> list[tuple[str, list[OpenSignal]]]:
        """(account name, its open signals, highest level first) for each of the CSM's accounts at risk."""
        out = []
        for account, (owner, name) in self.owners.items():
            signals = self.rows[account].signals() if account in self.rows else []
            if owner.lower() == csm_email.lower() and signals:
                out.append((name, sorted(signals, key=_rank)))
        return sorted(out, key=lambda a: (_rank(a[1][0]), a[0]))

    async def page(self, request: web.Request) -> web.Response:
        who = self.ui.identity(request)
        if who is None:
            return problem(401, "Sign in with your link", "Open the approval link from your notification email.")
        return page("risks.html", csm=who[0], accounts=self.open_for(who[0]))


def _rank(s: OpenSignal) -> tuple[int, str]:
    order = ("executive", "red", "orange", "yellow")
    return (order.index(s.level) if s.level in order else len(order), s.opened_at)
