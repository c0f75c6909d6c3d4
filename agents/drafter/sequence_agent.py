"""The anniversary sequence in the worker: its table, its agent, the decisions router and its timer
(the rules are agents/drafter/sequence.py, the emails sequence_notes.py).

Why its own agent and table (`sequences`): the sequence learns from three places — the drafter (step
1 was drafted), the CSM's decisions and the clock — and only one agent may write a row. So all three
arrive on one internal topic keyed by account (`milestones.sequence`, co-partitioned with the
drafter's and detector's tables, so the profile, usage and gate rows are local): the drafter sends a
start record, the router re-keys `approvals.decisions` (keyed by approval id) by the decision's
`account_id`, and the timer sends ticks for the accounts due. This agent alone writes `sequences`.

Exactly once: every record this agent publishes (a later step's approval request, a `send` decision
on a standing approval, a `dont_send` that withdraws a cancelled step) has a deterministic id, is
acknowledged by the broker before the row that records it is written, and is recognised by its
consumers when a crash makes the agent publish it again (the view and the sender keep the first
request and the first decision per approval id; the sender sends each approval id once). A later
step that cannot be drafted is dead-lettered `draft_failed` with the input that made it due, and the
step is recorded cancelled with the reason, so it is never retried in a loop nor lost silently.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from faust.types import AppT, TableT
from mode import BaseSignalT

from milestone_stream import faust_compat, observability, tables
from milestone_stream.agents.detector.crm import ProfileRow
from milestone_stream.agents.detector.usage import UsageRow
from milestone_stream.agents.drafter import holdout, policy, sequence
from milestone_stream.agents.drafter.context import compile_context
from milestone_stream.agents.drafter.gate_agent import GateAgents
from milestone_stream.agents.drafter.health import of_account as health_of
from milestone_stream.agents.drafter.sequence_notes import render_step
from milestone_stream.agents.drafter.sequence_rules import AnniversarySequence
from milestone_stream.deadletter import Unprocessable, decode_or_park
from milestone_stream.runtime import RAW, ROW_MARGIN, Runtime
from milestone_stream.schedule import DueIndex
from milestone_stream.schemas import confluent
from milestone_stream.schemas.codec import CodecError
from milestone_stream.schemas.records import ApprovalDecision, ApprovalRequest, Contact, Milestone

log = logging.getLogger(__name__)

START, DECISION, TICK = b"S", b"D", b"T"


class SequenceAgents:
    """The `sequences` table, the agent that writes it, the decisions router and the timer."""

    def __init__(self, rt: Runtime, gates: GateAgents, config: AnniversarySequence) -> None:
        self.rt, self.gates, self.config = rt, gates, config
        self.table: TableT[str, dict] = tables.table(rt.app, "sequences", rt.settings)
        self.topic = rt.app.topic(rt.names.sequence, **RAW)
        self.decisions = rt.app.topic(rt.names.approval_decisions, **RAW)
        self.ttl = timedelta(hours=rt.rules.drafting.approval_ttl_hours)
        self.due: DueIndex[datetime] = DueIndex()

    def install(self) -> None:
        app = self.rt.app
        app.agent(self.topic, name="sequence")(self.sequence_agent)
        app.agent(self.decisions, name="sequence-router")(self.router_agent)
        faust_compat.timer(app, self.rt.settings.drafter_interval)(self.sequence_clock)
        app.on_rebalance_complete.connect(self.reindex)
        observability.PROGRESS.register("sequence", {self.rt.names.sequence})
        observability.PROGRESS.register("sequence-router", {self.rt.names.approval_decisions})

    # --- inputs ---------------------------------------------------------------------------------

    async def started(self, account: str, request: ApprovalRequest, batch: list[Milestone]) -> None:
        """Called by the drafter before it publishes an anniversary's request (step 1): the start record,
        acknowledged (a crash before the request is published re-sends both with the same ids)."""
        anniversaries = sorted((m for m in batch if m.kind == "anniversary"), key=lambda m: m.reached_at)
        if not anniversaries:
            return
        start = {"m": anniversaries[-1].milestone_id, "a": request.approval_id, "t": request.created_at.isoformat(),
                 "c": request.csm_email, "h": request.held_out}
        await (await self.topic.send(key=account.encode(), value=START + json.dumps(start).encode()))

    def cooldown_until(self, account: str) -> datetime | None:
        """Until when the drafter holds the account's other milestones after a later step was drafted (the
        cooldown applies to every step as to any note); read here, written by the sequence agent alone."""
        last = sequence.last_drafted(sequence.SequenceRow.from_stored(self.table.get(account)))
        return last + timedelta(days=self.rt.rules.cooldown_days) if last else None

    def step1_notes(self, batch: list[Milestone], now: datetime) -> list[str]:
        return sequence.step1_notes(now, self.config) if any(m.kind == "anniversary" for m in batch) else []

    async def router_agent(self, stream: Any) -> None:
        await faust_compat.each_in_order(self.rt.app, stream, "sequence-router", self.route, self.rt.park)

    async def route(self, event: Any) -> None:
        """A decision keyed by approval id → the sequence topic keyed by its account (all decisions: the
        sequence agent knows which approval ids are its steps)."""
        msg = event.message
        d = await decode_or_park(ApprovalDecision, value=msg.value, key=msg.key, topic=msg.topic,
                                 partition=msg.partition, offset=msg.offset, stage="sequence-router",
                                 dead_letters=self.rt.dead_letters, max_json_bytes=self.rt.settings.max_message_bytes)
        if d is None or not d.account_id:
            return  # parked; or a decision written before decisions named their account (no sequence then)
        await (await self.topic.send(key=d.account_id.encode(), value=DECISION + (msg.value or b"")))

    async def sequence_agent(self, stream: Any) -> None:
        await faust_compat.each_in_order(self.rt.app, stream, "sequence", self.step, self.rt.park)

    async def step(self, event: Any) -> None:
        msg, now = event.message, self.rt.clock.now()
        account = (msg.key or b"").decode("utf-8", "replace")
        value: bytes = msg.value or b""
        row = sequence.SequenceRow.from_stored(faust_compat.read(self.table, account, event)).copy()
        changed = False
        if value[:1] == START:
            changed = self.start(row, value[1:])
        elif value[:1] == DECISION:
            d = await _decision(value[1:])
            if d.account_id != account:
                raise Unprocessable("key_mismatch", f"decision for account {d.account_id!r} under key {account!r}")
            changed = sequence.on_decision(row, d.approval_id, d.decision, d.csm_email, d.decided_at, d.follow_ups)
        elif value[:1] != TICK:
            raise Unprocessable("unknown_record", f"a sequence record starts with {value[:1]!r}, not S, D or T")
        acted = await self.act(account, row, now, msg)
        if changed or acted:
            stored = row.to_stored()
            self.rt.check_fits(stored, f"anniversary sequences of account {account!r}")
            self.table[account] = stored
        self.due.schedule(account, sequence.next_due(row, self.config))

    def start(self, row: sequence.SequenceRow, payload: bytes) -> bool:
        try:
            s = json.loads(payload)
            return sequence.start(row, str(s["m"]), str(s["a"]), datetime.fromisoformat(s["t"]), str(s["c"]),
                                  bool(s["h"]), self.config)
        except (ValueError, KeyError, TypeError) as exc:
            raise Unprocessable("malformed_start", f"{type(exc).__name__}: {exc}") from None

    # --- what is due ----------------------------------------------------------------------------

    def account(self, account: str, now: datetime) -> tuple[sequence.Account, Any, ProfileRow, UsageRow]:
        rt = self.rt
        profile = ProfileRow.from_stored(rt.tables.profiles.get(account))
        usage = UsageRow.from_stored(rt.tables.usage.get(account))
        ctx = compile_context(account, [], profile, usage, rt.rules, now)
        at_risk = [f"'{s.title}' ({s.level})" for s in self.gates.holding(account)]
        return sequence.read_account(profile.fields, at_risk, ctx.modules_adopted, self.config), ctx, profile, usage

    async def act(self, account: str, row: sequence.SequenceRow, now: datetime, origin: Any) -> bool:
        """Carry out what is due (each action's records acknowledged before it is marked); True if any."""
        if not row.sequences:
            return False
        facts, ctx, profile, usage = self.account(account, now)
        last = policy.CelebrationRow.from_stored(self.rt.tables.celebrations.get(account)).last_celebrated
        actions = sequence.due(row, facts, now, self.config, datetime.fromisoformat(last) if last else None,
                               timedelta(days=self.rt.rules.cooldown_days))
        for action in actions:
            seq = row.sequences[action.anniversary_id]
            if isinstance(action, sequence.Draft):
                try:
                    request = self.draft(account, seq, action, facts, ctx, profile, usage, now)
                except Exception as exc:  # noqa: BLE001 — recorded and dead-lettered, never retried in a loop
                    log.error("a sequence step could not be drafted", exc_info=exc, extra={"account_id": account})
                    why = f"could not be drafted: {type(exc).__name__}: {exc}"
                    await self.rt.dead_letters.send(stage="sequence", reason="draft_failed",
                                                    error=f"step {action.step} of {action.anniversary_id}: {why}",
                                                    topic=origin.topic, partition=origin.partition,
                                                    offset=origin.offset, key=origin.key, value=origin.value)
                    sequence.mark(row, sequence.Cancel(action.anniversary_id, action.step, action.approval_id,
                                                       why[:500], withdraw=False))
                    continue
                await (await self.rt.channels.requests.send(key=account.encode(), value=request.to_avro()))
                observability.EVENTS_OUT.labels("sequence").inc()
                seq["p"][action.step]["at"] = now.isoformat()  # the drafter's cooldown counts it
                seq["p"][action.step]["m"] = {"sub": request.subject, "txt": request.body_text,
                                              "htm": request.body_html, "n": request.csm_name,
                                              "r": [c.model_dump() for c in request.recipients]}
            elif isinstance(action, sequence.Send):
                await self.decide(account, seq, action.step, "send", action.reason, now)
            elif isinstance(action, sequence.Cancel) and action.withdraw:
                await self.decide(account, seq, action.step, "dont_send", f"cancelled: {action.reason}", now)
            sequence.mark(row, action)
            log.info("anniversary sequence: %s", type(action).__name__.lower(),
                     extra={"account_id": account, "step": action.step, "anniversary_id": action.anniversary_id})
        return bool(actions)

    def draft(self, account: str, seq: dict, action: sequence.Draft, facts: sequence.Account, ctx: Any,
              profile: ProfileRow, usage: UsageRow, now: datetime) -> ApprovalRequest:
        rt = self.rt
        recipients = ctx.executives[:1]
        rendered = render_step(action.kind, ctx, facts, self.config, rt.rules.drafting.advocacy_link,
                               recipients[0].name if recipients else None)
        notes = list(action.notes)
        if action.kind == "advocacy" and not rt.rules.drafting.advocacy_link:
            notes.append("no review link configured (rules drafting.advocacy_link): the note asks the customer "
                         "to reply instead")
        arm = holdout.assign(rt.rules.holdout, account, ["anniversary"])
        request = ApprovalRequest(
            approval_id=action.approval_id, milestone_ids=[action.anniversary_id], account_id=account,
            account_name=ctx.account_name, csm_email=ctx.csm_email or str(seq.get("c", "")), csm_name=ctx.csm_name,
            recipients=recipients, subject=rendered.subject, body_text=rendered.body_text,
            body_html=rendered.body_html, citations=[], drafted_by="template (anniversary sequence)",
            guard_verdict="not needed: the note states no figure", created_at=now,
            expires_at=max(now + self.ttl, action.due + timedelta(days=1)),
            policy_notes=notes + policy.review_notes(ctx) + arm.notes, held_out=bool(seq.get("h")) or arm.held_out,
            milestone_titles=[f"Anniversary sequence, step {action.step}: {sequence.KIND_TITLES[action.kind]}"],
            milestone_sources=["milestones: anniversary sequence"],
            health=health_of(ctx, profile, usage, rt.rules, now), risk_signals=self.gates.titles(account))
        if len(request.to_avro()) > rt.settings.max_message_bytes - ROW_MARGIN:
            raise Unprocessable("draft_failed", "the approval request would be too large to publish")
        return request

    async def decide(self, account: str, seq: dict, step: str, what: str, reason: str, now: datetime) -> None:
        """A decision on the CSM's behalf: `send` on the standing approval (the email as drafted and shown),
        or `dont_send` withdrawing a cancelled step."""
        p = seq["p"][step]
        m = p.get("m") or {}
        standing = seq.get("f") or {}
        d = ApprovalDecision(
            approval_id=str(p["id"]), decision=what,
            csm_email=str(standing.get("by") or seq.get("c") or ""), account_id=account, reason=reason[:300],
            decided_at=now, **({"subject": m.get("sub"), "body_text": m.get("txt"), "body_html": m.get("htm"),
                                "csm_name": m.get("n"), "recipients": [Contact(**c) for c in m.get("r") or []]}
                               if what == "send" else {}))
        await (await self.decisions.send(key=d.approval_id.encode(), value=d.to_avro()))

    # --- the timer ------------------------------------------------------------------------------

    async def sequence_clock(self) -> None:
        """Ticks to the sequence agent for the accounts with a step due (only a stream writes a table)."""
        rt = self.rt
        due = self.due.due_now(self.table.items, lambda stored: sequence.next_due(
            sequence.SequenceRow.from_stored(stored), self.config), rt.clock.now())
        for account in due:
            await self.topic.send(key=account.encode(), value=TICK)

    async def reindex(self, app: AppT, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
        self.due.clear()


async def _decision(value: bytes) -> ApprovalDecision:
    """The routed decision (its Confluent writer schema fetched first: the router that prefetched it may
    run in another worker); a value that does not decode is Unprocessable (the whole record is parked)."""
    try:
        await confluent.prefetch(value)
        return ApprovalDecision.from_avro(value)
    except CodecError as exc:
        raise Unprocessable(exc.reason, str(exc)) from None
