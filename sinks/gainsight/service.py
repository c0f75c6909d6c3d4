"""Each customer email sent, recorded once in a CRM (`milestones gainsight`): an outbox stage with the
sender's protocol, for any `Target` (target.py); Gainsight CS Timeline is the first.

Why its own process and consumer group: a CRM that is slow, rate-limited or down must hold back
nothing but its own records; the sender goes on sending. Protocol, per sent email, against
`activities.outcomes` (the stage's whole state, re-read at every partition assignment):
1. it reads `emails.outcomes`; a `customer_email` outcome `sent` is an email to record, and so is a
   `risk_alert` outcome `sent` (the CSM's alert of a risk episode, ExternalId its signal_id: risks.py);
2. it waits its turn (the target's rate limit, and any 429 `Retry-After`), then writes `attempting`
   and has the broker acknowledge it *before* calling the target;
3. then `sent`, `retrying` (429, 5xx, unreachable: known not recorded; tried again after Retry-After
   or a backoff of 1 s doubling to 60 s, for `retry_seconds`), or `failed` (a refusal — a 4xx other
   than 429 — or retries exhausted: the input is also dead-lettered, stage = the target's name);
4. an email whose last record is `attempting` was cut off between call and record: it is recorded
   `unknown` and never called again (the ExternalId is the second line: the target itself refuses a
   second insert with the same id).
`sent` and `unknown` are final; `failed` is final for its input record only, so the replay of its
dead letter (`milestones deadletter replay`, a new record) tries again once the CRM's data is fixed.
The input offset is committed only after its outcome is recorded.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from milestone_stream.deadletter import DeadLetters, Unprocessable, decode_or_park
from milestone_stream.kafka_io import producer, read_topic
from milestone_stream.schemas.records import EmailOutcome
from milestone_stream.settings import Settings
from milestone_stream.signals import stop_on_signals
from milestone_stream.sinks.gainsight.approvals import ApprovalIndex
from milestone_stream.sinks.gainsight.config import GainsightSettings
from milestone_stream.sinks.gainsight.outcomes import ActivityOutcome, ActivityState
from milestone_stream.sinks.gainsight.pace import Pace
from milestone_stream.sinks.gainsight.risks import RiskIndex
from milestone_stream.sinks.gainsight.target import NotRecorded, RecordUnknown, SentEmail, Target
from milestone_stream.sinks.gainsight.timeline import TimelineClient
from milestone_stream.sinks.records import handle_each, stage_consumer
from milestone_stream.topics import TopicNames

log = logging.getLogger(__name__)


class ActivityStage:
    def __init__(self, bootstrap: str, names: TopicNames, group_id: str, target: Target, *,
                 retry_seconds: float = 3600, backoff: tuple[float, float] = (1.0, 60.0),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.bootstrap, self.names, self.group_id, self.target = bootstrap, names, group_id, target
        self.retry_seconds, self.backoff, self.clock = retry_seconds, backoff, clock
        self.pace = Pace(target.calls_per_minute)
        self.approvals = ApprovalIndex(bootstrap, names)
        self.risks = RiskIndex(bootstrap, names)  # what each risk alert said (issue 15: alerts are activities too)
        self.outcomes: dict[str, list[ActivityOutcome]] = {}
        # outcomes recorded while a reload reads the topic (the rebalance listener runs beside the record
        # loop; the read ends at the offsets seen at its start): added back, never forgotten
        self._recorded_during: list[list[ActivityOutcome]] = []
        self.loaded = asyncio.Event()  # set once the outcomes are re-read after an assignment (see the sender)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        consumer = stage_consumer(self.bootstrap, self.group_id, self.retry_seconds)
        async with producer(self.bootstrap) as prod:
            self._prod = prod
            self._dead = DeadLetters(self.names.deadletter, lambda t, k, v: prod.send_and_wait(t, key=k, value=v))
            await self.approvals.start()
            await self.risks.start()
            consumer.subscribe([self.names.email_outcomes], listener=_Reload(self))
            await consumer.start()
            try:
                await handle_each(consumer, self.target.name, self.handle, self._dead, self.loaded, stop)
            finally:
                await consumer.stop()
                await self.approvals.stop()
                await self.risks.stop()

    async def reload(self) -> None:
        outcomes: dict[str, list[ActivityOutcome]] = {}
        meanwhile: list[ActivityOutcome] = []
        self._recorded_during.append(meanwhile)
        try:
            records = await read_topic(self.bootstrap, self.names.activity_outcomes, idle_ms=500)
        finally:
            self._recorded_during.remove(meanwhile)
        for r in records:
            try:
                o = ActivityOutcome.from_avro(r.value)
            except Exception:  # noqa: BLE001 — not written by this stage; skipped, as the sender's UI would
                log.warning("unreadable activity outcome skipped", extra={"offset": r.offset})
                continue
            if o.target == self.target.name:
                outcomes.setdefault(o.approval_id, []).append(o)
        for o in meanwhile:  # recorded by this process after the read's end offsets were taken
            history = outcomes.setdefault(o.approval_id, [])
            if not any(h.outcome == o.outcome and h.attempt == o.attempt and h.input == o.input for h in history):
                history.append(o)
        self.outcomes = outcomes

    async def handle(self, r: ConsumerRecord) -> None:
        outcome = await decode_or_park(EmailOutcome, value=r.value, key=r.key, topic=r.topic, partition=r.partition,
                                       offset=r.offset, stage=self.target.name, dead_letters=self._dead)
        if outcome is None or outcome.purpose not in ("customer_email", "risk_alert") or outcome.outcome != "sent":
            return
        if self._settled(outcome.approval_id, _ref(r)):
            return
        email = await (self.risk_alert(outcome) if outcome.purpose == "risk_alert" else self.sent_email(outcome))
        await self.once(email, r)

    async def sent_email(self, outcome: EmailOutcome) -> SentEmail:
        request, decision = await self.approvals.get(outcome.approval_id)
        if decision is None:
            raise Unprocessable("no_decision", f"approval {outcome.approval_id} was sent but its decision is not on "
                                               f"{self.names.approval_decisions}")
        return SentEmail(
            approval_id=outcome.approval_id, account_id=decision.account_id or (request.account_id if request else ""),
            account_name=request.account_name if request else decision.account_id,
            csm_email=decision.csm_email, csm_name=decision.csm_name or (request.csm_name if request else None),
            subject=decision.subject or (request.subject if request else ""),
            body_text=decision.body_text or (request.body_text if request else ""),
            sent_at=outcome.recorded_at, message_id=outcome.message_id,
            recipients=decision.recipients or (request.recipients if request else []))

    async def risk_alert(self, outcome: EmailOutcome) -> SentEmail:
        """A risk alert sent to a CSM, as a Timeline activity (ExternalId: the episode's signal_id)."""
        s = await self.risks.get(outcome.approval_id)
        if s is None:
            raise Unprocessable("no_signal", f"risk alert {outcome.approval_id} was sent but its opening is not on "
                                             f"{self.names.risks}")
        lines = [f"{s.level} {s.kind.replace('_', ' ')}, opened {s.opened_at:%Y-%m-%d %H:%M} UTC",
                 "What was seen: " + ("; ".join(f"{e.source}: {e.record}" for e in s.evidence) or "no evidence"),
                 "Playbook: " + ("; ".join(s.playbook) or "none")]
        return SentEmail(approval_id=s.signal_id, account_id=s.account_id, account_name=s.account_name or s.account_id,
                         csm_email=s.csm_email or "", csm_name=None, subject=f"Risk alert: {s.title}",
                         body_text="\n\n".join(lines), sent_at=outcome.recorded_at, message_id=outcome.message_id,
                         purpose="risk_alert")

    def _settled(self, approval_id: str, input_ref: str) -> bool:
        """Nothing to do: recorded (or unknowable), or failed for this very input."""
        history = self.outcomes.get(approval_id, [])
        last = history[-1] if history else None
        return last is not None and (last.outcome in ("sent", "unknown") or
                                     (last.outcome == "failed" and last.input == input_ref))

    async def once(self, email: SentEmail, origin: ConsumerRecord) -> None:
        """The protocol in the module docstring."""
        history = self.outcomes.get(email.approval_id, [])
        if self._settled(email.approval_id, _ref(origin)):
            return
        if history and history[-1].outcome == "attempting":
            await self.record(email, "unknown", history[-1].attempt,
                              "the stage stopped after calling the target and before recording the answer; not "
                              "called again — check the target for this ExternalId", origin)
            return
        attempt = sum(o.outcome == "attempting" for o in history)
        started = self.clock()
        while True:
            attempt += 1
            await self.pace.wait()
            await self.record(email, "attempting", attempt, None, origin)
            try:
                answer = await self.target.record(email)
            except RecordUnknown as exc:
                return await self.record(email, "unknown", attempt, str(exc), origin)
            except NotRecorded as exc:
                waited = (self.clock() - started).total_seconds()
                if exc.permanent or waited >= self.retry_seconds:
                    why = str(exc) if exc.permanent else f"retries exhausted after {waited:.0f}s: {exc}"
                    return await self.give_up(email, origin, attempt, why,
                                              "activity_refused" if exc.permanent else "activity_failed")
                delay = exc.retry_after if exc.retry_after is not None else \
                    min(self.backoff[0] * 2 ** (attempt - 1), self.backoff[1])
                self.pace.hold(delay)  # the next call of *any* email waits too: the limit is the tenant's
                await self.record(email, "retrying", attempt, f"{exc}; next try in {delay:.1f}s", origin)
                continue
            return await self.record(email, "sent", attempt, answer, origin)

    async def give_up(self, email: SentEmail, origin: ConsumerRecord, attempt: int, why: str, reason: str) -> None:
        """Dead-letter the input (replay it after fixing the CRM's data), then record the failure."""
        await self._dead.send(stage=self.target.name, reason=reason, error=f"{email.approval_id}: {why}",
                              topic=origin.topic,
                              partition=origin.partition, offset=origin.offset, key=origin.key, value=origin.value)
        await self.record(email, "failed", attempt, why, origin)

    async def record(self, email: SentEmail, outcome: ActivityState, attempt: int, detail: str | None,
                     origin: ConsumerRecord) -> None:
        o = ActivityOutcome(approval_id=email.approval_id, target=self.target.name,
                            external_id=self.target.external_id(email), outcome=outcome, attempt=attempt,
                            detail=(detail or None) and detail[:1000], recorded_at=self.clock(), input=_ref(origin))
        await self._prod.send_and_wait(self.names.activity_outcomes, key=email.approval_id.encode(),
                                       value=o.to_avro())
        self.outcomes.setdefault(email.approval_id, []).append(o)
        for meanwhile in self._recorded_during:
            meanwhile.append(o)
        log.info("activity %s", outcome, extra={"approval_id": email.approval_id, "target": self.target.name,
                                                "attempt": attempt})


def _ref(record: ConsumerRecord) -> str:
    return f"{record.topic}:{record.partition}:{record.offset}"


class _Reload(ConsumerRebalanceListener):
    def __init__(self, stage: ActivityStage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.stage.loaded.clear()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.stage.reload()
        self.stage.loaded.set()


async def serve_gainsight(settings: Settings, bootstrap: str, gainsight: GainsightSettings | None = None) -> None:
    """`milestones gainsight`: the stage for Gainsight CS Timeline (off, with one line, when its URL is unset)."""
    gainsight = gainsight or GainsightSettings.from_env()
    if not gainsight.enabled or gainsight.url is None or gainsight.access_key is None:
        print("gainsight: MILESTONES_GAINSIGHT_URL is not set; the stage is off", flush=True)
        return
    target = TimelineClient(gainsight.url, gainsight.access_key.get_secret_value(),
                            type_name=gainsight.activity_type, company_field=gainsight.company_field,
                            calls_per_minute=gainsight.calls_per_minute, timeout=gainsight.timeout)
    stage = ActivityStage(bootstrap, TopicNames(settings.topic_prefix), f"{settings.app_id}-gainsight", target,
                          retry_seconds=gainsight.retry_seconds)
    print(f"gainsight: Timeline activities at {target.url} ({gainsight.calls_per_minute:g}/min)", flush=True)
    await stage.run(stop_on_signals())
