"""The drafter's agent: milestones in, approval requests out (policy.py, context.py, template.py,
model.py and guard.py hold its logic), beside the detector in the same worker.

Why in the detector's app: `milestones` is keyed and partitioned like `crm.changes` and
`telemetry.events`, so this worker holds the account's profile and usage rows locally — the context
compiler reads them without a remote lookup. Why a timer plus ticks: the policy holds milestones
(a short gathering window, the cooldown) and only a stream may write a table, so the timer sends a
tick for each account that is due and the agent drafts when the tick arrives.

One milestone → one approval request: the approval id is a hash of the ids it celebrates, the row
records the ids it took in, and a request is acknowledged by the broker before the row that clears
them is written, so a crash re-sends the same id (consumers keep the first) but never loses one.
A note that cannot be drafted (any exception, or a request too large to publish) never stays held
in the row: each of its milestones is dead-lettered `draft_failed` with the reason, for a replay.
Next: requests go to the approval UI and the sender (sinks/).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from faust.types import AppT
from mode import BaseSignalT

from milestone_stream import faust_compat, observability
from milestone_stream.agents.detector.crm import ProfileRow
from milestone_stream.agents.detector.usage import UsageRow
from milestone_stream.agents.drafter import holdout, policy
from milestone_stream.agents.drafter.context import Context, compile_context, milestone_source, milestone_title
from milestone_stream.agents.drafter.gate_agent import GateAgents
from milestone_stream.agents.drafter.gates import held_note
from milestone_stream.agents.drafter.health import of_account as health_of
from milestone_stream.agents.drafter.model import Drafter
from milestone_stream.agents.drafter.sequence_agent import SequenceAgents
from milestone_stream.agents.drafter.template import render
from milestone_stream.deadletter import Unprocessable
from milestone_stream.ids import stable_id
from milestone_stream.runtime import ROW_MARGIN, Runtime
from milestone_stream.schedule import DueIndex
from milestone_stream.schemas.records import ApprovalRequest, Milestone

log = logging.getLogger(__name__)


def approval_id(milestone_ids: list[str]) -> str:
    return stable_id("approval", *sorted(milestone_ids))


class DrafterAgents:
    """The drafter agent and its timer: hold milestones by policy, draft when due, request approval."""

    def __init__(self, rt: Runtime) -> None:
        s = rt.settings
        self.rt = rt
        self.writer = Drafter(rt.rules, api_key=s.anthropic_api_key.get_secret_value() if s.anthropic_api_key else None,
                              model=s.model, timeout=s.model_timeout, max_tokens=s.model_max_tokens,
                              max_retries=s.model_retries, base_url=s.anthropic_base_url, max_wait=s.model_max_wait)
        self.gather = timedelta(seconds=s.gather_seconds)
        self.cooldown = timedelta(days=rt.rules.cooldown_days)
        self.ttl = timedelta(hours=rt.rules.drafting.approval_ttl_hours)
        self.due: DueIndex[datetime] = DueIndex()
        self.gates = GateAgents(rt)  # open risk signals, read here, written by the gates agent alone
        # the anniversary sequence (docs/anniversary-sequence.md): its own agent and table; off without its rules
        config = rt.rules.anniversary_sequence
        self.sequence = SequenceAgents(rt, self.gates, config) if config is not None else None

    def install(self) -> None:
        rt, app = self.rt, self.rt.app
        app.agent(rt.channels.drafter_input, name="drafter")(self.drafter_agent)
        self.gates.install()
        if self.sequence is not None:
            self.sequence.install()
        faust_compat.timer(app, rt.settings.drafter_interval)(self.drafter_clock)
        app.on_rebalance_complete.connect(self.reindex)
        observability.PROGRESS.register("drafter", {rt.names.milestones, rt.names.drafter_clock})

    async def drafter_agent(self, stream: Any) -> None:
        await faust_compat.each_in_order(self.rt.app, stream, "drafter", self.step, self.rt.park)

    async def step(self, event: Any) -> None:
        """A tick: draft what is due for its account. A milestone: take it in (hold it)."""
        rt = self.rt
        msg, now = event.message, rt.clock.now()
        if msg.topic == rt.names.drafter_clock:
            account = msg.key.decode()
            row = policy.CelebrationRow.from_stored(rt.tables.celebrations.get(account)).copy()
            await self.release(account, row, now)
        else:
            m = await rt.decode(event, Milestone, "drafter")
            if m is None:
                return
            account = m.account_id
            row = policy.CelebrationRow.from_stored(rt.tables.celebrations.get(account)).copy()
            if not policy.take_in(row, m, (msg.topic, msg.partition, msg.offset), now):
                return  # a re-delivered copy: already taken in
        stored = row.to_stored()
        rt.check_fits(stored, f"held milestones of account {account!r}")
        rt.tables.celebrations[account] = stored
        self.due.schedule(account, self.due_at(row))

    def due_at(self, row: policy.CelebrationRow) -> datetime | None:
        return policy.due_at(row, self.gather, self.cooldown)

    async def draft(self, account: str, batch: list[Milestone], notes: list[str], now: datetime) -> ApprovalRequest:
        rt = self.rt
        ctx = compile_context(account, policy.headline_milestones(batch),
                              ProfileRow.from_stored(rt.tables.profiles.get(account)),
                              UsageRow.from_stored(rt.tables.usage.get(account)), rt.rules, now)
        drafted = await self.writer.draft(ctx)
        recipients = ctx.executives[:1]
        rendered = render(drafted.note, ctx, rt.rules, recipients[0].name if recipients else None)
        ids = sorted(m.milestone_id for m in batch)
        arm = holdout.assign(rt.rules.holdout, account, [m.kind for m in batch])  # measurement: drafted, never sent
        return ApprovalRequest(
            approval_id=approval_id(ids), milestone_ids=ids, account_id=account, account_name=ctx.account_name,
            csm_email=ctx.csm_email or "", csm_name=ctx.csm_name, recipients=recipients, subject=rendered.subject,
            body_text=rendered.body_text, body_html=rendered.body_html, citations=ctx.citations(),
            drafted_by=drafted.drafted_by, guard_verdict=drafted.verdict,
            policy_notes=notes + policy.review_notes(ctx) + arm.notes, held_out=arm.held_out,
            created_at=now, expires_at=now + self.ttl,
            milestone_titles=[milestone_title(m) for m in ctx.milestones],
            milestone_sources=[f"{source}: {record}" for source, record, _ in map(milestone_source, ctx.milestones)],
            **self.risk_fields(account, ctx, now))

    def risk_fields(self, account: str, ctx: Context, now: datetime) -> dict[str, Any]:
        """The account's health score (CSM only, recomputed from the current rows) and open risk signals."""
        rt = self.rt
        return {"health": health_of(ctx, ProfileRow.from_stored(rt.tables.profiles.get(account)),
                                    UsageRow.from_stored(rt.tables.usage.get(account)), rt.rules, now),
                "risk_signals": self.gates.titles(account)}

    async def park_held(self, account: str, row: policy.CelebrationRow, reason: str, error: str) -> None:
        """Dead-letter every held milestone (each replayable on its own) and let go of them."""
        for m, (topic, partition, offset) in policy.held(row):
            await self.rt.dead_letters.send(stage="drafter", reason=reason, error=error, topic=topic,
                                            partition=partition, offset=offset, key=account.encode(),
                                            value=m.to_avro())
        policy.forget_held(row)

    async def release(self, account: str, row: policy.CelebrationRow, now: datetime) -> None:
        rt = self.rt
        batch, notes = policy.release(row, now, self.gather, self.cooldown)
        if not batch:
            return
        until = self.sequence.cooldown_until(account) if self.sequence is not None else None
        if until is not None:  # a later step of the anniversary sequence counts as a note for the cooldown
            if now < until:
                return
            if row.held_since and datetime.fromisoformat(row.held_since) < until:
                notes = notes + [f"cooldown: a step of the anniversary sequence was drafted "
                                 f"{until - self.cooldown:%Y-%m-%d}; the milestones reached since were held and "
                                 "are merged into this note"]
        holding = self.gates.holding(account)
        if holding:  # at risk: held (nothing dropped) until the signal clears; the timer re-checks
            if policy.gate(row, [(s.signal_id, held_note(s)) for s in holding], now):
                log.info("milestones held by a risk gate", extra={"account_id": account,
                                                                  "signals": [s.signal_id for s in holding]})
            return
        notes = notes + policy.gate_notes(row, self.gates.row(account).cleared_at)
        if self.sequence is not None:  # an anniversary's note is step 1 of its sequence
            notes = notes + self.sequence.step1_notes(batch, now)
        csm_email = ProfileRow.from_stored(rt.tables.profiles.get(account)).field("csm_email")
        if not isinstance(csm_email, str) or not csm_email.strip():
            return await self.park_held(account, row, "no_csm_owner",
                                        f"account {account!r} has no csm_email in its CRM profile; "
                                        "fix the CRM record, then replay this dead letter")
        try:
            request = await self.draft(account, batch, notes, now)
            value = request.to_avro()
            if len(value) > rt.settings.max_message_bytes - ROW_MARGIN:
                raise Unprocessable("draft_failed", f"the approval request would be {len(value):,} bytes")
        except Exception as exc:
            log.error("a note could not be drafted; its milestones are dead-lettered", exc_info=exc,
                      extra={"account_id": account})
            return await self.park_held(account, row, "draft_failed",
                                        f"{type(exc).__name__}: {exc}; fix the CRM data or the rules, then replay")
        if self.sequence is not None:  # before the request: a decision on step 1 always finds its sequence
            await self.sequence.started(account, request, batch)
        await (await rt.channels.requests.send(key=account.encode(), value=value))
        observability.EVENTS_OUT.labels("drafter").inc()
        log.info("approval requested", extra={"account_id": account, "approval_id": request.approval_id,
                                              "drafted_by": request.drafted_by})
        policy.mark_celebrated(row, now)

    async def drafter_clock(self) -> None:
        """Ticks to the drafter agent for the accounts whose held milestones are due (only a stream writes a table)."""
        rt = self.rt
        due = self.due.due_now(rt.tables.celebrations.items,
                               lambda stored: self.due_at(policy.CelebrationRow.from_stored(stored)), rt.clock.now())
        for account in due:
            until = self.sequence.cooldown_until(account) if self.sequence is not None else None
            if until is not None and rt.clock.now() < until:  # the anniversary sequence's cooldown
                self.due.schedule(account, until)
                continue
            if self.still_gated(account):  # no tick (and no row write) until the gate changes
                self.due.schedule(account, rt.clock.now() + timedelta(seconds=rt.settings.drafter_interval))
                continue
            await rt.channels.drafter_clock.send(key=account.encode(), value=b"due")

    def still_gated(self, account: str) -> bool:
        """Held by risk signals that the account's row records already (a new one is recorded by a tick)."""
        holding = {s.signal_id for s in self.gates.holding(account)}
        return bool(holding) and holding <= policy.gated_ids(
            policy.CelebrationRow.from_stored(self.rt.tables.celebrations.get(account)))

    async def reindex(self, app: AppT, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
        """on_rebalance_complete's receiver: mode calls receiver(sender, *args, signal=..., **kwargs), so the
        sender is positional-only (a keyword in kwargs cannot collide with it)."""
        self.due.clear()
