"""One way for every stage to park a record it cannot process, with the reason and its origin.

Why: bad input must never stop the stream nor vanish; the dead letter keeps the raw bytes and the
(topic, partition, offset) they came from, so an operator can find, fix and replay them. The same
rule holds for a record whose processing raises anything at all (`DeadLetters.failed`): it is
parked as `unexpected_error` with the exception, and the stream goes on. A stage refuses a record
on purpose by raising `Unprocessable` with a stable reason.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError
from faust.exceptions import FaustError
from pydantic import ValidationError

from milestone_stream.observability import DEAD_LETTERS
from milestone_stream.schemas import confluent, json_input
from milestone_stream.schemas.codec import CodecError
from milestone_stream.schemas.records import DeadLetter, Record

log = logging.getLogger(__name__)

#: produce(topic, key, value) — a Faust topic send inside agents (so it joins the transaction),
#: or an aiokafka producer elsewhere.
Produce = Callable[[str, bytes | None, bytes], Awaitable[object]]


#: room left in a dead letter for its own fields (error text, origin, stage) beside the raw bytes
ENVELOPE_BYTES = 16 * 1024
KEY_KEPT = 1024  # a longer original key becomes its SHA-256 as the dead letter's record key
UNEXPECTED = "unexpected_error"


class Unprocessable(Exception):
    """A record a stage refuses (too large, beyond a bound, cannot be drafted): dead-lettered with `reason`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def is_outage(exc: BaseException) -> bool:
    """An error of the broker, the network, a timeout or of Faust itself (a changelog with other
    partitions than its input, say) — not of the record: such a record must be read again after a
    restart, never dead-lettered (a record too large for the broker is the record's)."""
    if isinstance(exc, (MessageSizeTooLargeError, RecordTooLargeError)):
        return False
    return isinstance(exc, (KafkaError, OSError, TimeoutError, FaustError))


class Position(Protocol):
    """Where a record is in the log (a Faust `Message`, an aiokafka `ConsumerRecord` or `RecordMetadata`)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


class Parkable(Position, Protocol):
    """What a dead letter keeps of its input: a Faust `Message` and an aiokafka `ConsumerRecord` both have it."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


R = TypeVar("R", bound=Record)


class DeadLetters:
    """Sends dead letters; `produce` must return only once the broker has the record (acks), so that
    no input offset is committed past a record that was neither applied nor parked."""

    def __init__(self, topic: str, produce: Produce, max_message_bytes: int = 1_000_000) -> None:
        self.topic = topic
        self._produce = produce
        self._max_value = max(max_message_bytes - ENVELOPE_BYTES, 0)

    async def send(self, *, stage: str, reason: str, error: str, topic: str, partition: int,
                   offset: int, key: bytes | None, value: bytes | None) -> DeadLetter:
        """The original key travels twice (the record's key and inside the letter): each part is kept
        only while the whole fits, else the letter keeps the origin alone and says so."""
        record_key = key if key is None or len(key) <= KEY_KEPT else hashlib.sha256(key).digest()
        if 2 * len(key or b"") + len(value or b"") > self._max_value:
            error = (f"{error[:1500]} [the original key and value ({len(key or b''):,} and {len(value or b''):,} "
                     f"bytes) are too large to keep here; read them at the origin]")
            key = value = None
        letter = DeadLetter(stage=stage, reason=reason, error=error[:2000], topic=topic, partition=partition,
                            offset=offset, key=key, value=value, failed_at=datetime.now(UTC))
        try:
            await self._produce(self.topic, record_key, letter.to_avro())
        except MessageSizeTooLargeError:  # a broker whose limit is below ours: keep the origin alone
            letter = letter.model_copy(update={
                "key": None, "value": None,
                "error": f"{error[:1500]} [too large for the broker; read it at the origin]"})
            await self._produce(self.topic, record_key, letter.to_avro())
        DEAD_LETTERS.labels(stage, reason).inc()
        log.warning("dead letter", extra={"stage": stage, "reason": reason, "origin": f"{topic}[{partition}]@{offset}",
                                          "error": error[:300]})
        return letter

    async def failed(self, stage: str, message: Parkable, exc: Exception) -> DeadLetter:
        """Park the input `message` (a Faust message or an aiokafka record) whose processing raised `exc`."""
        if isinstance(exc, Unprocessable):
            reason, error = exc.reason, str(exc)
        elif isinstance(exc, ValidationError):  # a record built from the input broke a contract
            reason, error = "invalid", one_line(exc)
        else:
            reason, error = UNEXPECTED, f"{type(exc).__name__}: {exc}"
            log.error("a record raised; dead-lettered, the stream goes on", exc_info=exc,
                      extra={"stage": stage, "origin": f"{message.topic}[{message.partition}]@{message.offset}"})
        return await self.send(stage=stage, reason=reason, error=error, topic=message.topic,
                               partition=message.partition, offset=message.offset, key=message.key,
                               value=message.value)


async def decode_or_park(record_type: type[R], *, value: bytes | None, key: bytes | None, topic: str,
                         partition: int, offset: int, stage: str, dead_letters: DeadLetters,
                         max_json_bytes: int = json_input.MAX_DOCUMENT_BYTES) -> R | None:
    """Decode and validate one input; on failure, dead-letter it and return None so the stream goes on."""
    try:
        if value is not None and json_input.accepts_json(record_type, value):  # a JSON telemetry event or CRM change
            return json_input.decode(record_type, value, max_json_bytes)
        await confluent.prefetch(value)  # a Confluent-framed value's writer schema, fetched off the event loop
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
