"""One way for every stage to park a record it cannot process, with the reason and its origin.

Why: bad input must never stop the stream nor vanish; the dead letter keeps the raw bytes and the
(topic, partition, offset) they came from, so an operator can find, fix and replay them.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Awaitable, Callable

from pydantic import ValidationError

from milestone_stream.codec import CodecError
from milestone_stream.models import DeadLetter, Record
from milestone_stream.observability import DEAD_LETTERS

log = logging.getLogger(__name__)

#: produce(topic, key, value) — a Faust topic send inside agents (so it joins the transaction),
#: or an aiokafka producer elsewhere.
Produce = Callable[[str, bytes | None, bytes], Awaitable[object]]


class DeadLetters:
    def __init__(self, topic: str, produce: Produce) -> None:
        self.topic = topic
        self._produce = produce

    async def send(self, *, stage: str, reason: str, error: str, topic: str, partition: int,
                   offset: int, key: bytes | None, value: bytes | None) -> DeadLetter:
        letter = DeadLetter(stage=stage, reason=reason, error=error[:2000], topic=topic, partition=partition,
                            offset=offset, key=key, value=value, failed_at=datetime.now(timezone.utc))
        await self._produce(self.topic, key, letter.to_avro())
        DEAD_LETTERS.labels(stage, reason).inc()
        log.warning("dead letter", extra={"stage": stage, "reason": reason, "origin": f"{topic}[{partition}]@{offset}"})
        return letter


async def decode_or_park(record_type: type[Record], *, value: bytes | None, key: bytes | None, topic: str,
                         partition: int, offset: int, stage: str, dead_letters: DeadLetters) -> Record | None:
    """Decode and validate one input; on failure, dead-letter it and return None so the stream goes on."""
    try:
        return record_type.from_avro(value)
    except CodecError as exc:
        reason, error = exc.reason, str(exc)
    except ValidationError as exc:
        reason, error = "invalid", one_line(exc)
    await dead_letters.send(stage=stage, reason=reason, error=error, topic=topic, partition=partition,
                            offset=offset, key=key, value=value)
    return None


def one_line(exc: ValidationError) -> str:
    """A validation error on one line: `field: problem; field: problem`."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors())
