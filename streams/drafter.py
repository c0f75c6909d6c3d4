"""The drafter: a Faust agent from `milestones` to `approvals.requests`, beside the detector.

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
"""
from __future__ import annotations

import copy
import heapq
import logging
from datetime import datetime, timedelta

import faust

from milestone_stream import faust_guards, observability
from milestone_stream.clock import Clock
from milestone_stream.deadletter import DeadLetters, Unprocessable
from milestone_stream.ids import stable_id
from milestone_stream.models import ApprovalRequest, Milestone
from milestone_stream.rules import Rules
from milestone_stream.settings import Settings
from milestone_stream.sinks import policy
from milestone_stream.sinks.claude import Drafter
from milestone_stream.sinks.context import compile_context
from milestone_stream.sinks.drafting import render

log = logging.getLogger(__name__)


def approval_id(milestone_ids: list[str]) -> str:
    return stable_id("approval", *sorted(milestone_ids))


class DueIndex:
    """Accounts of this worker with held milestones, by when they are due (rebuilt after a rebalance)."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []
        self.stale = True

    def schedule(self, account_id: str, when: datetime | None) -> None:
        if when is not None:
            heapq.heappush(self._heap, (when, account_id))

    def pop_due(self, now: datetime) -> set[str]:
        due = set()
        while self._heap and self._heap[0][0] <= now:
            due.add(heapq.heappop(self._heap)[1])
        return due

    def clear(self) -> None:
        self._heap.clear()
        self.stale = True


def install_drafter(app: faust.App, *, settings: Settings, rules: Rules, clock: Clock, names, raw: dict,
                    usage_table, profiles, dead_letters: DeadLetters, decode, park,
                    check_fits) -> None:
    drafter = Drafter(rules, api_key=settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else None,
                      model=settings.model, timeout=settings.model_timeout, max_tokens=settings.model_max_tokens,
                      max_retries=settings.model_retries, base_url=settings.anthropic_base_url,
                      max_wait=settings.model_max_wait)
    gather = timedelta(seconds=settings.gather_seconds)
    cooldown = timedelta(days=rules.cooldown_days)
    ttl = timedelta(hours=rules.drafting.approval_ttl_hours)
    requests_topic = app.topic(names.approval_requests, **raw)
    ticks_topic = app.topic(names.drafter_clock, **raw)
    celebrations = app.Table("celebrations", key_type=str, partitions=settings.partitions)
    due = DueIndex()

    async def draft(account: str, batch: list[Milestone], notes: list[str], now: datetime) -> ApprovalRequest:
        ctx = compile_context(account, policy.headline_milestones(batch), profiles.get(account),
                              usage_table.get(account), rules, now)
        drafted = await drafter.draft(ctx)
        recipients = ctx.executives[:1]
        rendered = render(drafted.note, ctx, rules, recipients[0].name if recipients else None)
        ids = sorted(m.milestone_id for m in batch)
        return ApprovalRequest(
            approval_id=approval_id(ids), milestone_ids=ids, account_id=account, account_name=ctx.account_name,
            csm_email=ctx.csm_email or "", csm_name=ctx.csm_name, recipients=recipients, subject=rendered.subject,
            body_text=rendered.body_text, body_html=rendered.body_html, citations=ctx.citations(),
            drafted_by=drafted.drafted_by, guard_verdict=drafted.verdict,
            policy_notes=notes + policy.review_notes(ctx), created_at=now, expires_at=now + ttl)

    async def park_held(account: str, row: dict, reason: str, error: str) -> None:
        """Dead-letter every held milestone (each replayable on its own) and let go of them."""
        for m, (topic, partition, offset) in policy.held(row):
            await dead_letters.send(stage="drafter", reason=reason, error=error, topic=topic, partition=partition,
                                    offset=offset, key=account.encode(), value=m.to_avro())
        policy.forget_held(row)

    async def release(account: str, row: dict, now: datetime) -> None:
        batch, notes = policy.release(row, now, gather, cooldown)
        if not batch:
            return
        profile = (profiles.get(account) or {"p": {}})["p"]
        if not isinstance(profile.get("csm_email"), str) or not profile["csm_email"].strip():
            return await park_held(account, row, "no_csm_owner",
                                   f"account {account!r} has no csm_email in its CRM profile; "
                                   "fix the CRM record, then replay this dead letter")
        try:
            request = await draft(account, batch, notes, now)
            value = request.to_avro()
            if len(value) > settings.max_message_bytes - 4096:
                raise Unprocessable("draft_failed", f"the approval request would be {len(value):,} bytes")
        except Exception as exc:
            log.error("a note could not be drafted; its milestones are dead-lettered", exc_info=exc,
                      extra={"account_id": account})
            return await park_held(account, row, "draft_failed",
                                   f"{type(exc).__name__}: {exc}; fix the CRM data or the rules, then replay")
        await (await requests_topic.send(key=account.encode(), value=value))
        observability.EVENTS_OUT.labels("drafter").inc()
        log.info("approval requested", extra={"account_id": account, "approval_id": request.approval_id,
                                              "drafted_by": request.drafted_by})
        policy.mark_celebrated(row, now)

    @app.agent(app.topic(names.milestones, names.drafter_clock, **raw), name="drafter")
    async def drafter_agent(stream):
        await faust_guards.each_in_order(app, stream, "drafter", step, park)

    async def step(event) -> None:
        """A tick: draft what is due for its account. A milestone: take it in (hold it)."""
        msg, now = event.message, clock.now()
        if msg.topic == ticks_topic.get_topic_name():
            account = msg.key.decode()
            row = copy.deepcopy(celebrations.get(account)) or policy.new_row()
            await release(account, row, now)
        else:
            m = await decode(event, Milestone, "drafter")
            if m is None:
                return
            account = m.account_id
            row = copy.deepcopy(celebrations.get(account)) or policy.new_row()
            if not policy.take_in(row, m, (msg.topic, msg.partition, msg.offset), now):
                return  # a re-delivered copy: already taken in
        check_fits(row, f"held milestones of account {account!r}")
        celebrations[account] = row
        due.schedule(account, policy.due_at(row, gather, cooldown))

    observability.PROGRESS.register("drafter", {names.milestones, names.drafter_clock})

    @app.timer(interval=settings.drafter_interval)
    async def drafter_clock():
        if not faust_guards.settled(app):
            return
        if due.stale:
            due.stale = False
            for account, row in list(celebrations.items()):
                due.schedule(account, policy.due_at(row, gather, cooldown))
        for account in due.pop_due(clock.now()):
            await ticks_topic.send(key=account.encode(), value=b"due")

    @app.on_rebalance_complete.connect
    async def _reindex(app, **kwargs):
        due.clear()
