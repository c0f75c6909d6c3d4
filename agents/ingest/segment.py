"""Segment Spec messages → telemetry events (`track`) and CRM profile changes (`group`).

Why configuration only: a platform team already emits `track` calls named for what users did
("Email Sent"); the mapping says which of those names is which product metric, and whether an
event counts 1 or a numeric property. Ids and times come from the message, so the same message
always maps to the same record (a replay is recognised downstream by its origin offset).
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from milestone_stream.agents.ingest.mapping import MISSING, Rejected, Skipped, dig, find, instant, number, scalar
from milestone_stream.schemas.records import CrmChange, FieldChange, Origin, TelemetryEvent
from milestone_stream.settings import Strict


class TrackMapping(Strict):
    metric: str = Field(min_length=1)
    value: str | None = None  # dotted path of a numeric property (`properties.count`); None: 1 per event


class SegmentConfig(Strict):
    topic: str = Field(min_length=1)
    track: dict[str, TrackMapping] = Field(min_length=1)  # event name → metric
    account_from: list[str] = ["context.groupId"]  # dotted paths tried in order for `track` calls
    # trait (a dotted path for a nested one: `address.city`) → profile field
    group_traits: dict[str, str] = {"name": "name", "industry": "industry", "plan": "plan"}
    unmapped: Literal["skip", "deadletter"] = "skip"
    source: str = "segment"


def event_time(message: dict, fallback: datetime) -> datetime:
    """When it happened, corrected for the sending device's clock the way Segment does it.

    Segment's own `timestamp` is already corrected when `originalTimestamp` is present. A raw
    library message carries the device's `timestamp` and `sentAt` (both device clock) and Segment's
    `receivedAt` (server clock): the event happened `sentAt - timestamp` before it was received.
    Without `timestamp`, `receivedAt`; without either, the Kafka record's time.
    """
    stamp, sent, received = message.get("timestamp"), message.get("sentAt"), message.get("receivedAt")
    if stamp is not None and "originalTimestamp" not in message and sent is not None and received is not None:
        try:
            return instant(received, "receivedAt") - (instant(sent, "sentAt") - instant(stamp, "timestamp"))
        except OverflowError:  # clocks millennia apart put the corrected time off the calendar
            raise Rejected("invalid_timestamp", "timestamp corrected by sentAt and receivedAt is off the calendar") \
                from None
    if stamp is not None:
        return instant(stamp, "timestamp")
    if received is not None:
        return instant(received, "receivedAt")
    return fallback


def map_message(message: object, config: SegmentConfig, origin: Origin,
                record_time: datetime) -> TelemetryEvent | CrmChange | Skipped:
    """One Segment message → the record to publish, or a counted skip; raises `Rejected`."""
    if not isinstance(message, dict):
        raise Rejected("malformed", f"a Segment message is a JSON object, got {type(message).__name__}")
    kind = message.get("type")
    message_id = message.get("messageId")
    if message_id is not None and not isinstance(message_id, str):
        raise Rejected("malformed", f"messageId must be a string, got {type(message_id).__name__}")
    message_id = message_id or origin.ref
    if kind == "track":
        name = message.get("event")
        if not isinstance(name, str) or not name:
            raise Rejected("malformed", "a track call has no event name")
        mapping = config.track.get(name)
        if mapping is None:
            if config.unmapped == "deadletter":
                raise Rejected("unmapped_event", f"track event {name!r} is not mapped to a metric")
            return Skipped("unmapped_event")
        account = next((a for a in (dig(message, p) for p in config.account_from) if isinstance(a, str) and a), None)
        if account is None:
            raise Rejected("no_account", f"track event {name!r} has no account id at {', '.join(config.account_from)}")
        value = 1.0 if mapping.value is None else number(dig(message, mapping.value), mapping.value)
        return TelemetryEvent(event_id=str(message_id), account_id=account, metric=mapping.metric, value=value,
                              occurred_at=event_time(message, record_time), source=config.source,
                              attributes={"segment_event": name}, origin=origin)
    if kind == "group":
        account = message.get("groupId")
        if not isinstance(account, str) or not account:
            raise Rejected("no_account", "a group call has no groupId")
        traits = message.get("traits")
        if traits is not None and not isinstance(traits, dict):
            raise Rejected("malformed", f"group traits must be an object, got {type(traits).__name__}")
        found = {trait: find(traits, trait) for trait in config.group_traits}
        # only scalar traits are taken (an object or a list is not a profile value); a null clears the field
        changes = [FieldChange(field=field, value=scalar(found[trait], f"traits.{trait}"))
                   for trait, field in config.group_traits.items()
                   if found[trait] is not MISSING and not isinstance(found[trait], (dict, list))]
        if not changes:
            return Skipped("no_mapped_traits")
        return CrmChange(change_id=f"segment:{message_id}", account_id=account, changes=changes,
                         occurred_at=event_time(message, record_time), source=config.source,
                         source_record=f"group {account}", origin=origin)
    if isinstance(kind, str) and kind in ("identify", "page", "screen", "alias"):
        return Skipped(f"{kind}_call")
    raise Rejected("malformed", f"unknown Segment message type {kind!r}")
