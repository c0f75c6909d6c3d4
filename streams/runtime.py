"""What every stage's agents are given: the app, its configuration, channels and tables, and the
shared ways to decode an input, emit milestones and park what cannot be processed.

Why one typed object: each stage (agents/ingest, agents/detector, agents/drafter) is a class whose
methods are its agents and timers, registered on the app by the factory (streams/app.py); they
share these dependencies instead of closing over a dozen variables of one long function.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import faust

from milestone_stream import faust_compat, observability
from milestone_stream.clock import Clock
from milestone_stream.deadletter import DeadLetters, Unprocessable, decode_or_park
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import Milestone, Record
from milestone_stream.settings import Settings
from milestone_stream.tables import Tables
from milestone_stream.topics import TopicNames

log = logging.getLogger(__name__)

RAW: dict[str, Any] = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
ROW_MARGIN = 4096  # a changelog record holds the row and its key

R = TypeVar("R", bound=Record)
Check = Callable[[Any], "tuple[str, str] | None"]


@dataclass(frozen=True)
class Channels:
    """The worker's Faust topics (raw bytes in and out: the Avro codec is ours)."""

    telemetry: faust.TopicT
    crm: faust.TopicT
    clock: faust.TopicT
    milestones: faust.TopicT
    requests: faust.TopicT
    drafter_clock: faust.TopicT
    resync: faust.TopicT
    deadletter: faust.TopicT
    crm_input: faust.TopicT      # CRM changes and the anniversary timer's ticks: the CRM agent's input
    drafter_input: faust.TopicT  # milestones and the drafter timer's ticks: the drafter agent's input

    @classmethod
    def declare(cls, app: faust.App, names: TopicNames) -> Channels:
        single = {field: app.topic(getattr(names, name), **RAW) for field, name in (
            ("telemetry", "telemetry"), ("crm", "crm"), ("clock", "clock"), ("milestones", "milestones"),
            ("requests", "approval_requests"), ("drafter_clock", "drafter_clock"), ("resync", "resync"),
            ("deadletter", "deadletter"))}
        return cls(**single, crm_input=app.topic(names.crm, names.clock, **RAW),
                   drafter_input=app.topic(names.milestones, names.drafter_clock, **RAW))


@dataclass(frozen=True)
class Runtime:
    app: faust.App
    settings: Settings
    rules: Rules
    clock: Clock
    names: TopicNames
    channels: Channels
    tables: Tables
    dead_letters: DeadLetters

    async def park(self, agent: str, message: Any, exc: Exception) -> object:
        """Dead-letter an input whose processing raised (the agent loops' poison-pill rule)."""
        return await self.dead_letters.failed(agent, message, exc)

    def check_fits(self, row: dict, what: str) -> None:
        """Refuse a change that would make a row too large for its changelog (the broker would refuse it later)."""
        size = len(json.dumps(row, separators=(",", ":")))
        limit = self.settings.max_message_bytes - ROW_MARGIN
        if size > limit:
            raise Unprocessable("row_too_large", f"the {what} would be {size:,} bytes, over the {limit:,} a "
                                                 "changelog record may hold; nothing was applied")

    async def decode(self, event: Any, record_type: type[R], stage: str, check: Check | None = None) -> R | None:
        """The valid record, or None after dead-lettering it (undecodable, invalid, wrong key, rejected)."""
        msg = event.message
        where = dict(key=msg.key, value=msg.value, topic=msg.topic, partition=msg.partition, offset=msg.offset)
        record = await decode_or_park(record_type, stage=stage, dead_letters=self.dead_letters,
                                      max_json_bytes=self.settings.max_message_bytes, **where)
        if record is None:
            return None
        # every input an agent decodes is keyed by its account (Record itself has no account_id field)
        account: str = getattr(record, "account_id")  # noqa: B009
        problem = (("key_mismatch", f"record key {msg.key!r} is not its account_id {account!r}")
                   if msg.key != account.encode() else check(record) if check else None)
        if problem:
            await self.dead_letters.send(stage=stage, reason=problem[0], error=problem[1], **where)
            return None
        return record

    async def emit(self, milestones: list[Milestone], agent: str) -> None:
        """Send, then wait for every ack, so no row records a milestone the log lacks (sent at once, without
        the producer's linger: faust_compat/produce.py)."""
        await faust_compat.send_now(self.app, self.channels.milestones,
                                    [(m.account_id.encode(), m.to_avro()) for m in milestones])
        for m in milestones:
            observability.FIRED.labels(m.kind).inc()
            observability.EVENTS_OUT.labels(agent).inc()
            log.info("milestone fired", extra={"agent": agent, "account_id": m.account_id,
                                               "milestone_id": m.milestone_id, "kind": m.kind, "title": m.title})
